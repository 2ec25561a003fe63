# SPDX-License-Identifier: Apache-2.0
"""The run plan: what a job asks of the machine, decided once at its start.

:func:`resolve` reads the job's section (``train``, or ``generation`` for
CorrDiff generation), checks each ask against the :mod:`.environment`, and
returns a frozen :class:`RunPlan`: the precision, fused kernels, loader,
compile and GroupNorm that will run, and every fallback taken, with its
reason. The loop, the loaders and generation read the plan; nothing else
decides again, and the caller's config is left as it is.

:func:`decide_device` is the one device rule of every entry point (forecast,
evaluation, generation, the Earth2Studio wrappers): ``None`` is the CUDA
GPU when one is visible, else the CPU; an explicit device is honoured.

``auto`` picks the best path present. An explicit ask the machine lacks
(apex, fp16 without a GPU, a DALI GPU pipeline, ``torch.compile`` without a
compiler) stops the job with :class:`MissingFeature`, unless the section says
``fallback: true``: then the portable path runs and one warning says so.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from ..errors import MissingFeature
from .checks import config_error
from .environment import Environment, probe

logger = logging.getLogger(__name__)

#: Every loader of ClimaX forecast batches; map-style datasets (CorrDiff,
#: ClimateBench) read with the torch ones only.
LOADERS = ("threads", "processes", "dali_cpu", "dali_gpu")
TORCH_LOADERS = LOADERS[:2]
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
FUSED = ("auto", "apex", "torch", "none")


@dataclass(frozen=True)
class Choice:
    """One config key: what it asks for, what runs, and why.

    ``value`` runs when the ask is met (``auto`` resolved); ``missing`` says
    why it cannot be met here (``None``: it can); ``fallback`` runs instead
    when the section allows it (``allowed``).
    """

    key: str
    asked: object
    uses: str
    value: object = None
    missing: str | None = None
    fallback: object = None
    allowed: bool = False

    @property
    def fails(self) -> bool:
        return self.missing is not None and not self.allowed

    @property
    def runs(self) -> object:
        """The config value that runs here."""
        return self.value if self.missing is None else self.fallback


# ------------------------------------------------------------------ each ask
def _precision(key: str, asked: str, env: Environment, corrdiff: bool, allowed: bool) -> Choice:
    if asked == "auto":  # bf16 where the hardware multiplies it natively: a bf16 GPU, or a CPU with AMX
        native = env.ok("bf16") if env.ok("gpu") else env.ok("amx") and not corrdiff
        return Choice(key, asked, "bf16 autocast" if native else "fp32", "bf16" if native else "fp32")
    if asked not in PRECISIONS:
        raise config_error(key, asked, f"choose from {list(PRECISIONS) + ['auto']}")
    missing = None
    if asked == "fp16" and not env.ok("gpu"):
        missing = "fp16 autocast with GradScaler needs a CUDA GPU, and none is visible"
    elif asked == "bf16" and env.ok("gpu") and not env.ok("bf16"):
        missing = "this GPU has no bf16 (compute capability 8.0 or later needed)"
    elif asked == "bf16" and corrdiff and not env.ok("gpu"):
        missing = "CorrDiff's PhysicsNeMo networks run mixed precision on CUDA only"
    uses = {"fp32": "fp32", "bf16": "bf16 autocast", "fp16": "fp16 autocast + GradScaler"}[asked]
    return Choice(key, asked, uses, asked, missing, "fp32", allowed)


def _fused(asked: str, env: Environment, allowed: bool) -> Choice:
    if asked not in FUSED:
        raise config_error("train.fused", asked, f"choose from {list(FUSED)}")
    apex = env.ok("apex_adam") and env.ok("apex_layer_norm")
    portable = "torch fused AdamW" if env.ok("gpu") else "torch AdamW (foreach)"
    if asked == "apex":
        why = env["apex_adam"].detail if not env.ok("apex_adam") else env["apex_layer_norm"].detail
        return Choice(
            "train.fused",
            asked,
            "apex FusedAdam + FusedLayerNorm",
            "apex",
            None if apex else f"NVIDIA apex fused kernels are missing ({why})",
            "torch",
            allowed,
        )
    if asked == "auto":
        return Choice(
            "train.fused", asked, "apex FusedAdam + FusedLayerNorm" if apex else portable, "apex" if apex else "torch"
        )
    return Choice("train.fused", asked, portable if asked == "torch" else "torch AdamW (foreach)", asked)


def _loader(asked: str, env: Environment, allowed: bool, loaders) -> Choice:
    if asked not in loaders:
        raise config_error("train.loader", asked, f"this task reads with {list(loaders)}")
    if asked == "dali_gpu":
        missing = (
            None
            if env.ok("dali_gpu")
            else (
                "a DALI GPU pipeline needs DALI and a CUDA GPU"
                + ("" if env.ok("dali") else f" (DALI: {env['dali'].detail})")
            )
        )
        return Choice(
            "train.loader",
            asked,
            "DALI pipeline, normalization on the GPU",
            asked,
            missing,
            "dali_cpu" if env.ok("dali") else "threads",
            allowed,
        )
    if asked == "dali_cpu":
        missing = None if env.ok("dali") else f"NVIDIA DALI is missing ({env['dali'].detail})"
        return Choice("train.loader", asked, "DALI pipeline on the CPU", asked, missing, "threads", allowed)
    return Choice(
        "train.loader",
        asked,
        {"threads": "reader threads in the main process", "processes": "torch DataLoader worker processes"}[asked],
        asked,
    )


def _compile(env: Environment, allowed: bool, key: str = "train.compile") -> Choice:
    missing = None if env.ok("compile") else f"torch.compile cannot build kernels here ({env['compile'].detail})"
    return Choice(key, True, "torch.compile (inductor)", True, missing, False, allowed)


def _group_norm(asked, env: Environment, allowed: bool, key: str = "model.use_apex_gn") -> Choice:
    if asked not in (True, False, "auto"):
        raise config_error(key, asked, "choose true, false or auto")
    present = env.ok("apex_group_norm")
    on = (asked is True or asked == "auto") and present
    missing = None if asked is not True or present else f"apex GroupNorm is missing ({env['apex_group_norm'].detail})"
    return Choice(key, asked, "apex GroupNorm, channels_last" if on else "torch GroupNorm", on, missing, False, allowed)


def choices(cfg: DictConfig, env: Environment, loaders=LOADERS) -> list[Choice]:
    """The asks of a training (``train``) or generation (``generation``) config.

    Raises
    ------
    ConfigError
        For a value no machine has (``train.precision=fp8``), naming the key.
    """
    corrdiff = "dataset" in cfg
    out = []
    if "train" in cfg:
        t, allowed = cfg.train, bool(cfg.train.fallback)
        out.append(_precision("train.precision", t.precision, env, corrdiff, allowed))
        out.append(_fused(t.fused, env, allowed))
        out.append(_loader(t.loader, env, allowed, loaders))
        if t.compile:
            out.append(_compile(env, allowed))
        gn = cfg.get("model", {}).get("use_apex_gn", None)
        if gn is not None:
            out.append(_group_norm(gn, env, allowed))
    if "generation" in cfg:
        g, allowed = cfg.generation, bool(cfg.generation.fallback)
        # a generation section is CorrDiff's, with or without a dataset (forecast -> downscale has none)
        out.append(_precision("generation.precision", g.precision, env, True, allowed))
        if g.compile:
            out.append(_compile(env, allowed, "generation.compile"))
        if g.get("use_apex_gn") is not None:
            out.append(_group_norm(g.use_apex_gn, env, allowed, "generation.use_apex_gn"))
    return out


# ------------------------------------------------------------------ the plan
@dataclass(frozen=True)
class RunPlan:
    """What a job runs with here, decided by :func:`resolve`.

    Attributes
    ----------
    precision : {"fp32", "bf16", "fp16"}
        Autocast precision (fp16 with a GradScaler).
    fused : {"apex", "torch", "none"}
        Optimizer and LayerNorm kernels (``auto`` resolved).
    loader : str
        One of :data:`LOADERS`.
    compile : bool
        ``torch.compile`` the network.
    apex_group_norm : bool
        apex GroupNorm in channels-last (CorrDiff networks).
    choices : tuple of Choice
        Every ask and its outcome, fallbacks included.
    """

    precision: str = "fp32"
    fused: str = "torch"
    loader: str = "threads"
    compile: bool = False
    apex_group_norm: bool = False
    choices: tuple[Choice, ...] = field(default=())

    @property
    def fallbacks(self) -> tuple[Choice, ...]:
        """The asks this machine lacks that run their portable fallback."""
        return tuple(c for c in self.choices if c.missing is not None)

    def autocast(self, device: torch.device):
        """The autocast context of :attr:`precision` on ``device`` (none for fp32)."""
        dtype = PRECISIONS[self.precision]
        return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)

    def describe(self, device: torch.device) -> str:
        """The one log line that says which fast paths run."""
        kernels = (
            "apex FusedAdam + FusedLayerNorm"
            if self.fused == "apex"
            else "torch fused AdamW + native LayerNorm"
            if self.fused == "torch" and device.type == "cuda"
            else "torch AdamW + native LayerNorm"
        )
        taken = "; ".join(f"{c.key}={c.asked!r} fell back to {c.fallback!r}" for c in self.fallbacks)
        return (
            f"fast paths: {kernels}; precision {self.precision}; loader {self.loader}; device {device}; "
            f"torch.compile {'on' if self.compile else 'off'}; attention via SDPA" + (f"; {taken}" if taken else "")
        )

    def as_dict(self) -> dict:
        """JSON-ready: the decisions and each ask with its reason (``run.json``)."""
        return dict(asdict(self), choices=[dict(asdict(c), runs=c.runs) for c in self.choices])

    def applied(self, cfg: DictConfig) -> DictConfig:
        """A copy of ``cfg`` with the fallbacks taken: what the run's ``config.yaml`` records."""
        cfg = cfg.copy()
        with open_dict(cfg):
            for c in self.fallbacks:
                OmegaConf.update(cfg, c.key, c.fallback)
        return cfg


