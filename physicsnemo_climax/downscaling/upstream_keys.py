# SPDX-License-Identifier: Apache-2.0
"""The command-line keys of PhysicsNeMo's CorrDiff recipe, read here.

Upstream's README writes overrides such as ``++training.hp.batch_size_per_gpu=64``
or ``++sampler.num_steps=32``. :data:`UPSTREAM_KEYS` says what each becomes
here: a key of this package's config (with a log line saying so, and a value
conversion where the meaning differs), or nothing, in which case the override
is an error naming the key and what to set instead. A key under one of
upstream's own sections (:data:`SECTIONS`) that the table does not list is an
error too, so nothing is silently ignored. ``generation.*`` and ``dataset.*``
keys absent from the table keep their names here (and are checked like any
other key). The table in ``docs/corrdiff.md`` lists the same entries (a test
holds the two together).

:func:`translate` rewrites command-line overrides before composition (the
``climax downscale`` commands); :func:`apply` moves upstream sections that
Hydra's ``++`` added into a composed config (``examples/corrdiff/*.py``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from ..engine.checks import ConfigError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Key:
    """What an upstream key becomes.

    Attributes
    ----------
    here : str or None
        The key here (``a/b`` for a config group); ``None``: no equivalent, the key is refused.
    note : str
        Units or meaning where they differ; for a refused key, what to set instead.
    convert : callable, optional
        Upstream value -> value here; raises :class:`ConfigError` for a value without an equivalent.
    """

    here: str | None
    note: str = ""
    convert: Callable | None = None


def _precision(value):
    table = {"fp32": "fp32", "amp-bf16": "bf16", "amp-fp16": "fp16"}
    if value not in table:
        raise ConfigError(
            f"training.perf.fp_optimizations={value!r}: no equivalent here (fp32, amp-bf16 and "
            "amp-fp16 are train.precision=fp32|bf16|fp16; pure fp16 weights are not offered)"
        )
    return table[value]


def _clip(value):
    return 0.0 if value is None else float(value)


def _keep(value):
    return None if value is None or int(value) <= 0 else int(value)


def _no_decay(value):
    if float(value) != 1.0:
        raise ConfigError(
            f"training.hp.lr_decay={value}: upstream's step decay has no equivalent here; the "
            "decay here is cosine to train.lr * train.min_lr_ratio (1.0: constant)"
        )
    return 1.0


def _no_rampup(value):
    if value:
        raise ConfigError(
            f"training.hp.lr_rampup={value} counts samples; set train.warmup_steps, which counts "
            "optimizer steps (lr_rampup / total batch size)"
        )
    return 0


def _fp16(value):
    return "fp16" if value else "fp32"


_STEPS = "counts samples; here train.{0} counts optimizer steps: samples / total batch size"

#: Upstream key -> :class:`Key`. ``docs/corrdiff.md`` ("Config keys, upstream -> here") lists the same.
UPSTREAM_KEYS: dict[str, Key] = {
    "training.hp.training_duration": Key("train.training_duration", "samples; train.steps follows from it"),
    "training.hp.total_batch_size": Key("train.total_batch_size", "over all GPUs; sets train.grad_accum"),
    "training.hp.batch_size_per_gpu": Key("train.batch_size", "per GPU (`auto`: total / GPUs)"),
    "training.hp.lr": Key("train.lr"),
    "training.hp.lr_rampup": Key("train.warmup_steps", "0 only: otherwise set train.warmup_steps", _no_rampup),
    "training.hp.lr_decay": Key("train.min_lr_ratio", "1 only (no decay)", _no_decay),
    "training.hp.lr_decay_rate": Key(None, "no step decay here: train.min_lr_ratio sets the cosine decay"),
    "training.hp.grad_clip_threshold": Key("train.clip_grad", "null becomes 0 (off)", _clip),
    "training.hp.patch_shape_x": Key("model.patch_shape_x"),
    "training.hp.patch_shape_y": Key("model.patch_shape_y"),
    "training.hp.patch_num": Key("model.patch_num"),
    "training.hp.max_patch_per_gpu": Key(None, "model.patch_num patches of each sample go in one batch"),
    "training.hp.P_mean": Key("model.P_mean"),
    "training.hp.P_std": Key("model.P_std"),
    "training.hp.distribution": Key("model.distribution"),
    "training.hp.student_t_nu": Key("model.student_t_nu"),
    "training.perf.fp_optimizations": Key("train.precision", "amp-bf16 becomes bf16, amp-fp16 fp16", _precision),
    "training.perf.dataloader_workers": Key("train.num_workers"),
    "training.perf.torch_compile": Key("train.compile"),
    "training.perf.use_apex_gn": Key("model.use_apex_gn"),
    "training.perf.songunet_checkpoint_level": Key(
        None, "the CorrDiff UNets train without gradient checkpointing here"
    ),
    "training.perf.profile_mode": Key(None, "no NVTX ranges here"),
    "training.io.regression_checkpoint_path": Key("model.regression_checkpoint_path"),
    "training.io.checkpoint_dir": Key(None, "set run_dir, the run folder"),
    "training.io.print_progress_freq": Key(None, _STEPS.format("log_every")),
    "training.io.save_checkpoint_freq": Key(None, _STEPS.format("ckpt_every")),
    "training.io.validation_freq": Key(None, _STEPS.format("val_every")),
    "training.io.validation_steps": Key("train.val_batches"),
    "training.io.save_n_recent_checkpoints": Key("train.keep_checkpoints", "-1 becomes null (keep all)", _keep),
    "training": Key(None, "the training settings follow `model` here (regression, diffusion or patched_diffusion)"),
    "sampler": Key("generation/sampler"),
    "sampler.type": Key("generation.sampler.type"),
    "sampler.num_steps": Key("generation.sampler.num_steps"),
    "sampler.solver": Key("generation.sampler.solver"),
    "generation.perf.use_fp16": Key("generation.precision", "true becomes fp16, false fp32", _fp16),
    "generation.perf.use_torch_compile": Key("generation.compile"),
    "generation.perf.use_apex_gn": Key("generation.use_apex_gn"),
    "generation.perf.num_writer_workers": Key(None, "one writer here"),
    "generation.perf.io_synchronous": Key(None, "one writer here"),
    "generation.perf.profile_mode": Key(None, "no NVTX ranges here"),
    "generation.times_range": Key(None, "list the times in generation.times (generation.max_times: the first N)"),
    "generation.has_lead_time": Key(None, "lead times come with the dataset's samples (`lead_time_label`)"),
    "wandb": Key(None, "Weights & Biases is not wired in: train.mlflow or train.tensorboard"),
}

#: Upstream sections every key of which must be in :data:`UPSTREAM_KEYS`.
SECTIONS = ("training", "sampler", "wandb", "generation.perf")


def lookup(key: str) -> Key | None:
    """The entry of an upstream ``key`` (a ``wandb.*`` key falls under ``wandb``); ``None`` if not upstream's.

    Raises
    ------
    ConfigError
        For a key under one of :data:`SECTIONS` that the table does not list.
    """
    if key in UPSTREAM_KEYS:
        return UPSTREAM_KEYS[key]
    if key.startswith("wandb."):
        return UPSTREAM_KEYS["wandb"]
    if any(key == s or key.startswith(s + ".") for s in SECTIONS):
        raise ConfigError(
            f"{key}: an upstream CorrDiff key this package does not know; the upstream keys it "
            "reads are listed in docs/corrdiff.md (Config keys, upstream -> here)"
        )
    return None


def convert(key: str, value):
    """``(key here, value here)`` for an upstream ``key=value``, logging what it became.

    Raises
    ------
    ConfigError
        Naming the key and what to set instead, when it has no equivalent here.
    """
    entry = lookup(key)
    if entry is None:
        return key, value
    if entry.here is None:
        raise ConfigError(f"{key}: upstream CorrDiff key with no equivalent here ({entry.note})")
    new = entry.convert(value) if entry.convert is not None else value
    logger.warning("upstream key %s=%s is read as %s=%s", key, _text(value), entry.here, _text(new))
    return entry.here, new


def translate(overrides: Sequence[str]) -> list[str]:
    """Command-line overrides with upstream keys rewritten to this package's (see :func:`convert`)."""
    out = []
    for item, o in zip(overrides, OverridesParser.create().parse_overrides(list(overrides))):
        key = o.key_or_group
        entry = lookup(key)
        if entry is None:
            out.append(item)
            continue
        if o.is_delete():
            raise ConfigError(f"{item}: deleting upstream keys has no meaning here")
        if entry.convert is None and entry.here is not None:  # same value: keep its text as written
            convert(key, o.value())
            out.append(f"{entry.here}={item.split('=', 1)[1]}")
        else:
            here, value = convert(key, o.value())
            out.append(f"{here}={_text(value)}")
    return out


def apply(cfg: DictConfig) -> DictConfig:
    """Move upstream sections that ``++`` overrides added to a composed config onto their keys here."""
    found = {}
    for section in SECTIONS:
        node = OmegaConf.select(cfg, section)
        if isinstance(node, DictConfig):
            found.update({f"{section}.{k}": v for k, v in _leaves(OmegaConf.to_container(node)).items()})
    with open_dict(cfg):
        for section in SECTIONS:
            parent, _, name = section.rpartition(".")
            holder = OmegaConf.select(cfg, parent) if parent else cfg
            if isinstance(holder, DictConfig) and name in holder:
                del holder[name]
        for key, value in found.items():
            here, new = convert(key, value)
            parent, _, leaf = here.rpartition(".")
            holder = OmegaConf.select(cfg, parent) if parent else cfg
            if not isinstance(holder, DictConfig) or leaf not in holder.keys():
                raise ConfigError(f"{key}: read as {here}, which this config does not have")
            OmegaConf.update(cfg, here, new)
    return cfg


def _leaves(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        out.update(_leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _text(value) -> str:
    """A value as a Hydra override writes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str) and not re.fullmatch(r"[\w./-]+", value):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return str(value)
