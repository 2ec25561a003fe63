# SPDX-License-Identifier: Apache-2.0
"""The record every run folder starts with: ``config.yaml`` and ``run.json``.

``config.yaml`` is the composed config with the run plan's fallbacks taken
(what ran, so a later ``climax evaluate`` or resume reads the truth);
``run.json`` holds the task's own facts (variables, statistics, grid, ...)
and the run plan (:meth:`.plan.RunPlan.as_dict`).
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .plan import RunPlan

RUN_JSON = "run.json"


def write_run_record(run_dir: str | Path, cfg: DictConfig, plan: RunPlan, info: dict) -> None:
    """Write ``config.yaml`` and ``run.json`` (``info`` plus ``"plan"``) into ``run_dir``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(plan.applied(cfg)))
    (run_dir / RUN_JSON).write_text(json.dumps({**info, "plan": plan.as_dict()}, indent=1))


def read_run_record(run_dir: str | Path) -> dict:
    """``run.json`` of a run folder.

    Raises
    ------
    FileNotFoundError
        When the folder is not a training run.
    """
    path = Path(run_dir) / RUN_JSON
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: not a training run folder")
    return json.loads(path.read_text())