def explain(failing: list[Choice]) -> str:
    """The message of a job that cannot start: each unmet ask and the ways out."""
    lines = ["this machine lacks what the config asks for:"]
    for c in failing:
        section = c.key.split(".")[0] if c.key.startswith(("train", "generation")) else "train"
        lines.append(
            f"  {c.key}={c.asked!r}: {c.missing}. Set {c.key}={c.fallback!r}, "
            f"or {section}.fallback=true to run {c.fallback!r} here"
        )
    lines.append(
        "`climax doctor` reports the whole environment; the NGC PhysicsNeMo container "
        "(containers/, README 'Run in the NGC container') has apex, DALI and CUDA"
    )
    return "\n".join(lines)


def decide_device(asked: str | torch.device | None = None, option: str = "device") -> torch.device:
    """The device a job runs on, as Earth2Studio decides it: ``None`` is CUDA when a GPU is
    visible, else the CPU; an explicit ``"cpu"``, ``"cuda"`` or ``"cuda:1"`` is honoured.

    Parameters
    ----------
    asked : str, torch.device or None
        What the caller asks for (``None``, ``"auto"`` or ``""``: decide here).
    option : str
        The option ``asked`` came from (``--device``, ``eval.device``), named in errors.

    Raises
    ------
    ConfigError
        For a device that is no device, or a CUDA device this machine does not have.
    """
    if asked is None or (isinstance(asked, str) and asked.strip().lower() in ("", "auto")):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(asked)
    except (RuntimeError, TypeError) as err:
        raise config_error(option, str(asked), f"not a device ({err}); give cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise config_error(option, str(asked), "choose cpu, cuda or cuda:N (or leave it unset: CUDA when present)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise config_error(
            option,
            str(asked),
            "no CUDA GPU is visible here (`climax doctor` says why); ask for cpu, or leave it unset to use the CPU",
        )
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise config_error(option, str(asked), f"this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def resolve(cfg: DictConfig, env: Environment | None = None, loaders=LOADERS) -> RunPlan:
    """Check ``cfg``'s asks at the start of a job and decide what runs.

    Raises
    ------
    MissingFeature
        When an ask cannot be met and its section does not allow fallback.
    ConfigError
        For a value that is no option at all.
    """
    asked = choices(cfg, env or probe(), loaders)
    failing = [c for c in asked if c.fails]
    if failing:
        raise MissingFeature(explain(failing))
    for c in asked:
        if c.missing is not None:
            logger.warning(
                f"{c.key}={c.asked!r} is not available here ({c.missing}): "
                f"falling back to {c.fallback!r}, as fallback=true allows"
            )
    runs = {c.key.split(".")[-1]: c.runs for c in asked}
    return RunPlan(
        precision=runs.get("precision", "fp32"),
        fused=runs.get("fused", "torch"),
        loader=runs.get("loader", "threads"),
        compile=bool(runs.get("compile", False)),
        apex_group_norm=bool(runs.get("use_apex_gn", False)),
        choices=tuple(asked),
    )
