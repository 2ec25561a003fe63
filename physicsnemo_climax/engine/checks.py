# SPDX-License-Identifier: Apache-2.0
"""Config errors every task raises the same way, before any data is read."""

from __future__ import annotations

import numbers

from omegaconf import DictConfig

from ..errors import ConfigError

#: The loop's counts (``conf/train/default.yaml``): whole numbers, at least 1.
COUNTS = (
    "steps",
    "batch_size",
    "grad_accum",
    "log_every",
    "val_every",
    "val_batches",
    "ckpt_every",
    "keep_checkpoints",
)
#: Counts that may also be ``null``: ``keep_checkpoints`` (keep all), and the
#: upstream CorrDiff pair ``total_batch_size`` and ``training_duration`` (see :func:`split_batch`).
OPTIONAL = ("keep_checkpoints", "total_batch_size", "training_duration")
#: The optimizer's numbers and their allowed range ``[low, high]`` (``None``: open).
NUMBERS = {
    "lr": (0.0, None),
    "weight_decay": (0.0, None),
    "min_lr_ratio": (0.0, 1.0),
    "clip_grad": (0.0, None),
    "warmup_steps": (0, None),
}


def config_error(key: str, value, why) -> ConfigError:
    """``ConfigError("key=value: why")``."""
    return ConfigError(f"{key}={value!r}: {why}")


def check_seed(value, key: str = "seed") -> int:
    """``value`` as a seed: a whole number >= 0 (a negative seed would share the members of seed 0's
    neighbours: CorrDiff member ``k`` uses seed ``seed + k``).

    Raises
    ------
    ConfigError
        Naming ``key`` and the value.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise config_error(key, value, "a seed must be a whole number >= 0")
    return int(value)


def check_train(t: DictConfig) -> None:
    """The loop's ``train`` section holds numbers where it needs them, in range.

    Raises
    ------
    ConfigError
        Naming the key and value (``train.val_every=0``, ``train.lr='fast'``).
    """
    for key in dict.fromkeys(COUNTS + OPTIONAL):
        value = t.get(key)
        if (value is None and key in OPTIONAL) or (
            key == "batch_size" and value == "auto" and t.get("total_batch_size") is not None
        ):
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise config_error(
                f"train.{key}",
                value,
                "must be a whole number >= 1"
                + (" or null" if key in OPTIONAL else "")
                + (" (auto needs train.total_batch_size)" if value == "auto" else ""),
            )
    best = t.get("best_metric")
    if best is not None and (not isinstance(best, str) or not best):
        raise config_error("train.best_metric", best, "give the name of a validation score (loss) or null")
    for key, (low, high) in NUMBERS.items():
        value = t.get(key)
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            raise config_error(f"train.{key}", value, "must be a number")
        if (low is not None and value < low) or (high is not None and value > high) or (key == "lr" and value <= 0):
            span = f"in [{low}, {high}]" if high is not None else (f"> {low}" if key == "lr" else f">= {low}")
            raise config_error(f"train.{key}", value, f"must be {span}")
    check_loss(t)
    betas = list(t.get("betas") or [])
    if len(betas) != 2 or not all(isinstance(b, numbers.Real) and 0 <= b < 1 for b in betas):
        raise config_error("train.betas", betas, "must be two numbers in [0, 1)")


#: The values of ``train.loss``: the mean squared error, or the CRPS of an ensemble of members.
LOSSES = ("mse", "crps")


def check_loss(t: DictConfig) -> None:
    """``train.loss``, ``train.members`` and ``train.crps_alpha`` agree: ``mse`` with one member,
    ``crps`` with two or more, ``crps_alpha`` in ``[0, 1]``.

    Raises
    ------
    ConfigError
        Naming the key and value.
    """
    loss, members, alpha = t.get("loss"), t.get("members"), t.get("crps_alpha")
    if loss not in LOSSES:
        raise config_error("train.loss", loss, f"choose from {list(LOSSES)}")
    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise config_error("train.members", members, "must be a whole number >= 1")
    if loss == "mse" and members != 1:
        raise config_error("train.members", members, "members are an ensemble's: set train.loss=crps, or members=1")
    if loss == "crps" and members < 2:
        raise config_error("train.members", members, "train.loss=crps scores an ensemble: give 2 or more members")
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 <= alpha <= 1:
        raise config_error("train.crps_alpha", alpha, "must be a number in [0, 1] (1: the fair CRPS)")


def split_batch(t: DictConfig, world: int) -> None:
    """Apply upstream CorrDiff's batch semantics to ``t`` for ``world`` ranks, in place.

    With ``t.total_batch_size`` set (samples per optimizer step over all
    ranks), ``t.batch_size`` is per rank (``auto``: ``total / world``, and at
    most that) and ``t.grad_accum = total / (batch_size x world)``. With
    ``t.training_duration`` set (samples), ``t.steps`` is that over the
    samples per step, rounded up. Both ``null``: nothing changes.

    Raises
    ------
    ConfigError
        Naming the keys and the world size when the total does not split evenly.
    """
    total = t.get("total_batch_size")
    if total is not None:
        per_rank = total // world
        if per_rank < 1:
            raise ConfigError(f"train.total_batch_size={total} is smaller than the {world} ranks")
        if t.batch_size == "auto" or t.batch_size > per_rank:
            t.batch_size = per_rank
        if total % (t.batch_size * world):
            raise ConfigError(
                f"train.total_batch_size={total} is not a multiple of train.batch_size={t.batch_size} x {world} rank(s)"
            )
        t.grad_accum = total // (t.batch_size * world)
    if t.get("training_duration") is not None:
        step_samples = t.batch_size * t.grad_accum * world
        t.steps = max(1, -(-t.training_duration // step_samples))
