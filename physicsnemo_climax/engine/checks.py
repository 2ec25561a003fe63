# SPDX-License-Identifier: Apache-2.0
"""Config errors every task raises the same way, before any data is read."""

from __future__ import annotations

import numbers

from omegaconf import DictConfig

from ..errors import ConfigError

#: The loop's counts (``conf/train/default.yaml``): whole numbers, at least 1.
COUNTS = ("steps", "batch_size", "grad_accum", "log_every", "val_every", "val_batches", "ckpt_every",
          "keep_checkpoints")
#: The optimizer's numbers and their allowed range ``[low, high]`` (``None``: open).
NUMBERS = {"lr": (0.0, None), "weight_decay": (0.0, None), "min_lr_ratio": (0.0, 1.0), "clip_grad": (0.0, None),
           "warmup_steps": (0, None)}


def config_error(key: str, value, why) -> ConfigError:
    """``ConfigError("key=value: why")``."""
    return ConfigError(f"{key}={value!r}: {why}")


def check_train(t: DictConfig) -> None:
    """The loop's ``train`` section holds numbers where it needs them, in range.

    Raises
    ------
    ConfigError
        Naming the key and value (``train.val_every=0``, ``train.lr='fast'``).
    """
    for key in COUNTS:
        value = t.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise config_error(f"train.{key}", value, "must be a whole number >= 1")
    for key, (low, high) in NUMBERS.items():
        value = t.get(key)
        if not isinstance(value, numbers.Real) or isinstance(value, bool):
            raise config_error(f"train.{key}", value, "must be a number")
        if (low is not None and value < low) or (high is not None and value > high) or (key == "lr" and value <= 0):
            span = f"in [{low}, {high}]" if high is not None else (f"> {low}" if key == "lr" else f">= {low}")
            raise config_error(f"train.{key}", value, f"must be {span}")
    betas = list(t.get("betas") or [])
    if len(betas) != 2 or not all(isinstance(b, numbers.Real) and 0 <= b < 1 for b in betas):
        raise config_error("train.betas", betas, "must be two numbers in [0, 1)")
