# SPDX-License-Identifier: Apache-2.0
"""Forecast samples from a shard store, as a PhysicsNeMo datapipe reader.

A sample is the state at time ``t`` and the target(s) ``lead`` hours later,
within one shard (shards may be separate years). The lead is fixed
(fine-tuning), or drawn per sample in ``lead_step`` steps from ``lead_range``
(pretraining), from PhysicsNeMo's per-index generator so that the draw
depends only on ``(seed, epoch, index)``. With ``rollout_steps > 1`` the
targets are ``lead, 2 lead, ...`` for rollout training and evaluation. With
``windows`` (:mod:`.windows`, sub-seasonal prediction) the target is the mean
over a window after ``t`` instead, the window drawn per sample like a lead and
given to the model as the lead of its start.
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
from .store import StoreError
from .streamed import open_store
from .windows import TimeWindow, window_mean


class ClimaXShardReader(Reader):
    """Forecast pairs from a ClimaX shard store.

    Parameters
    ----------
    root : str or Path
        The store (:mod:`.store`), prepared here or by the official ClimaX scripts; or a streamed
        store (:mod:`.streamed`): its side folder, or the Zarr URL it was written for.
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
    windows : sequence of TimeWindow, optional
        Time-mean targets (:class:`.windows.TimeWindow`) instead of states at a lead:
        ``lead_hours``, ``lead_range`` and ``rollout_steps`` are then not used.
    shuffle_block : int, "auto" or None
        Samples kept together when shuffled (:func:`.loader.block_order`): ``"auto"``, a streamed
        store's chunk length and none (1) for a local one.
    chunk_cache_gb, chunk_memory_gb : float, optional
        A streamed store's cache of chunks on local disk (``None``: none) and in memory
        (``None``: :data:`.streamed.MEMORY_BYTES`), GB.

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
        windows: Sequence[TimeWindow] | None = None,
        shuffle_block: int | str | None = "auto",
        chunk_cache_gb: float | None = None,
        chunk_memory_gb: float | None = None,
        **reader_kwargs,
    ):
        super().__init__(**reader_kwargs)
        self.store = open_store(root, hours_per_step, chunk_cache_gb, chunk_memory_gb)
        self.split = split
        self._set_variables(variables, out_variables, check_forcings(forcings))
        if rollout_steps < 1:
            raise ConfigError(f"rollout_steps must be >= 1, got {rollout_steps}")
        self.rollout_steps = 1 if windows else rollout_steps
        self.windows = tuple(windows or ())

        self._set_leads(lead_hours, lead_range, lead_step)

        self.shards = self.store.shards(split)
        horizon = int(self.lead_steps.max()) * self.rollout_steps
        if self.windows:  # the last state of the longest window
            horizon = max(stop for _, stop in self.window_steps.values()) - 1
        counts = np.array([max(0, s.steps - horizon) for s in self.shards])
        if counts.sum() == 0:
            raise DataError(
                f"{self.store.root}/{split}: no shard is longer than the {horizon * self.store.hours_per_step:g} h that one sample spans"
            )
        self._offsets = np.concatenate([[0], np.cumsum(counts)])
        self.stats = {"x": self.store.statistics(self.state_variables), "y": self.store.statistics(self.out_variables)}
        if self.forcings is not None:
            self.stats["x"] = tuple(
                np.concatenate(pair) for pair in zip(self.stats["x"], (self.forcings.mean, self.forcings.std))
            )
        self.normalize = normalize
        self.times = self._shard_seconds()
        self.shuffle_block = self._block(shuffle_block)

    def _block(self, shuffle_block: int | str | None) -> int:
        """Samples kept together when shuffled (see the parameter)."""
        if shuffle_block == "auto":
            return self.store.chunk_steps
        if shuffle_block is None:
            return 1
        if int(shuffle_block) < 1:
            raise ConfigError(f"data.shuffle_block={shuffle_block}: give a number of samples >= 1, auto or null")
        return int(shuffle_block)

    def _set_leads(self, lead_hours: float | None, lead_range: Sequence[float], lead_step: float) -> None:
        """The leads drawn from, in store steps (``lead_steps``), and whether there is one (``fixed_lead``)."""
        step = self.store.hours_per_step
        if self.windows:  # a window is drawn as a lead is: by the hour it starts
            leads, lead_hours = [w.start_hours for w in self.windows], None
            self.window_steps = {w.steps(step)[0]: w.steps(step) for w in self.windows}
        elif lead_hours is not None:
            leads = [lead_hours]
        else:
            leads = list(np.arange(lead_range[0], lead_range[1] + lead_step / 2, lead_step))
        if not leads or min(leads) <= 0:
            raise ConfigError(f"lead times must be positive hours, got {leads}")
        off = [lead for lead in leads if abs(lead / step - round(lead / step)) > 1e-9]
        if off:
            raise ConfigError(f"lead time(s) {off} h are not multiples of the store's step of {step} h")
        self.lead_steps = np.array([round(lead / step) for lead in leads])
        self.fixed_lead = lead_hours is not None

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
        self._fetch(shard_ids, times, leads, wait=True)
        for shard_id in np.unique(shard_ids):
            rows = np.nonzero(shard_ids == shard_id)[0]
            shard, t = self.shards[shard_id], times[rows]
            for j, name in enumerate(self.state_variables):
                x[rows, j] = shard.array(name)[t, 0]
            for j, name in enumerate(self.out_variables):
                if self.windows:
                    y[rows, 0, j] = self._window_targets(shard.array(name), t, leads[rows])
                    continue
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

    def warm(self, indices: Sequence[int], wait: bool = False) -> None:
        """Fetch the chunks samples ``indices`` read (a streamed store; a local one has nothing to
        fetch), waiting for them or not."""
        if not self.store.fetches:  # nothing to ask for: no lead is drawn for it
            return
        indices = np.asarray(indices, dtype=np.int64)
        shard_ids = np.searchsorted(self._offsets, indices, side="right") - 1
        leads = np.array([self.lead_steps_of(int(i)) for i in indices], dtype=np.int64)
        self._fetch(shard_ids, indices - self._offsets[shard_ids], leads, wait)

    def _fetch(self, shard_ids: np.ndarray, times: np.ndarray, leads: np.ndarray, wait: bool) -> None:
        """Fetch the chunks of samples at shard ``shard_ids`` ``[b]``, steps ``times`` ``[b]``, ``leads`` ``[b]``."""
        if not self.store.fetches:
            return
        for shard_id in np.unique(shard_ids):
            rows = np.nonzero(shard_ids == shard_id)[0]
            steps = self._steps_read(times[rows], leads[rows])
            self.shards[shard_id].prefetch(self.state_variables + self.out_variables, steps, wait)

    def _steps_read(self, times: np.ndarray, leads: np.ndarray) -> np.ndarray:
        """Every step of a shard that samples from ``times`` ``[b]`` with ``leads`` ``[b]`` read."""
        if self.windows:
            spans = [
                np.arange(t + self.window_steps[int(lead)][0], t + self.window_steps[int(lead)][1])
                for t, lead in zip(times, leads)
            ]
            return np.concatenate([times, *spans])
        return np.concatenate([times] + [times + (k + 1) * leads for k in range(self.rollout_steps)])

    def _window_targets(self, array: np.ndarray, times: np.ndarray, leads: np.ndarray) -> np.ndarray:
        """Window means ``[b, H, W]`` of a shard's ``array`` ``[T, 1, H, W]`` from ``times`` ``[b]``, each
        sample's window being the one that starts ``leads`` ``[b]`` steps ahead."""
        means = [window_mean(array, int(t), *self.window_steps[int(lead)])[0] for t, lead in zip(times, leads)]
        return np.stack(means) if means else np.empty((0, *array.shape[2:]), np.float32)

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
