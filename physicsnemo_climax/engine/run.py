# SPDX-License-Identifier: Apache-2.0
"""A finished (or running) training run: its model and what it was trained on."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from physicsnemo.core import Module

from ..models import ClimaX
from . import checkpointing

RUN_INFO = "run.json"


@dataclass
class Run:
    """Model and metadata of a run folder (``run.json`` + ``checkpoints/``).

    Attributes
    ----------
    model : ClimaX
        In eval mode.
    info : dict
        Variables, outputs, per-variable ``statistics`` (mean, std), units,
        ``lat``/``lon``, ``hours_per_step``, trained ``lead_hours`` /
        ``max_lead_hours``, ``data_root``.
    """

    model: ClimaX
    info: dict

    @classmethod
    def load(cls, run_dir: str | Path, device: str | torch.device = "cpu") -> "Run":
        run_dir = Path(run_dir)
        info_path = run_dir / RUN_INFO
        if not info_path.exists():
            raise FileNotFoundError(f"{info_path} is missing: not a training run folder")
        model = Module.from_checkpoint(str(checkpointing.model_file(run_dir / "checkpoints")))
        return cls(model.to(device).eval(), json.loads(info_path.read_text()))

    def stats(self, names) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std ``[V]`` of ``names``."""
        missing = [n for n in names if n not in self.info["statistics"]]
        if missing:
            raise KeyError(f"the run has no statistics for {missing}")
        s = self.info["statistics"]
        return (np.array([s[n]["mean"] for n in names]), np.array([s[n]["std"] for n in names]))
