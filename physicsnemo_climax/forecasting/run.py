# SPDX-License-Identifier: Apache-2.0
"""A finished (or running) ClimaX forecasting run: its model and what it was trained on."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from ..data import ShardStore, open_store
from ..data.forcings import Forcings
from ..engine import checkpointing
from ..engine.plan import decide_device
from ..engine.run_folder import RUN_JSON, data_root, read_run_record
from ..engine.run_info import RunInfo
from ..errors import ConfigError, DataError, UnknownName
from ..files import sha256
from ..models import ClimaX, GridRegion, mdlus


@dataclass
class Run:
    """Model and metadata of a run folder (``run.json`` + ``checkpoints/``).

    Attributes
    ----------
    model : ClimaX
        In eval mode.
    info : RunInfo
        The run's ``run.json``: variables, outputs, per-variable ``statistics`` (mean, std),
        units, ``lat``/``lon``, ``hours_per_step``, trained leads, ``data_root``, ``region``
        and the run ``plan``.
    run_dir, checkpoint : Path, optional
        The run folder, and the model file the weights came from.
    """

    model: ClimaX
    info: RunInfo
    run_dir: Path | None = None
    checkpoint: Path | None = None

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device | None = None, option: str = "path") -> Run:
        """The latest weights and the ``run.json`` of a ``climax train`` run folder, on ``device``
        (:func:`..engine.plan.decide_device`: ``None`` is CUDA when present, else the CPU); or,
        for a model file inside a run folder (``runs/x/checkpoints/ClimaX.0.200.mdlus``), that
        file's weights with the ``run.json`` of the folder above it (:func:`locate_run`).

        The newest checkpoint whose model file is intact and passes the checks of
        :mod:`..models.mdlus` (a ClimaX, arguments that fit the file) is used; one that
        does not is skipped with a warning for the one before. A file named is used or refused,
        never replaced by another. No file is changed.

        Raises
        ------
        FileNotFoundError
            Not a training run folder, or no checkpoint yet.
        ConfigError
            A file outside any run folder (``option`` names where it was given).
        CheckpointError
            No checkpoint loads (each one's reason listed).
        ValueError
            A run of another task (ClimateBench, CorrDiff).
        ConfigError
            A ``device`` this machine lacks (``"cuda"`` without a GPU).
        """
        device = decide_device(device, "device")
        run_dir, file = locate_run(path, option)
        info = read_run_record(run_dir)
        if not info.variables:
            raise ConfigError(f"{run_dir} is a {info.task or 'non-forecasting'} run, not a ClimaX forecasting run")
        load = lambda file: mdlus.load_module(file, ClimaX)
        model, path = (
            checkpointing.load_file(file, load) if file else checkpointing.load_model(run_dir / "checkpoints", load)
        )
        return cls(model.to(device).eval(), info, run_dir, path)

    def field_stats(self, names) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of ``names`` as float32 ``[V, 1, 1]`` tensors, to (de)normalise ``[..., V, H, W]`` fields."""
        return tuple(torch.as_tensor(a, dtype=torch.float32)[:, None, None] for a in self.stats(names))

    @property
    def device(self) -> torch.device:
        """Where the model runs."""
        return next(self.model.parameters()).device

    def provenance(self) -> dict:
        """What made a forecast: package version, run folder, model file and its SHA-256, device, time."""
        from importlib.metadata import version

        return {
            "made_by": f"physicsnemo-climax {version('physicsnemo-climax')}",
            "run_dir": str(self.run_dir.resolve()) if self.run_dir else "",
            "checkpoint": str(self.checkpoint.resolve()) if self.checkpoint else "",
            "checkpoint_sha256": sha256(self.checkpoint) if self.checkpoint else "",
            "device": str(self.device),
            "created": np.datetime_as_string(np.datetime64("now", "s")) + "Z",
        }

    @property
    def state_variables(self) -> list[str]:
        """The inputs a forecast starts from: the run's inputs less its forcings (which come last)."""
        computed = set(self.info.forcings)
        return [v for v in self.info.variables if v not in computed]

    @cached_property
    def forcings(self) -> Forcings | None:
        """The forcings the model takes (``None`` for none), with the run's statistics."""
        names = self.info.forcings
        if not names:
            return None
        return Forcings(names, np.asarray(self.info.lat), np.asarray(self.info.lon), *self.stats(names))

    def model_inputs(self, state: torch.Tensor) -> torch.Tensor:
        """Normalised ``state`` ``[B, V_state, H, W]`` with room for the forcings ``[B, V, H, W]``
        (zeros: :func:`.rollout.forecast_steps` computes them for each step's valid time)."""
        missing = len(self.info.variables) - state.shape[1]
        return torch.cat([state, state.new_zeros(state.shape[0], missing, *state.shape[2:])], 1) if missing else state

    @cached_property
    def region(self) -> GridRegion:
        """The region the run was trained on (the whole grid for global runs), on the model's device."""
        return self.model.resolve_region(self.info.region).to(self.device)

    def stats(self, names) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std ``[V]`` of ``names``."""
        missing = [n for n in names if n not in self.info.statistics]
        if missing:
            raise UnknownName(f"the run has no statistics for {missing}")
        s = self.info.statistics
        return (np.array([s[n]["mean"] for n in names]), np.array([s[n]["std"] for n in names]))


def locate_run(path: str | Path, option: str = "path") -> tuple[Path, Path | None]:
    """The run folder ``path`` is, and ``None``; or, for a model file, the nearest folder above it
    holding ``run.json``, and the file.

    Raises
    ------
    ConfigError
        A file with no run folder above it: a forecast needs the run's statistics.
    """
    path = Path(path)
    if not path.is_file():
        return path, None
    run_dir = next((d for d in path.resolve().parents if (d / RUN_JSON).is_file()), None)
    if run_dir is None:
        raise ConfigError(
            f"{option} {path}: this model file is not inside a training run folder (no {RUN_JSON} "
            "in the folders above it), and a forecast needs the run's statistics from it; give "
            "the run folder, or a model file in its checkpoints/ folder"
        )
    return run_dir, path


def run_store(cfg: DictConfig, run: Run) -> ShardStore:
    """The store ``run`` was trained on (:func:`..engine.run_folder.data_root`: where ``run.json``
    records it, or ``data.root`` given on the command line), checked by :func:`check_store`."""
    store = open_store(data_root(cfg, run.run_dir), run.info.hours_per_step)
    check_store(store, run.info, run.run_dir)
    return store


def check_store(store: ShardStore, info: RunInfo, run_dir: Path | None = None) -> None:
    """Refuse a store that is not the one the run was trained on: another fingerprint
    (:attr:`.ShardStore.fingerprint`) or, for runs recorded before fingerprints, other statistics.

    Raises
    ------
    DataError
        Naming the store, both fingerprints (or the first variable whose statistics differ) and
        where the run's store was.
    """
    run = f"the run {run_dir}" if run_dir is not None else "the run"
    way_out = f"(it was at {info.data_root}); give data.root=<the training store>"
    want = info.data_fingerprint
    if want is not None:
        if store.fingerprint != want:
            raise DataError(
                f"{store.root} is not the store {run} was trained on: its fingerprint is "
                f"{store.fingerprint[:12]}, run.json records {want[:12]} {way_out}"
            )
        return
    names = [v for v in info.statistics if v in store.variables()]  # forcings are computed, not stored
    mean, std = store.statistics(names)
    for name, m, s in zip(names, mean, std):
        saved = info.statistics[name]
        if not (np.isclose(m, saved["mean"], rtol=1e-6) and np.isclose(s, saved["std"], rtol=1e-6)):
            raise DataError(
                f"{store.root} is not the store {run} was trained on: the statistics of {name} "
                f"differ from run.json's {way_out}"
            )
