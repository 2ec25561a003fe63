# SPDX-License-Identifier: Apache-2.0
"""The ``train`` section every task shares, as one frozen, typed record.

``conf/train/default.yaml`` holds every key's default and says what it
means; :meth:`TrainSettings.from_config` reads them all once the batch is
split over the ranks (:func:`.checks.split_batch`), so the loop, the
optimizer, the tracking and the tasks read typed values and no module
writes a default of its own. A key the section lacks is an error naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError


def read_section(section: DictConfig, keys: list[str], name: str, defaults: str) -> dict[str, Any]:
    """The values of ``keys`` in the config ``section`` (interpolations resolved).

    Raises
    ------
    ConfigError
        Naming the first key the section lacks (``name.key``) and the file ``defaults`` that
        lists every key of the section with its default.
    """
    raw = OmegaConf.to_container(section, resolve=True)
    missing = [k for k in keys if k not in raw]
    if missing:
        raise ConfigError(
            f"{name}.{missing[0]} is missing from the config; {defaults} lists every {name} key with its default"
        )
    return {k: raw[k] for k in keys}


@dataclass(frozen=True)
class LoraSettings:
    """``train.lora``: adapters of ``rank`` (0: off) and ``alpha`` on the layers matching
    ``targets`` (``None``: the attention and MLP linears of every block)."""

    rank: int
    alpha: float
    targets: tuple[str, ...] | None


@dataclass(frozen=True)
class TrainSettings:
    """The ``train`` section (``conf/train/default.yaml`` documents each key).

    ``batch_size``, ``grad_accum`` and ``steps`` are as split over the ranks; sequences are
    tuples; ``lr_scale`` is as given (a mapping or ``[pattern, factor]`` pairs, checked by
    :func:`.optim.scale_rules`).
    """

    steps: int
    batch_size: int
    grad_accum: int
    total_batch_size: int | None
    training_duration: int | None
    lr: float
    weight_decay: float
    betas: tuple[float, float]
    warmup_steps: int
    min_lr_ratio: float
    clip_grad: float
    loss: str
    members: int
    crps_alpha: float
    freeze: tuple[str, ...]
    lora: LoraSettings
    lr_scale: Any
    precision: str
    fused: str
    compile: bool
    fallback: bool
    grad_checkpointing: bool
    fsdp: bool
    num_workers: int
    loader: str
    val_every: int
    val_batches: int
    ckpt_every: int
    keep_checkpoints: int | None
    best_metric: str | None
    log_every: int
    progress: bool
    resume: bool
    deterministic: bool
    tensorboard: bool
    mlflow: bool

    @classmethod
    def from_config(cls, t: DictConfig) -> TrainSettings:
        """The settings of the ``train`` section ``t`` (checked by :func:`.checks.check_train`
        and split by :func:`.checks.split_batch` before).

        Raises
        ------
        ConfigError
            Naming a key the section lacks.
        """
        values = read_section(t, [f.name for f in fields(cls)], "train", "conf/train/default.yaml")
        lora = values["lora"] or {}
        targets = lora.get("targets")
        values.update(
            betas=tuple(values["betas"]),
            freeze=tuple(values["freeze"] or ()),
            lora=LoraSettings(
                rank=int(lora["rank"]), alpha=float(lora["alpha"]), targets=tuple(targets) if targets else None
            ),
        )
        return cls(**values)
