# SPDX-License-Identifier: Apache-2.0
"""SEEPS (Rodwell et al. 2010), the precipitation score of WeatherBench 2.

Each value falls in one of three categories: dry (below the dry threshold),
light (from it to the wet threshold) and heavy (at or above the wet
threshold). A forecast in category ``f`` against an observation in ``o``
costs ``S[f, o]`` with ``p1`` the climatological dry fraction of the point::

    S = 1/2 [[0,                     1/(1-p1),   4/(1-p1)],
             [1/p1,                  0,          3/(1-p1)],
             [1/p1 + 3/(2+p1),       3/(2+p1),   0       ]]

Points whose ``p1`` is outside ``(0.1, 0.85)`` are not scored (too dry or
too wet for the categories to mean much), as in WeatherBench 2.

The dry threshold is WeatherBench 2's: 0.25 mm for 24-hour accumulations
(``*_24hr``), 0.1 mm for 6-hour ones (``*_6hr``); other variables are not
scored. ``p1`` and the wet threshold (the 2/3 quantile of the wet values, so
light is twice as likely as heavy) come from the training split, per grid
point over all seasons (WeatherBench 2 takes the threshold by day of year;
a WB2 climatology Zarr given as ``eval.climatology`` brings its own).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ..data import ShardStore
from ..data.climatology import HourlyClimatology, wb2_climatology

#: Dry thresholds in millimetres, by the ending of the variable's name.
DRY_MM = {"_24hr": 0.25, "_6hr": 0.1}
#: ``p1`` range where SEEPS is defined.
P1_RANGE = (0.1, 0.85)
#: Training times used for the wet-threshold quantile (evenly spaced), to bound memory.
MAX_TIMES = 1000


def dry_threshold(variable: str, units: str = "m") -> float | None:
    """The dry threshold of ``variable`` in its ``units`` (``m`` or ``mm``), or ``None``."""
    mm = next((v for end, v in DRY_MM.items() if variable.endswith(end)), None)
    if mm is None:
        return None
    return mm if units == "mm" else mm / 1000.0


def seeps_map(
    forecast: torch.Tensor, truth: torch.Tensor, dry: torch.Tensor, wet: torch.Tensor, p1: torch.Tensor
) -> torch.Tensor:
    """SEEPS at every point, ``[B, V, H, W]``; NaN where not defined.

    Parameters
    ----------
    forecast, truth : torch.Tensor
        ``[B, V, H, W]`` accumulations.
    dry, wet, p1 : torch.Tensor
        Thresholds and dry fraction, broadcastable to ``forecast`` (NaN: not scored).
    """

    def category(x):
        return (x >= dry).long() + (x >= wet).long()

    f, o = category(forecast.double()), category(truth.double())
    p1 = p1.double().expand_as(forecast)
    q = 1.0 - p1
    table = (
        torch.stack(
            [
                torch.zeros_like(p1),
                1 / q,
                4 / q,
                1 / p1,
                torch.zeros_like(p1),
                3 / q,
                1 / p1 + 3 / (2 + p1),
                3 / (2 + p1),
                torch.zeros_like(p1),
            ]
        )
        * 0.5
    )  # [9, B, V, H, W], row-major [forecast, observed]
    score = table.gather(0, (3 * f + o)[None])[0]
    defined = (p1 > P1_RANGE[0]) & (p1 < P1_RANGE[1]) & dry.isfinite() & wet.isfinite()
    return torch.where(defined, score, torch.full_like(score, float("nan")))


@dataclass
class SeepsReference:
    """SEEPS thresholds and dry fraction of the scored variables, ``[1, V, H, W]`` each (NaN for
    variables SEEPS does not score); ``wet_hourly`` (a WB2 climatology's thresholds by day of
    year and hour) replaces ``wet`` at each valid time when given."""

    dry: torch.Tensor
    wet: torch.Tensor
    p1: torch.Tensor
    wet_hourly: HourlyClimatology | None = None

    def at(self, stamps: np.ndarray | None, crop) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(dry, wet, p1)`` for the valid times ``stamps``, cropped by ``crop`` (a region's)."""
        wet = self.wet if self.wet_hourly is None else torch.as_tensor(self.wet_hourly.at(stamps)).double()
        return crop(self.dry), crop(wet), crop(self.p1)


