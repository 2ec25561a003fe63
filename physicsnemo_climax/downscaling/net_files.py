# SPDX-License-Identifier: Apache-2.0
"""CorrDiff nets from ``.mdlus`` files, ours or the upstream recipe's, loaded the way they were trained.

An ``.mdlus`` file records its class and constructor arguments
(``args.json``). Before anything is built, :func:`load_net` reads them and:

* refuses a class or backbone this package cannot generate with, naming it
  and the file (:data:`LOADABLE`, :data:`BACKBONES`);
* builds it once with the run plan's GroupNorm (``RunPlan.apex_group_norm``,
  :func:`..engine.plan.resolve`; torch GroupNorm without a plan): a file trained
  with apex GroupNorm loads with ``use_apex_gn=False`` (logged) where the plan
  runs none, and a file trained without it loads with ``use_apex_gn=True``
  where the plan runs it. The two layers hold the same ``weight``/``bias`` and
  compute the same function, so the state dict loads unchanged.
  ``generation.override_args`` is merged over this; PhysicsNeMo allows only the keys in a class's ``_overridable_args``
  (``use_apex_gn``, ``act`` for the CorrDiff UNets), others are refused;
* loads it through :mod:`..models.mdlus`: the class is imported here
  (:func:`loadable_class`), never from the module the file names, and the
  arguments and sizes are checked against the file before anything is built.
  A run folder gives its newest checkpoint that loads; one that does not is
  skipped with a warning for the one before (no file is changed);
* takes published nets by name or URL (``corrdiff-taiwan-regression``,
  ``ngc://...``, ``hf://...``, ``https://...``) through :func:`..hub.local_file`:
  downloaded once into the cache and verified by SHA-256 before anything is read;
* turns the training-only switches ``amp_mode``, ``profile_mode`` and
  ``use_fp16`` off after loading (the run plan decides precision).

Lead-time-aware nets (``SongUNetPosLtEmbd`` backbones) take an integer
``lead_time_label`` per sample (:func:`lead_time_steps`,
:func:`check_lead_time`). A diffusion net's noise (Gaussian or Student-t)
is checked against the config by :func:`.noise.check_noise`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from physicsnemo.core import Module
from physicsnemo.diffusion.preconditioners import EDMPrecondSuperResolution
from physicsnemo.models.diffusion_unets import CorrDiffRegressionUNet

from ..engine import checkpointing
from ..errors import CheckpointError, CheckpointMismatch, ConfigError, DataError
from ..hub import is_remote, local_file
from ..models import mdlus
from . import noise
from .domain import Domain
from .models import ClimaXRegression, student_t_class

logger = logging.getLogger(__name__)

LOADABLE = {
    "CorrDiffRegressionUNet": "regression",
    "ClimaXRegression": "regression",
    "EDMPrecondSuperResolution": "diffusion",
    "tEDMPrecondSuperRes": "diffusion",
}
"""Classes that load, and the stage each one is."""
BACKBONES = ("SongUNetPosEmbd", "SongUNetPosLtEmbd")
"""``model_type`` values of the UNet wrappers that load (the upstream recipe's configs)."""
INFERENCE_MODES = ("all", "regression", "diffusion")
TRAINING_SWITCHES = ("amp_mode", "profile_mode", "use_fp16")


def loadable_class(name: str) -> type:
    """The class of a :data:`LOADABLE` name, imported here (never from a module a file names)."""
    if name == "tEDMPrecondSuperRes":  # PhysicsNeMo's experimental package, imported when asked
        return student_t_class()
    return {
        "CorrDiffRegressionUNet": CorrDiffRegressionUNet,
        "ClimaXRegression": ClimaXRegression,
        "EDMPrecondSuperResolution": EDMPrecondSuperResolution,
    }[name]


def saved_args(file: Path, key: str) -> dict:
    """The ``args.json`` of an ``.mdlus`` file: ``{"__name__", "__module__", "__args__"}``, read as
    :func:`..models.mdlus.read_file` reads it (sizes and bounds checked, nothing built)."""
    try:
        return mdlus.read_file(file).args
    except mdlus.MdlusError as err:
        raise CheckpointError(f"{key}={err}") from err


def check_supported(saved: dict, stage: str, file: Path, key: str) -> None:
    """Refuse a class, stage or backbone that does not load here, naming it."""
    name, args = saved.get("__name__"), saved.get("__args__", {})
    if name not in LOADABLE:
        raise ConfigError(
            f"{key}={file}: class {name} is not supported; CorrDiff generation loads {', '.join(LOADABLE)}"
        )
    if LOADABLE[name] != stage:
        raise ConfigError(f"{key}={file}: {name} is a {LOADABLE[name]} net, this key needs a {stage} net")
    backbone = args.get("model_type", "SongUNetPosEmbd")
    if name != "ClimaXRegression" and backbone not in BACKBONES:
        raise ConfigError(
            f"{key}={file}: {name}(model_type={backbone!r}) is not supported; "
            f"model_type must be one of {list(BACKBONES)}"
        )


def automatic_overrides(args: dict, apex: bool, overridable=()) -> dict:
    """The GroupNorm override that builds a file's net as the run plan says: ``{"use_apex_gn": False}``
    when the file (its ``args``) uses apex GroupNorm and ``apex`` (``RunPlan.apex_group_norm``) is
    false, ``{"use_apex_gn": True}`` when ``apex`` is true and the class allows the switch
    (``use_apex_gn`` in its ``overridable`` args), else ``{}``."""
    if bool(args.get("use_apex_gn")) == bool(apex):
        return {}
    if apex and "use_apex_gn" not in overridable:
        return {}
    return {"use_apex_gn": bool(apex)}


def load_net(path: str | Path, key: str, stage: str, override_args=None, apex: bool = False) -> Module:
    """A CorrDiff net from ``path`` (``.mdlus`` or run folder), on the CPU, in eval mode, frozen.

    A run folder gives its newest checkpoint that loads; one that does not (damaged, refused by
    :mod:`..models.mdlus`) is skipped with a warning for the one before, changing no file.

    Parameters
    ----------
    key : str
        The config key ``path`` came from, for messages.
    stage : {"regression", "diffusion"}
    override_args : mapping, optional
        ``generation.override_args``, merged over :func:`automatic_overrides`.
    apex : bool
        Whether the run plan runs apex GroupNorm (``RunPlan.apex_group_norm``); the net is built
        with it, or without it, at this one load.

    Raises
    ------
    ConfigError
        An unsupported class, backbone or override key, naming it and the file.
    CheckpointError
        A file refused by its checks or that does not load, naming it.
    DataError
        A published net (a name or URL) that cannot be downloaded, or whose SHA-256 is not the
        published or recorded one: it is never read.
    """
    path = local_file(path, key) if is_remote(str(path)) else Path(path)  # local paths: as they are
    user = (
        OmegaConf.to_container(override_args, resolve=True)
        if isinstance(override_args, DictConfig)
        else dict(override_args or {})
    )
    if not path.is_dir():
        if not path.exists():
            raise FileNotFoundError(f"{key}={path}: no such file or run folder")
        return _load_file(path, key, stage, user, apex)
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    try:
        net, _ = checkpointing.load_model(folder, lambda file: _load_file(file, key, stage, user, apex))
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{key}={path}: {err}") from None
    return net


def _load_file(file: Path, key: str, stage: str, user: dict, apex: bool) -> Module:
    """One ``.mdlus`` as :func:`load_net` says."""
    saved = saved_args(file, key)
    check_supported(saved, stage, file, key)
    cls = loadable_class(saved["__name__"])
    overrides = {**automatic_overrides(saved.get("__args__", {}), apex, getattr(cls, "_overridable_args", ())), **user}
    if overrides.get("use_apex_gn") is False and saved["__args__"].get("use_apex_gn"):
        logger.info(
            "%s=%s was trained with apex GroupNorm; loading it with use_apex_gn=False%s",
            key,
            file,
            " (generation.override_args)" if "use_apex_gn" in user else " (the run plan runs none)",
        )
    try:
        net = mdlus.load_module(file, cls, override_args=overrides or None)
    except mdlus.MdlusError as err:
        raise CheckpointError(f"{key}={err}") from err
    except ValueError as err:  # PhysicsNeMo's refusal of an override key
        allowed = sorted(getattr(cls, "_overridable_args", set()))
        raise ConfigError(
            f"generation.override_args={user}: {err} ({key}={file}; {saved['__name__']} allows {allowed})"
        ) from err
    _inference_switches(net, key, file)
    net.checkpoint_source = f"{key}={file}"  # named by later errors (lead time)
    return net.eval().requires_grad_(False)


def _inference_switches(net: Module, key: str, file: Path) -> None:
    """Training-only switches off: precision is the run plan's (``set_amp_mode``) from here on."""
    on = [name for name in TRAINING_SWITCHES if getattr(net, name, False)]
    for name in on:
        setattr(net, name, False)
    if on:
        logger.info("%s=%s: %s switched off for generation", key, file, ", ".join(on))


def inner_unet(net: Module) -> Module:
    """The UNet inside a regression wrapper or an EDM preconditioner (``net`` itself otherwise)."""
    return getattr(net, "model", net)


def lead_time_steps(net: Module | None) -> int | None:
    """The number of lead-time labels of a lead-time-aware net, ``None`` for other nets."""
    inner = inner_unet(net)
    if getattr(inner, "lt_embd", None) is None:
        return None
    return int(inner.lead_time_steps)


def load_frozen(
    path: str | Path,
    key: str,
    domain: Domain,
    device,
    sample: dict | None = None,
    override_args=None,
    apex: bool = False,
) -> Module:
    """A trained regression net in eval mode without gradients, checked against ``domain``, built
    with apex GroupNorm when ``apex`` (the run plan's ``apex_group_norm``, :func:`load_net`).

    Raises
    ------
    ValueError
        Naming ``key`` when the net's grid, output channels or input channels
        (tried on ``sample``) do not fit the data.
    """
    net = load_net(path, key, "regression", override_args, apex)
    file = net.checkpoint_source.split("=", 1)[1]
    shape = (getattr(net, "img_shape_y", None), getattr(net, "img_shape_x", None))
    if shape != tuple(domain.shape) or getattr(net, "img_out_channels", None) != len(domain.output_variables):
        raise CheckpointMismatch(
            f"{key}={file}: a net for grid {shape} with {getattr(net, 'img_out_channels', '?')} "
            f"outputs, but the data have grid {tuple(domain.shape)} and outputs {domain.output_variables}"
        )
    if isinstance(net, ClimaXRegression) and (
        net.input_channels != domain.input_channels or net.output_channels != domain.output_variables
    ):
        raise CheckpointMismatch(
            f"{key}={file}: ClimaX regression for inputs {net.input_channels} -> "
            f"{net.output_channels}, data have {domain.input_channels} -> {domain.output_variables}"
        )
    net = net.to(device)
    if sample is not None:
        x = sample["input"][None].to(device)
        label = {} if lead_time_steps(net) is None else {"lead_time_label": torch.zeros(1, device=device)}
        try:
            with torch.no_grad():
                net(torch.zeros(1, len(domain.output_variables), *domain.shape, device=device), x, **label)
        except RuntimeError as err:
            raise CheckpointMismatch(
                f"{key}={file}: does not take the data's {x.shape[1]} input channels "
                f"{domain.input_channels} ({str(err).splitlines()[0]})"
            ) from err
    return net


def load_diffusion(path: str | Path, key: str, domain: Domain, device, gen: DictConfig, apex: bool = False) -> Module:
    """The diffusion net, checked against the data's channels and ``gen`` (conditioning, patching, noise),
    built with apex GroupNorm when ``apex`` (the run plan's ``apex_group_norm``, :func:`load_net`)."""
    net = load_net(path, key, "diffusion", gen.get("override_args"), apex)
    file = net.checkpoint_source.split("=", 1)[1]
    c_in, c_out = len(domain.input_channels), len(domain.output_variables)
    grid = (net.model.img_shape_y, net.model.img_shape_x)
    if getattr(net, "img_out_channels", None) != c_out or grid != tuple(domain.shape):
        raise CheckpointMismatch(
            f"{key}={file}: a net for grid {grid} with "
            f"{net.img_out_channels} outputs, the data have grid {tuple(domain.shape)} and outputs "
            f"{domain.output_variables}"
        )
    inner = net.model
    extra = getattr(inner, "N_grid_channels", 0) + (
        getattr(inner, "lead_time_channels", 0) if lead_time_steps(net) else 0
    )
    wanted = c_in + (c_out if gen.hr_mean_conditioning else 0) + (c_in if gen.get("patching") else 0)
    if net.img_in_channels - extra != wanted:
        raise CheckpointMismatch(
            f"{key}={file}: conditioned on {net.img_in_channels - extra} channels, but the data and "
            f"generation.hr_mean_conditioning={gen.hr_mean_conditioning}, "
            f"generation.patching={bool(gen.get('patching'))} give {wanted} ({c_in} inputs, "
            f"{c_out} outputs)"
        )
    noise.check_noise(net, gen, key, file)
    return net.to(device)


def inference_mode(gen: DictConfig) -> str:
    """``generation.inference_mode``, checked: ``all``, ``regression`` or ``diffusion``
    (diffusion-only has no regression mean, so it needs ``hr_mean_conditioning=false``)."""
    mode = gen.inference_mode
    if mode not in INFERENCE_MODES:
        raise ConfigError(f"generation.inference_mode={mode!r}: choose one of {list(INFERENCE_MODES)}")
    if mode == "diffusion" and gen.hr_mean_conditioning:
        raise ConfigError(
            "generation.inference_mode=diffusion has no regression mean to condition on: "
            "set generation.hr_mean_conditioning=false"
        )
    return mode


def stage_domain_key(gen: DictConfig) -> str:
    """The ``generation.io`` key whose run folder holds the statistics (the regression's,
    the diffusion's in diffusion-only mode)."""
    return "res_ckpt_filename" if gen.inference_mode == "diffusion" else "reg_ckpt_filename"


def sample_lead_time_labels(samples: list[dict]) -> torch.Tensor | None:
    """``[T]`` integer lead-time labels of dataset samples (their ``lead_time_label``), or ``None``
    when the dataset has no lead times."""
    labels = [s.get("lead_time_label") for s in samples]
    if all(label is None for label in labels):
        return None
    if any(label is None for label in labels):
        raise DataError("some dataset samples carry a lead_time_label and others do not")
    return torch.stack([torch.as_tensor(label).reshape(()) for label in labels]).long()


def check_lead_time(nets, labels: torch.Tensor | None) -> None:
    """Refuse to run a lead-time-aware net without labels, or with labels it has no embedding for.

    Raises
    ------
    ValueError
        Naming the checkpoint (``generation.io.*``) and the missing or out-of-range lead time.
    """
    for net in nets:
        steps = lead_time_steps(net)
        if steps is None:
            continue
        source = getattr(net, "checkpoint_source", type(net).__name__)
        if labels is None:
            raise CheckpointMismatch(
                f"{source}: a lead-time-aware net ({steps} lead-time steps), but the input has no "
                "lead time (the dataset gives no lead_time_label)"
            )
        bad = sorted({int(v) for v in labels.reshape(-1) if not 0 <= int(v) < steps})
        if bad:
            raise CheckpointMismatch(
                f"{source}: lead_time_label {bad} outside the net's {steps} lead-time steps (0 .. {steps - 1})"
            )
