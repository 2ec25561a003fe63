# SPDX-License-Identifier: Apache-2.0
"""The thresholds of the Brier and ranked probability scores (:mod:`.probabilistic`):
fixed values per variable (``eval.thresholds``) and climatological quantiles per grid
point from the training years (``eval.quantiles``).

A quantile is WeatherBench 2's kind, by day of year and hour of day: at a valid time,
the quantile of the training fields at the same hour of day whose day of year lies
within ``eval.climatology_window // 2`` days of it (a year is circular); without time
stamps, of all training times. The training fields of the scored variables (and their
derived wind speeds) are held in memory, ``[N, V, h, w]`` float32 over all ``N``
training times: off unless ``eval.quantiles`` names some.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..data import ShardStore
from ..data.store import StoreError
from ..engine.checks import config_error
from ..models import GridRegion
from .probabilistic import add_speeds, quantile_name


@dataclass
class ScoreThresholds:
    """Thresholds by name (:func:`.probabilistic.quantile_name` for quantiles, the value for fixed ones).

    Attributes
    ----------
    variables : list of str
        The scorer's variables (scored ones, then derived wind speeds): the ``V`` axis.
    fixed : dict of str to list of float
        Variable -> thresholds in its physical units.
    quantiles : tuple of float
        Increasing, in (0, 1).
    fields : np.ndarray or None
        ``[N, V, h, w]`` training fields on the run's region (``None`` without quantiles).
    day, hour : np.ndarray or None
        ``[N]`` day of year and hour of day of each (``None``: no time stamps, quantiles pooled).
    window : int
        Days of year pooled around a valid day.
    """

    variables: list[str]
    fixed: dict[str, list[float]]
    quantiles: tuple[float, ...] = ()
    fields: np.ndarray | None = None
    day: np.ndarray | None = None
    hour: np.ndarray | None = None
    window: int = 61
    _cache: dict = field(default_factory=dict, repr=False)

    def fixed_names(self) -> list[str]:
        """The names of the fixed thresholds (``273.15``), each value once."""
        return list(dict.fromkeys(f"{float(t):g}" for values in self.fixed.values() for t in values))

    def at(self, stamps: np.ndarray | None) -> dict[str, torch.Tensor]:
        """Name -> ``[B or 1, V, h, w]`` thresholds at the valid times ``stamps`` (``[B]``
        ``datetime64``; ``None``: pooled), NaN for variables without that threshold."""
        out = {}
        for name in self.fixed_names():
            values = [
                float(name) if name in {f"{float(t):g}" for t in self.fixed.get(v, [])} else float("nan")
                for v in self.variables
            ]
            out[name] = torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1)
        if self.quantiles:
            keys = [None] if stamps is None or self.day is None else list(zip(*_day_and_hour(stamps)))
            edges = np.stack([self._quantiles(k) for k in keys], axis=1)  # [Q, B or 1, V, h, w]
            out.update({quantile_name(q): torch.as_tensor(e) for q, e in zip(self.quantiles, edges)})
        return out

    def _quantiles(self, key: tuple[int, int] | None) -> np.ndarray:
        """``[Q, V, h, w]`` quantiles of the training fields pooled around ``(day, hour)``."""
        if key not in self._cache:
            pool = self.fields
            if key is not None:
                gap = np.abs(self.day - key[0])
                near = np.minimum(gap, 366 - gap) <= self.window // 2
                same = near & (self.hour == key[1])
                pool = self.fields[same if same.any() else near]  # a valid hour the training times lack: all hours
            self._cache[key] = np.quantile(pool, self.quantiles, axis=0).astype(np.float32)
        return self._cache[key]


def _day_and_hour(stamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[N]`` day of year (1..366) and hour of day of ``datetime64`` stamps."""
    days = stamps.astype("datetime64[D]")
    hours = (stamps.astype("datetime64[h]") - days).astype(int)
    return (days - days.astype("datetime64[Y]")).astype(int) + 1, hours


def check_fixed(thresholds: Mapping, variables: Sequence[str]) -> dict[str, list[float]]:
    """``eval.thresholds`` as variable -> list of floats, each variable a scored (or derived) one.

    Raises
    ------
    ConfigError
        Naming ``eval.thresholds.VARIABLE``: a variable not scored, a value not a number.
    """
    out = {}
    for var, values in (thresholds or {}).items():
        key = f"eval.thresholds.{var}"
        if var not in variables:
            raise config_error(key, values, f"not a scored variable; choose from {list(variables)}")
        values = list(values) if isinstance(values, Sequence) and not isinstance(values, str) else [values]
        if not values or any(isinstance(t, bool) or not isinstance(t, (int, float)) for t in values):
            raise config_error(key, values, "give thresholds in the variable's units, e.g. [273.15]")
        out[str(var)] = [float(t) for t in values]
    return out


def training_fields(
    store: ShardStore, variables: Sequence[str], pairs: Mapping[str, tuple[str, str]], region: GridRegion
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``[N, V + P, h, w]`` fields of the training split on ``region`` with the wind speeds of ``pairs``,
    and ``[N]`` day of year and hour of day (``None`` when the store has no time stamps)."""
    parts = []
    for shard in store.shards("train"):
        block = torch.as_tensor(np.stack([np.asarray(shard.array(v)[:, 0]) for v in variables], axis=1))
        parts.append(add_speeds(region.crop(block), variables, pairs).numpy().astype(np.float32))
    try:
        stamps = np.concatenate(store.shard_times("train"))
    except StoreError:
        return np.concatenate(parts), None, None
    return np.concatenate(parts), *_day_and_hour(stamps)


def score_thresholds(
    store: ShardStore,
    variables: Sequence[str],
    pairs: Mapping[str, tuple[str, str]],
    region: GridRegion,
    fixed: Mapping,
    quantiles: Sequence[float],
    window: int,
) -> ScoreThresholds | None:
    """The thresholds ``eval.thresholds`` (``fixed``) and ``eval.quantiles`` ask for (``None``: neither)."""
    every = [*variables, *pairs]
    checked = check_fixed(fixed, every)
    if not checked and not quantiles:
        return None
    if not quantiles:
        return ScoreThresholds(every, checked)
    fields, day, hour = training_fields(store, variables, pairs, region)
    return ScoreThresholds(every, checked, tuple(quantiles), fields, day, hour, window)
