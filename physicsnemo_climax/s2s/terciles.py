# SPDX-License-Identifier: Apache-2.0
"""Tercile categories of window means and the ranked probability score (RPS) over them.

The S2S AI Challenge scores the probabilities of three categories (below,
near and above normal), whose edges are the 1/3 and 2/3 quantiles of the
observed window means of the training years at each grid point. The RPS of
one forecast is the sum over categories of the squared difference between
the cumulative forecast probabilities and the cumulative observed ones
(0 or 1); the climatological forecast says 1/3 for each. The skill score
compares the *mean* RPS of the model with the mean RPS of climatology,
``RPSS = 1 - <RPS> / <RPS_clim>`` (averaged before the ratio, as the
challenge does), so it is 0 for climatology and 1 for a perfect forecast.

Written here because PhysicsNeMo's ``rank_probability_score`` measures the
flatness of a rank histogram, not a categorical forecast against observed
categories.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..data import ShardStore
from ..data.windows import TimeWindow, running_window_means
from ..errors import InputError
from ..forecasting.scoring import Metric
from ..models import GridRegion

#: The quantiles that divide a variable into three equally likely categories.
TERCILES = (1 / 3, 2 / 3)


def category_cdf(values: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """Cumulative probabilities of the first two categories: ``[2, ...]``, values at or below ``lower``
    count as below normal, values above ``upper`` as above normal (``values``, ``lower``, ``upper``
    broadcast together)."""
    return torch.stack([(values <= lower).to(values.dtype), (values <= upper).to(values.dtype)])


def rps_maps(
    members: torch.Tensor, truth: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-point RPS of the members' category probabilities and of climatology's 1/3-1/3-1/3.

    Parameters
    ----------
    members : torch.Tensor
        ``[M, B, V, H, W]``; each member votes for one category.
    truth, lower, upper : torch.Tensor
        ``[B, V, H, W]``: the observed window mean and the tercile edges.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        ``[B, V, H, W]`` each: the model's RPS and the climatological forecast's.
    """
    forecast = category_cdf(members, lower, upper).mean(dim=1)  # [2, B, V, H, W]
    observed = category_cdf(truth, lower, upper)
    climate = torch.tensor(TERCILES, dtype=truth.dtype, device=truth.device).view(2, 1, 1, 1, 1)
    return (forecast - observed).square().sum(dim=0), (climate - observed).square().sum(dim=0)


def _rps(members, v):
    if getattr(v, "terciles", None) is None:
        return None
    return (rps_maps(members, v.truth, *v.terciles)[0],)


def _rps_climatology(members, v):
    if getattr(v, "terciles", None) is None:
        return None
    return (rps_maps(members, v.truth, *v.terciles)[1],)


#: The ensemble scores of a window forecast besides the forecasting ones: the RPS of the model
#: and of climatology on the same samples (their ratio is the RPSS, :func:`rpss`).
RPS_METRICS = {"rps": Metric(_rps), "rps_climatology": Metric(_rps_climatology)}


def rpss(rps: float, rps_climatology: float) -> float:
    """The skill score of a mean RPS over the climatological forecast's on the same samples."""
    return 1.0 - rps / rps_climatology if rps_climatology > 0 else float("nan")


@dataclass
class TercileEdges:
    """Tercile edges of a window's mean from the training split, per grid point.

    With ``days`` set, per day of year: from the training window means whose initial day of
    year lies within ``days // 2`` days of it (a year is circular), as WeatherBench 2's
    climatology pools neighbouring days; without, one set from all of them (a climate
    without seasons).

    Attributes
    ----------
    means : np.ndarray
        ``[N, V, h, w]`` training window means, on the run's region.
    day_of_year : np.ndarray or None
        ``[N]`` the initial day of year of each (``None``: pooled edges).
    days : int or None
        The width of the pool of days of year.
    """

    means: np.ndarray
    day_of_year: np.ndarray | None
    days: int | None
    _cache: dict = field(default_factory=dict, repr=False)

    def at(self, day_of_year: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(lower, upper)`` edges ``[B, V, h, w]`` for initial days of year ``[B]`` (or
        ``[1, V, h, w]`` when pooled)."""
        if self.day_of_year is None or day_of_year is None:
            return tuple(torch.as_tensor(e)[None] for e in self._edges(None))
        edges = [self._edges(int(d)) for d in day_of_year]
        return tuple(torch.as_tensor(np.stack([e[k] for e in edges])) for k in range(2))

    def _edges(self, day: int | None) -> tuple[np.ndarray, np.ndarray]:
        """The 1/3 and 2/3 quantiles of the window means pooled around ``day``."""
        if day not in self._cache:
            pool = self.means
            if day is not None:
                gap = np.abs(self.day_of_year - day)
                pool = self.means[np.minimum(gap, 366 - gap) <= self.days // 2]
            lower, upper = np.quantile(pool, TERCILES, axis=0).astype(np.float32)
            self._cache[day] = (lower, upper)
        return self._cache[day]


def training_terciles(
    store: ShardStore,
    variables: list[str],
    window: TimeWindow,
    region: GridRegion,
    days: int | None,
    split: str = "train",
) -> TercileEdges:
    """The tercile edges of ``window``'s mean of ``variables`` from the ``split`` of ``store``.

    Every day's first initial time enters (a 6-hourly store's four daily starts hardly differ
    over two weeks, and a quarter of the memory: ``[N, V, h, w]`` float32 with ``N`` one per
    training day). ``days`` pools days of year (:class:`TercileEdges`); ``None`` pools all.

    Raises
    ------
    InputError
        When no training shard holds a whole window, naming the store and the window.
    """
    first, stop = window.steps(store.hours_per_step)
    stride = max(1, int(round(24 / store.hours_per_step)))
    means, stamps = [], []
    times = store.shard_times(split) if days is not None else None
    for s, shard in enumerate(store.shards(split)):
        fields = [running_window_means(shard.array(v)[:, 0], first, stop)[::stride] for v in variables]
        if not len(fields[0]):
            continue
        means.append(region.crop(torch.as_tensor(np.stack(fields, axis=1))).numpy())
        if times is not None:
            stamps.append(times[s][: len(times[s]) - stop + 1][::stride])
    if not means:
        raise InputError(f"{store.root}/{split}: no shard is long enough for window {window.label}'s terciles")
    doy = None if times is None else day_of_year(np.concatenate(stamps))
    return TercileEdges(np.concatenate(means), doy, days)


def day_of_year(stamps: np.ndarray) -> np.ndarray:
    """``[N]`` day of year (1..366) of ``datetime64`` stamps."""
    days = stamps.astype("datetime64[D]")
    return (days - days.astype("datetime64[Y]")).astype(int) + 1