def seeps_climatology(
    store: ShardStore, variables: list[str], units: dict, split: str = "train"
) -> SeepsReference | None:
    """SEEPS references from ``split``, per grid point over all its times; ``None`` when no
    scored variable has a dry threshold."""
    dry = [dry_threshold(v, units.get(v, "m")) for v in variables]
    if all(d is None for d in dry):
        return None
    shape = (1, len(variables), *store.grid)
    out = [torch.full(shape, float("nan"), dtype=torch.float64) for _ in range(3)]
    shards = store.shards(split)
    for j, (var, threshold) in enumerate(zip(variables, dry)):
        if threshold is None:
            continue
        values = _sample(shards, var)
        wet_values = np.where(values >= threshold, values, np.nan)
        with warnings.catch_warnings():  # a point never wet has no threshold: NaN, not scored
            warnings.simplefilter("ignore", RuntimeWarning)
            wet = np.nanquantile(wet_values, 2 / 3, axis=0)
        out[0][0, j] = threshold
        out[1][0, j] = torch.as_tensor(wet)
        out[2][0, j] = torch.from_numpy((values < threshold).mean(axis=0))
    return SeepsReference(*out)


def seeps_from_wb2(
    ds, variables: list[str], units: dict, lat: np.ndarray, lon: np.ndarray, source: str
) -> SeepsReference | None:
    """SEEPS references from a WB2 climatology Zarr that has ``{v}_seeps_dry_fraction`` and
    ``{v}_seeps_threshold``: ``p1`` averaged over hour and day of year, the threshold at each
    valid time (WeatherBench 2's use of them); ``None`` when it has them for no scored variable."""
    dry = [dry_threshold(v, units.get(v, "m")) for v in variables]
    have = [
        d is not None and f"{v}_seeps_threshold" in ds and f"{v}_seeps_dry_fraction" in ds
        for v, d in zip(variables, dry)
    ]
    if not any(have):
        return None
    names = [v for v, h in zip(variables, have) if h]
    fraction = wb2_climatology(ds, [f"{v}_seeps_dry_fraction" for v in names], lat, lon, source)
    threshold = wb2_climatology(ds, [f"{v}_seeps_threshold" for v in names], lat, lon, source)
    shape = (1, len(variables), len(lat), len(lon))
    out = [torch.full(shape, float("nan"), dtype=torch.float64) for _ in range(2)]
    wet = np.full((*threshold.fields.shape[:2], len(variables), len(lat), len(lon)), np.nan, np.float32)
    for k, v in enumerate(names):
        j = variables.index(v)
        out[0][0, j] = dry[j]
        out[1][0, j] = torch.from_numpy(fraction.fields[:, :, k].mean(axis=(0, 1)).astype(np.float64))
        wet[:, :, j] = threshold.fields[:, :, k]
    hourly = HourlyClimatology(wet, threshold.hours, list(variables))
    return SeepsReference(out[0], out[0] * np.nan, out[1], hourly)


def _sample(shards, variable: str) -> np.ndarray:
    """At most :data:`MAX_TIMES` evenly spaced fields ``[T, H, W]`` of ``variable`` over ``shards``."""
    total = sum(s.steps for s in shards)
    pick = set(np.unique(np.linspace(0, total - 1, min(MAX_TIMES, total)).round().astype(int)).tolist())
    fields, start = [], 0
    for shard in shards:
        local = [t - start for t in range(start, start + shard.steps) if t in pick]
        if local:
            fields.append(np.asarray(shard.array(variable))[local, 0].astype(np.float64))
        start += shard.steps
    return np.concatenate(fields)
