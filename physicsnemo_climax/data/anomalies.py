# SPDX-License-Identifier: Apache-2.0
"""How anomalies persist: what a residual ClimaX (``model.residual``) forecasts around.

For each variable, in normalised units: the training split's time mean ``c``
(``[H, W]``), and on each latitude row the std ``sigma`` of the anomalies
``a = x - c`` and their lag correlation ``rho(k)`` at ``k`` store steps. The
damped persistence ``c + rho(L) (x - c)`` is the best forecast linear in the
anomaly at lead ``L`` on that row; ``sigma sqrt(1 - rho(L)^2)`` is its error.
Anomalies persist for very different times at different latitudes (a week at
the poles, a day in the storm tracks), so one global ``rho`` would damp polar
anomalies far too fast and leave a band of error at the poles at long leads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .store import ShardStore, StoreError


@dataclass(frozen=True)
class AnomalyStatistics:
    """``climatology`` ``[V, H, W]``, ``std`` ``[V, H]``, ``corr`` ``[V, H, lags]`` at lags
    ``k * hours`` (constant beyond the last lag measured), all in normalised units."""

    climatology: np.ndarray
    std: np.ndarray
    corr: np.ndarray
    hours: float


def table_hours(step_hours: float, max_lead_hours: float, lags: int) -> float:
    """Spacing of a table of ``lags`` correlations: the store step, or a multiple of it so that
    the table reaches ``max_lead_hours``."""
    return step_hours * max(1, int(np.ceil(max_lead_hours / ((lags - 1) * step_hours))))


def anomaly_statistics(
    store: ShardStore,
    variables: list[str],
    max_lead_hours: float,
    lags: int = 64,
    split: str = "train",
    anchors: int = 128,
) -> AnomalyStatistics:
    """The statistics of ``variables`` from up to ``anchors`` evenly spaced times of ``split``, in a
    table of ``lags`` correlations reaching ``max_lead_hours``.

    Raises
    ------
    StoreError
        When no shard of ``split`` spans the longest lag.
    """
    hours = table_hours(store.hours_per_step, max_lead_hours, lags)
    stride, table = int(round(hours / store.hours_per_step)), lags
    lags = min(table - 1, int(np.ceil(max_lead_hours / hours)))
    shards = store.shards(split)
    index = [(s, t) for s, shard in enumerate(shards) for t in range(shard.steps - lags * stride)]
    if not index:
        raise StoreError(f"{store.root}/{split}: no shard spans {lags * hours:g} h, the longest lead")
    pick = [index[i] for i in np.unique(np.linspace(0, len(index) - 1, min(anchors, len(index))).round().astype(int))]
    mean, std = store.statistics(variables)
    clim = (store.climatology(split, variables).astype(np.float64) - mean[:, None, None]) / std[:, None, None]
    sigma, corr = np.empty((len(variables), store.grid[0])), np.ones((len(variables), store.grid[0], table))
    for j, v in enumerate(variables):
        a = np.stack(
            [
                [
                    (np.asarray(shards[s].array(v))[t + k * stride, 0] - mean[j]) / std[j] - clim[j]
                    for k in range(lags + 1)
                ]
                for s, t in pick
            ]
        )  # [anchors, lags + 1, H, W]
        power = (a**2).sum(axis=(0, 3))  # [lags + 1, H]: sums over anchors and longitudes
        sigma[j] = np.sqrt(power[0] / (a.shape[0] * a.shape[3]))
        cross = (a[:, :1] * a).sum(axis=(0, 3))
        norm = np.sqrt(power[:1] * power)
        corr[j, :, : lags + 1] = np.where(norm > 0, cross / np.where(norm > 0, norm, 1.0), 1.0).T  # constants persist
        corr[j, :, lags + 1 :] = corr[j, :, lags : lags + 1]
    return AnomalyStatistics(clim.astype(np.float32), sigma, corr, hours)
