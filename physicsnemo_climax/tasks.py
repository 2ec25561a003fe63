# SPDX-License-Identifier: Apache-2.0
"""The task packages behind ``climax train`` and ``climax evaluate``.

Each ClimaX task config (``conf/task/*.yaml``) names its package in
``task.package``; a package exports ``train(cfg) -> run folder``,
``evaluate(cfg) -> table`` and ``summarize(table, cfg) -> text`` (what
``climax evaluate`` prints). CorrDiff (:mod:`.downscaling`) has its own
commands (``climax downscale ...``).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pandas as pd
from omegaconf import DictConfig

from . import climate_downscaling, climate_projection, forecasting, s2s
from .engine.checks import config_error
from .hub import cache_at

#: The packages a task config may name.
PACKAGES: dict[str, ModuleType] = {
    "forecasting": forecasting,
    "climate_projection": climate_projection,
    "s2s": s2s,
    "climate_downscaling": climate_downscaling,
}


def package(cfg: DictConfig) -> ModuleType:
    """The task package of ``cfg.task``. Run folders written before ``task.package``
    existed name none: ``climatebench`` is climate projection, every other task forecasting."""
    name = cfg.task.get("package") or ("climate_projection" if cfg.task.name == "climatebench" else "forecasting")
    if name not in PACKAGES:
        raise config_error("task.package", name, f"choose from {list(PACKAGES)}")
    return PACKAGES[name]


def train(cfg: DictConfig) -> Path:
    """Train (or resume) the task the config describes; returns the run folder. Weights named by
    ``init=`` are fetched into ``weights_cache`` when the config sets it (:mod:`.hub`)."""
    with cache_at(cfg.get("weights_cache")):
        return package(cfg).train(cfg)


def evaluate(cfg: DictConfig) -> pd.DataFrame:
    """Evaluate a run of the task its config describes."""
    return package(cfg).evaluate(cfg)


def summarize(cfg: DictConfig, table: pd.DataFrame) -> str:
    """The evaluation ``table`` of the config's task as ``climax evaluate`` prints it."""
    return package(cfg).summarize(table, cfg)
