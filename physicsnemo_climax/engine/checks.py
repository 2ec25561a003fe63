# SPDX-License-Identifier: Apache-2.0
"""Config errors every task raises the same way, before any data is read."""

from __future__ import annotations

from omegaconf import DictConfig


class ConfigError(ValueError):
    """A configuration value that cannot work; raised before training starts."""


def config_error(key: str, value, why) -> ConfigError:
    """``ConfigError("key=value: why")``."""
    return ConfigError(f"{key}={value!r}: {why}")


def check_train(t: DictConfig) -> None:
    """The counts of the loop's ``train`` section (``conf/train/default.yaml``) are at least 1."""
    for key in ("steps", "batch_size", "grad_accum"):
        if t[key] < 1:
            raise config_error(f"train.{key}", t[key], "must be >= 1")
