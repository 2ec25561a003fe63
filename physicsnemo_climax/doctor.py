# SPDX-License-Identifier: Apache-2.0
"""What this machine offers the recipes, and what a config asks of it.

``climax doctor`` prints both. The same check runs at the start of every
training and generation job (:func:`resolve`): a config that asks for a fast
path the machine lacks (apex fused kernels, apex GroupNorm, a DALI GPU
pipeline, fp16 or bf16, ``torch.compile``) stops there with the doctor's
explanation, unless its section says ``fallback: true``; then the portable
path runs and one warning line says so. ``auto`` values always pick the best
path present.

The NVIDIA stack (apex, DALI, Transformer Engine) is probed, never required:
it lives in the NGC PhysicsNeMo container (``containers/``).
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import importlib.util
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field

import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf, open_dict

logger = logging.getLogger(__name__)

LOADERS = ("threads", "processes", "dali_cpu", "dali_gpu")
#: The loaders of map-style datasets (CorrDiff, ClimateBench): torch workers only.
TORCH_LOADERS = LOADERS[:2]


class MissingFeature(RuntimeError):
    """A config asks for a fast path this machine lacks (and may not fall back)."""


@dataclass
class Feature:
    """One probed piece of the environment."""

    name: str
    ok: bool
    detail: str


@dataclass
class Choice:
    """What one config key asks for, and what will run.

    ``missing`` explains why the ask cannot be met here (``None``: it can);
    ``fallback`` is the value used instead when the section allows it.
    """

    key: str
    asked: object
    uses: str
    missing: str | None = None
    fallback: object = None
    allowed: bool = False

    @property
    def fails(self) -> bool:
        return self.missing is not None and not self.allowed


@dataclass
class Environment:
    """Everything :func:`probe` found, by short name."""

    features: dict[str, Feature] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Feature:
        return self.features[name]

    def ok(self, name: str) -> bool:
        return self.features[name].ok


# ------------------------------------------------------------------ probing
def _version(*distributions: str) -> str | None:
    for name in distributions:
        try:
            return f"{name} {metadata.version(name)}"
        except metadata.PackageNotFoundError:
            continue
    return None


def _importable(module: str, attribute: str | None = None) -> str | None:
    """``None`` when ``module`` (and ``attribute``) import, else the reason."""
    if importlib.util.find_spec(module.split(".")[0]) is None:
        return "not installed"
    try:
        mod = importlib.import_module(module)
        if attribute is not None:
            getattr(mod, attribute)
    except Exception as err:  # broken builds raise anything from ImportError to OSError
        return f"{type(err).__name__}: {err}".splitlines()[0]
    return None


def _gpus() -> Feature:
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
        return Feature("GPU", False, f"none visible ({build}; inside a container, pass --nv / --gpus all)")
    names = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        names.append(f"{i}: {p.name} (sm_{p.major}{p.minor}, {p.total_memory / 2**30:.0f} GiB)")
    return Feature("GPU", True, "; ".join(names))


APEX = {"apex_adam": ("apex.optimizers", "FusedAdam"),
        "apex_layer_norm": ("apex.normalization", "FusedLayerNorm"),
        "apex_group_norm": ("apex.contrib.group_norm", "GroupNorm")}


def apex(part: str) -> Feature:
    """One of the apex kernels in :data:`APEX`: importable, with a CUDA GPU to run on."""
    module, attribute = APEX[part]
    why = _importable(module, attribute)
    if why is None and not torch.cuda.is_available():
        why = "installed, but its kernels need a CUDA GPU"
    return Feature(f"apex {attribute}", why is None, why or f"{module}.{attribute}")


def _compile(cuda: bool) -> Feature:
    if cuda:
        why = _importable("triton")
        return Feature("torch.compile", why is None, "inductor with triton" if why is None else f"triton {why}")
    compiler = next((c for c in ("g++", "c++", "clang++") if shutil.which(c)), None)
    return Feature("torch.compile", compiler is not None,
                   f"inductor (CPU) with {compiler}" if compiler else "no C++ compiler on PATH")


def _launcher() -> Feature:
    env = os.environ
    if "SLURM_PROCID" in env and "SLURM_NPROCS" in env:
        address = env.get("SLURM_LAUNCH_NODE_IPADDR") or env.get("MASTER_ADDR")
        detail = f"SLURM: rank {env['SLURM_PROCID']} of {env['SLURM_NPROCS']}"
        if address is None:
            return Feature("launcher", False, detail + "; neither SLURM_LAUNCH_NODE_IPADDR nor MASTER_ADDR "
                           "is set: export MASTER_ADDR=<first node> (the `climax launch slurm` script does)")
        return Feature("launcher", True, f"{detail}; rendezvous at {address}")
    if "RANK" in env and "WORLD_SIZE" in env:
        return Feature("launcher", True, f"torchrun/env: rank {env['RANK']} of {env['WORLD_SIZE']}")
    if "OMPI_COMM_WORLD_RANK" in env:
        return Feature("launcher", True, f"Open MPI: rank {env['OMPI_COMM_WORLD_RANK']} "
                       f"of {env.get('OMPI_COMM_WORLD_SIZE')}")
    return Feature("launcher", True, "single process (no torchrun, SLURM or MPI variables)")


def _container() -> Feature:
    env = os.environ
    kind = ("Apptainer" if "APPTAINER_CONTAINER" in env else
            "Singularity" if "SINGULARITY_CONTAINER" in env else
            "Docker" if os.path.exists("/.dockerenv") else None)
    ngc = env.get("NVIDIA_PYTORCH_VERSION")
    if kind is None and ngc is None:
        return Feature("container", False, "none (a plain Python environment)")
    image = env.get("APPTAINER_CONTAINER") or env.get("SINGULARITY_CONTAINER") or ""
    detail = " ".join(p for p in (kind, image, f"(NGC PyTorch {ngc})" if ngc else "") if p)
    return Feature("container", True, detail)


def probe() -> Environment:
    """Probe torch, CUDA, PhysicsNeMo, DALI, apex, Transformer Engine, compile, distributed."""
    cuda = torch.cuda.is_available()
    f: dict[str, Feature] = {}
    f["torch"] = Feature("torch", True, f"{torch.__version__} (CUDA {torch.version.cuda or 'none'}, "
                         f"cuDNN {torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else 'none'})")
    f["gpu"] = _gpus()
    f["bf16"] = Feature("bf16", torch.cuda.is_bf16_supported() if cuda else True,
                        "GPU autocast" if cuda else "CPU autocast only (ClimaX; CorrDiff needs CUDA)")
    f["fp16"] = Feature("fp16", cuda, "GPU autocast + GradScaler" if cuda else "needs a CUDA GPU")
    f["sdpa_flash"] = Feature(
        "SDPA flash attention",
        cuda and torch.backends.cuda.flash_sdp_enabled() and torch.cuda.get_device_capability()[0] >= 8,
        "scaled_dot_product_attention picks flash / memory-efficient kernels" if cuda
        else "CPU: SDPA math/flash-CPU kernels")
    f["physicsnemo"] = Feature("PhysicsNeMo", True, _version("nvidia-physicsnemo") or "installed from source")
    dali = _version("nvidia-dali-cuda130", "nvidia-dali-cuda120", "nvidia-dali-cuda110", "nvidia-dali")
    dali_why = _importable("nvidia.dali", "pipeline_def") if dali else "not installed"
    f["dali"] = Feature("DALI", dali_why is None, dali if dali_why is None else dali_why)
    f["dali_gpu"] = Feature("DALI GPU pipelines", dali_why is None and cuda,
                            "DALI ops on the GPU" if dali_why is None and cuda
                            else "need DALI and a CUDA GPU")
    f.update({part: apex(part) for part in APEX})
    te_why = _importable("transformer_engine")
    f["transformer_engine"] = Feature(
        "Transformer Engine", te_why is None,
        (_version("transformer_engine", "transformer-engine") or "installed") + " (not used by the recipes)"
        if te_why is None else te_why)
    f["compile"] = _compile(cuda)
    backends = [b for b, ok in (("nccl", dist.is_nccl_available()), ("gloo", dist.is_gloo_available()),
                                ("mpi", dist.is_mpi_available())) if ok]
    backend = "nccl" if cuda and "nccl" in backends else "gloo"
    f["distributed"] = Feature("distributed", backend in backends,
                               f"backend {backend} (available: {', '.join(backends) or 'none'})")
    f["launcher"] = _launcher()
    f["container"] = _container()
    return Environment(f)


# ------------------------------------------------------------------ a config's asks
def _precision(key: str, asked: str, env: Environment, corrdiff: bool, allowed: bool) -> Choice:
    missing = None
    if asked == "fp16" and not env.ok("gpu"):
        missing = "fp16 autocast with GradScaler needs a CUDA GPU, and none is visible"
    elif asked == "bf16" and env.ok("gpu") and not env.ok("bf16"):
        missing = "this GPU has no bf16 (compute capability 8.0 or later needed)"
    elif asked == "bf16" and corrdiff and not env.ok("gpu"):
        missing = "CorrDiff's PhysicsNeMo networks run mixed precision on CUDA only"
    uses = {"fp32": "fp32", "bf16": "bf16 autocast", "fp16": "fp16 autocast + GradScaler"}.get(asked, asked)
    return Choice(key, asked, uses, missing, "fp32", allowed)


def _fused(asked: str, env: Environment, allowed: bool) -> Choice:
    apex = env.ok("apex_adam") and env.ok("apex_layer_norm")
    portable = "torch fused AdamW" if env.ok("gpu") else "torch AdamW (foreach)"
    if asked == "apex":
        why = env["apex_adam"].detail if not env.ok("apex_adam") else env["apex_layer_norm"].detail
        return Choice("train.fused", asked, "apex FusedAdam + FusedLayerNorm",
                      None if apex else f"NVIDIA apex fused kernels are missing ({why})", "torch", allowed)
    if asked == "auto":
        return Choice("train.fused", asked, "apex FusedAdam + FusedLayerNorm" if apex else portable)
    return Choice("train.fused", asked, portable if asked == "torch" else "torch AdamW (foreach)")


def _loader(asked: str, env: Environment, allowed: bool) -> Choice:
    if asked == "dali_gpu":
        missing = None if env.ok("dali_gpu") else (
            "a DALI GPU pipeline needs DALI and a CUDA GPU" + ("" if env.ok("dali") else f" (DALI: {env['dali'].detail})"))
        return Choice("train.loader", asked, "DALI pipeline, normalization on the GPU", missing,
                      "dali_cpu" if env.ok("dali") else "threads", allowed)
    if asked == "dali_cpu":
        missing = None if env.ok("dali") else f"NVIDIA DALI is missing ({env['dali'].detail})"
        return Choice("train.loader", asked, "DALI pipeline on the CPU", missing, "threads", allowed)
    return Choice("train.loader", asked, {"threads": "reader threads in the main process",
                                          "processes": "torch DataLoader worker processes"}.get(asked, asked))


def plan(cfg: DictConfig, env: Environment) -> list[Choice]:
    """The fast-path choices of a training (``train``) or generation (``generation``) config."""
    corrdiff = "dataset" in cfg
    choices = []
    if "train" in cfg:
        t, allowed = cfg.train, bool(cfg.train.get("fallback", False))
        choices.append(_precision("train.precision", t.precision, env, corrdiff, allowed))
        choices.append(_fused(t.fused, env, allowed))
        choices.append(_loader(t.get("loader", "threads"), env, allowed))
        if t.get("compile", False):
            choices.append(Choice("train.compile", True, "torch.compile (inductor)",
                                  None if env.ok("compile") else
                                  f"torch.compile cannot build kernels here ({env['compile'].detail})",
                                  False, allowed))
        gn = cfg.get("model", {}).get("use_apex_gn", None)
        if gn is not None:
            present = env.ok("apex_group_norm")
            uses = "apex GroupNorm, channels_last" if (gn is True or gn == "auto") and present else "torch GroupNorm"
            missing = None if gn is not True or present else \
                f"apex GroupNorm is missing ({env['apex_group_norm'].detail})"
            choices.append(Choice("model.use_apex_gn", gn, uses, missing, False, allowed))
    if "generation" in cfg:
        g = cfg.generation
        choices.append(_precision("generation.precision", g.precision, env, corrdiff,
                                  bool(g.get("fallback", False))))
    return choices


def explain(failing: list[Choice]) -> str:
    """The message of a run that cannot start: each unmet ask and the ways out."""
    lines = ["this machine lacks what the config asks for:"]
    for c in failing:
        section = c.key.split(".")[0] if c.key.startswith(("train", "generation")) else "train"
        lines.append(f"  {c.key}={c.asked!r}: {c.missing}. Set {c.key}={c.fallback!r}, "
                     f"or {section}.fallback=true to run {c.fallback!r} here")
    lines.append("`climax doctor` reports the whole environment; the NGC PhysicsNeMo container "
                 "(containers/, README 'Run in the NGC container') has apex, DALI and CUDA")
    return "\n".join(lines)


def resolve(cfg: DictConfig, env: Environment | None = None) -> DictConfig:
    """Check ``cfg``'s asks at the start of a job; returns it with allowed fallbacks applied.

    Raises
    ------
    MissingFeature
        When an ask cannot be met and its section does not allow fallback.
    """
    env = env or probe()
    choices = plan(cfg, env)
    failing = [c for c in choices if c.fails]
    if failing:
        raise MissingFeature(explain(failing))
    cfg = cfg.copy()
    for c in choices:
        if c.missing is not None:
            logger.warning(f"{c.key}={c.asked!r} is not available here ({c.missing}): "
                           f"falling back to {c.fallback!r}, as fallback=true allows")
            with open_dict(cfg):
                OmegaConf.update(cfg, c.key, c.fallback)
    return cfg


# ------------------------------------------------------------------ the report
def report(env: Environment, choices: list[Choice], config_name: str) -> str:
    """The text ``climax doctor`` prints."""
    width = max(len(f.name) for f in env.features.values())
    lines = ["environment"]
    lines += [f"  {'ok ' if f.ok else ' - '} {f.name:<{width}}  {f.detail}" for f in env.features.values()]
    lines += ["", f"fast paths of config {config_name!r}"]
    for c in choices:
        if c.missing is None:
            lines.append(f"  ok  {c.key}={c.asked!r}: {c.uses}")
        elif c.allowed:
            lines.append(f"  ->  {c.key}={c.asked!r}: {c.missing}; falls back to {c.fallback!r}")
        else:
            lines.append(f"  !!  {c.key}={c.asked!r}: {c.missing}")
    failing = [c for c in choices if c.fails]
    fallbacks = sum(c.missing is not None and c.allowed for c in choices)
    ready = f"ready, with {fallbacks} fallback(s) marked ->" if fallbacks else "ready: the config's requests are met here"
    lines += ["", explain(failing) if failing else ready]
    return "\n".join(lines)


def as_dict(env: Environment, choices: list[Choice]) -> dict:
    """The report as JSON-ready data (``climax doctor --json``)."""
    return {"environment": {k: asdict(f) for k, f in env.features.items()},
            "choices": [dict(asdict(c), fails=c.fails) for c in choices],
            "ready": not any(c.fails for c in choices)}


def check_distributed() -> str:
    """Initialise the process group as training does and all-reduce the ranks' ones."""
    from .engine.distributed import setup_distributed

    manager = setup_distributed()
    ones = torch.ones(1, device=manager.device)
    if manager.distributed:
        dist.all_reduce(ones)
    if int(ones.item()) != manager.world_size:
        raise RuntimeError(f"all-reduce gave {int(ones.item())}, expected {manager.world_size} ranks")
    return (f"rank {manager.rank} of {manager.world_size} ({manager.device}): "
            f"all-reduce over {dist.get_backend() if manager.distributed else 'no process group'} ok")
