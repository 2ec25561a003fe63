# SPDX-License-Identifier: Apache-2.0
"""Forecast samples from a shard store, as a PhysicsNeMo datapipe reader.

A sample is the state at time ``t`` and the target(s) ``lead`` hours later,
within one shard (shards may be separate years). The lead is fixed
(fine-tuning), or drawn per sample in ``lead_step`` steps from ``lead_range``
(pretraining), from PhysicsNeMo's per-index generator so that the draw
depends only on ``(seed, epoch, index)``. With ``rollout_steps > 1`` the
targets are ``lead, 2 lead, ...`` for rollout training and evaluation.
Forcings (:mod:`.forcings`) are computed for the valid time of the first
target and appended to the inputs; they are never targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from physicsnemo.datapipes.readers import Reader

from ..errors import ConfigError, DataError, InputError
from .forcings import Forcings, check_forcings, unix_seconds
from .store import ShardStore, StoreError


class ClimaXShardReader(Reader):
    """Forecast pairs from a ClimaX shard store.

    Parameters
    ----------
    root : str or Path
        The store (:mod:`.store`), prepared here or by the official ClimaX scripts.
    split : str
        ``"train"``, ``"val"`` or ``"test"``.
    variables : sequence of str, optional
        Input variables (default: all of the store's).
    out_variables : sequence of str, optional
        Target variables (default: ``variables``).
    lead_hours : float, optional
        Fixed lead time; if ``None``, leads are drawn from ``lead_range``.
    lead_range : (float, float)
        Smallest and largest random lead, hours (ClimaX pretraining: 6..168).
    lead_step : float
        Spacing of random leads, hours.
    rollout_steps : int
        Number of targets, at ``lead * (1 .. rollout_steps)``.
    hours_per_step : float, optional
        Time step of a store without manifest (official folders: 1).
    normalize : bool
        Normalize with the store's statistics (``False`` to leave it to the
        DALI pipeline or to the caller).
    forcings : sequence of str
        Computed inputs (:data:`.forcings.FORCINGS`), appended to ``variables``
        (a store variable of the same name is not read).

    Samples
    -------
    ``x`` ``[V, H, W]``, ``y`` ``[V_out, H, W]`` (``[S, V_out, H, W]`` when
    ``rollout_steps > 1``), ``lead_time`` (hours, scalar), all float32, and
    ``time`` (the initial time, float64 seconds since 1970; NaN for a store
    without time stamps).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        variables: Sequence[str] | None = None,
        out_variables: Sequence[str] | None = None,
        lead_hours: float | None = None,
        lead_range: Sequence[float] = (6, 168),
        lead_step: float = 6,
        rollout_steps: int = 1,
        hours_per_step: float | None = None,
        normalize: bool = True,
        forcings: Sequence[str] = (),
        **reader_kwargs,
    ):
        super().__init__(**reader_kwargs)
        self.store = ShardStore(root, hours_per_step)
        self.split = split
        self._set_variables(variables, out_variables, check_forcings(forcings))
        if rollout_steps < 1:
            raise ConfigError(f"rollout_steps must be >= 1, got {rollout_steps}")
        self.rollout_steps = rollout_steps

        step = self.store.hours_per_step
        leads = (
            [lead_hours]
            if lead_hours is not None
            else list(np.arange(lead_range[0], lead_range[1] + lead_step / 2, lead_step))
        )
        if not leads or min(leads) <= 0:
            raise ConfigError(f"lead times must be positive hours, got {leads}")
        off = [lead for lead in leads if abs(lead / step - round(lead / step)) > 1e-9]
        if off:
            raise ConfigError(f"lead time(s) {off} h are not multiples of the store's step of {step} h")
        self.lead_steps = np.array([round(lead / step) for lead in leads])
        self.fixed_lead = lead_hours is not None

        self.shards = self.store.shards(split)
        horizon = int(self.lead_steps.max()) * rollout_steps
        counts = np.array([max(0, s.steps - horizon) for s in self.shards])
        if counts.sum() == 0:
            raise DataError(
                f"{self.store.root}/{split}: no shard is longer than the {horizon * step} h that one sample spans"
            )
        self._offsets = np.concatenate([[0], np.cumsum(counts)])
        self.stats = {"x": self.store.statistics(self.state_variables), "y": self.store.statistics(self.out_variables)}
        if self.forcings is not None:
            self.stats["x"] = tuple(
                np.concatenate(pair) for pair in zip(self.stats["x"], (self.forcings.mean, self.forcings.std))
            )
        self.normalize = normalize
        self.times = self._shard_seconds()

    def _set_variables(self, variables, out_variables, computed: list[str]) -> None:
        """Inputs read from the store (``state_variables``), then the ``computed`` forcings; targets."""
        state = [
            v for v in (variables if variables is not None else self.store.variables(self.split)) if v not in computed
        ]
        self.out_variables = list(out_variables) if out_variables is not None else list(state)
        if set(computed) & set(self.out_variables):
            raise InputError(
                f"data.out_variables: forcings {sorted(set(computed) & set(self.out_variables))} "
                "are computed inputs, never targets; remove them from the outputs"
            )
        self.state_variables, self.variables = state, state + computed
        self.store.check_variables(sorted(set(state) | set(self.out_variables)), self.split)
        self.forcings = Forcings.build(computed, self.store.lat, self.store.lon) if computed else None

    def _shard_seconds(self) -> list[np.ndarray] | None:
        """Seconds since 1970 of each shard's time steps (``None`` for a store without time stamps,
        which cannot have forcings)."""
        try:
            return [unix_seconds(t) for t in self.store.shard_times(self.split)]
        except StoreError as err:
            if self.forcings is not None:
                raise StoreError(f"forcings {list(self.forcings.names)} are computed from time stamps: {err}") from err
            return None

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """Shard number and time index of sample ``index``."""
        shard = int(np.searchsorted(self._offsets, index, side="right") - 1)
        return shard, int(index - self._offsets[shard])

    def lead_steps_of(self, index: int) -> int:
        """Lead of sample ``index`` in store steps (random leads: per-index draw)."""
        if self.fixed_lead or len(self.lead_steps) == 1:
            return int(self.lead_steps[0])
        generator = self._index_generator(index)
        pick = torch.randint(len(self.lead_steps), (1,), generator=generator).item()
        return int(self.lead_steps[pick])

    def read_batch(self, indices: Sequence[int], normalize: bool | None = None) -> dict[str, np.ndarray]:
        """Samples ``indices`` stacked: ``x`` ``[B, V, H, W]``, ``y`` ``[B, V_out, H, W]``
        (``[B, S, V_out, H, W]`` for rollouts), ``lead_time`` ``[B]`` hours, ``time`` ``[B]`` seconds.

        Reads one strided gather per (shard, variable) rather than one slice per
        sample and variable.
        """
        indices = np.asarray(indices, dtype=np.int64)
        shard_ids = np.searchsorted(self._offsets, indices, side="right") - 1
        times = indices - self._offsets[shard_ids]
        leads = np.array([self.lead_steps_of(int(i)) for i in indices], dtype=np.int64)
        h, w = self.store.grid
        steps = self.rollout_steps
        x = np.empty((len(indices), len(self.variables), h, w), np.float32)
        y = np.empty((len(indices), steps, len(self.out_variables), h, w), np.float32)
        for shard_id in np.unique(shard_ids):
            rows = np.nonzero(shard_ids == shard_id)[0]
            shard, t = self.shards[shard_id], times[rows]
            for j, name in enumerate(self.state_variables):
                x[rows, j] = shard.array(name)[t, 0]
            for j, name in enumerate(self.out_variables):
                for k in range(steps):
                    y[rows, k, j] = shard.array(name)[t + (k + 1) * leads[rows], 0]
        seconds = (
            np.array([self.times[s][t] for s, t in zip(shard_ids, times)])
            if self.times is not None
            else np.full(len(indices), np.nan)
        )
        hours = (leads * self.store.hours_per_step).astype(np.float32)
        if self.forcings is not None:  # at the valid time of the first target
            x[:, len(self.state_variables) :] = self.forcings.fields(seconds + 3600.0 * hours)
        if self.normalize if normalize is None else normalize:
            for key, array in (("x", x), ("y", y)):
                mean, std = self.stats[key]
                array -= mean[:, None, None].astype(np.float32)
                array *= (1.0 / std)[:, None, None].astype(np.float32)
        if steps == 1:
            y = y[:, 0]
        return {"x": x, "y": y, "lead_time": hours, "time": seconds}

    def read_raw(self, index: int) -> dict[str, np.ndarray]:
        """One un-normalized sample (see class docstring)."""
        return {k: v[0] for k, v in self.read_batch([index], normalize=False).items()}

    def _load_sample(self, index: int) -> dict[str, torch.Tensor]:
        return {k: torch.as_tensor(v[0]) for k, v in self.read_batch([index]).items()}

    def _get_field_names(self) -> list[str]:
        return ["x", "y", "lead_time", "time"]

    def _get_sample_metadata(self, index: int) -> dict[str, Any]:
        shard, t = self.locate(index)
        return {
            "variables": self.variables,
            "out_variables": self.out_variables,
            "shard": str(self.shards[shard].path),
            "time_index": t,
        }
