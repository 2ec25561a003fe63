# SPDX-License-Identifier: Apache-2.0
"""Scores of forecasts per method, lead, region and variable, as WeatherBench 2
aggregates them; no I/O.

A :class:`Metric` is three steps: per-point ``maps`` of a batch, their
area means in every region (:mod:`.score_regions` weights), ``combine``\\ d
into one value per sample, averaged over samples (initial times), then
``finish``\\ ed. So RMSE is the square root of the time-mean MSE, and ACC
the time mean of each sample's (uncentred) anomaly correlation, as in
WeatherBench 2. A baseline is ``baseline(verification) -> forecast`` or
``None`` where it does not apply. Add one to :data:`METRICS`,
:data:`ENSEMBLE_METRICS` or :data:`BASELINES` and it is in every scorecard,
file and plot (:mod:`.report`).

A forecast with a leading member axis (``[M, B, V, H, W]``) is an ensemble:
the deterministic metrics score its mean, the ensemble ones its members,
and a rank histogram is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from ..metrics import crps_map, rank_of_truth
from .score_regions import WB2_REGIONS, region_weights
from .seeps import seeps_map


@dataclass
class Verification:
    """What forecasts of one batch of initial times at one lead are scored against.

    Attributes
    ----------
    truth : torch.Tensor
        ``[B, V, H, W]`` at the valid times, physical units.
    climatology : torch.Tensor
        ``[B, V, H, W]`` or ``[1, V, H, W]``: the climatology of the valid times.
    initial : torch.Tensor or None
        ``[B, V, H, W]``: the scored variables at the initial times (``None``
        when one of them is not a model input).
    lat : torch.Tensor
        ``[H]`` latitudes (the default region weights).
    seeps : tuple of torch.Tensor, optional
        ``(dry, wet, p1)`` thresholds and dry fraction, ``[B or 1, V, H, W]`` each, NaN
        for variables SEEPS does not score (:mod:`.seeps`).
    thresholds : dict of str to torch.Tensor, optional
        Threshold name -> ``[B or 1, V, H, W]`` values of the Brier and ranked probability
        scores (:mod:`.probabilistic`), NaN for variables without that threshold.
    """

    truth: torch.Tensor
    climatology: torch.Tensor
    initial: torch.Tensor | None
    lat: torch.Tensor
    seeps: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    thresholds: dict[str, torch.Tensor] | None = None

    def shared(self, name: str, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        """A map every method's score uses (the truth's anomaly), computed once per verification."""
        cache = self.__dict__.setdefault("_shared", {})
        if name not in cache:
            cache[name] = make()
        return cache[name]

    def take(self, index: Sequence[int]) -> Verification:
        """The verification of the samples ``index`` only (an external forecast lacking some)."""

        def pick(t):
            return None if t is None or t.shape[0] == 1 else t[list(index)]

        return replace(
            self,
            truth=self.truth[list(index)],
            initial=pick(self.initial),
            climatology=self.climatology if self.climatology.shape[0] == 1 else pick(self.climatology),
            seeps=None if self.seeps is None else tuple(s if s.shape[0] == 1 else pick(s) for s in self.seeps),
            thresholds=None
            if self.thresholds is None
            else {n: t if t.shape[0] == 1 else pick(t) for n, t in self.thresholds.items()},
        )


def _same(x):
    return x


def _anomaly_correlation(cross, f2, o2):
    return cross / (f2 * o2).sqrt()


def _anomalies(forecast, v):
    fa, oa = forecast - v.climatology, v.shared("truth_anomaly", lambda: v.truth - v.climatology)
    return fa * oa, fa.square(), v.shared("truth_anomaly_squared", lambda: oa.square())


def _seeps_maps(forecast, v):
    if v.seeps is None:
        return None
    score = seeps_map(forecast, v.truth, *v.seeps)
    valid = score.isfinite().double()
    return score.nan_to_num(0.0), valid


@dataclass(frozen=True)
class Metric:
    """``maps(forecast, verification) -> (map, ...)`` per point (``None``: does not apply),
    ``combine(*area_means) -> per-sample value``, ``finish(time_mean) -> score``."""

    maps: Callable
    combine: Callable = _same
    finish: Callable = _same


#: Deterministic scores (the ensemble mean of an ensemble).
METRICS: dict[str, Metric] = {
    "rmse": Metric(lambda f, v: ((f - v.truth).square(),), finish=torch.sqrt),
    "bias": Metric(lambda f, v: (f - v.truth,)),
    "mae": Metric(lambda f, v: ((f - v.truth).abs(),)),
    "acc": Metric(_anomalies, _anomaly_correlation),
    "seeps": Metric(_seeps_maps, lambda s, n: s / n),
}

#: Scores of the members of an ensemble (``[M, B, V, H, W]``); ``None`` where they need more members.
ENSEMBLE_METRICS: dict[str, Metric] = {
    "crps": Metric(lambda m, v: (crps_map(m, v.truth, fair=True),) if m.shape[0] > 1 else None),
    "spread": Metric(lambda m, v: (m.var(dim=0, correction=1),) if m.shape[0] > 1 else None, finish=torch.sqrt),
}

#: Reference forecasts scored next to the model.
BASELINES: dict[str, Callable] = {
    "persistence": lambda v: v.initial,
    "climatology": lambda v: v.climatology.expand_as(v.truth),
}


class Scorer:
    """Running means of every metric per method, lead, region and variable.

    Parameters
    ----------
    variables : sequence of str
        The scored variables, in the order of the ``V`` axis.
    regions : mapping of str to torch.Tensor, optional
        Region name -> ``[H, W]`` weights summing to 1 (:func:`.score_regions.region_weights`);
        default: the whole grid, weighted by cell area from the verification's latitudes.
    metrics, ensemble_metrics, baselines : mapping, optional
        Default :data:`METRICS`, :data:`ENSEMBLE_METRICS` and :data:`BASELINES`.
    dtype : torch.dtype
        Of the maps and their area means (float32, the data's, by default: half the memory
        traffic of float64, relative error ~1e-6); sums over samples are float64.
    seed : int
        Of the random split of ties in the rank histogram.
    """

    def __init__(
        self,
        variables: Sequence[str],
        regions: Mapping[str, torch.Tensor] | None = None,
        metrics: Mapping[str, Metric] = METRICS,
        ensemble_metrics: Mapping[str, Metric] = ENSEMBLE_METRICS,
        baselines: Mapping[str, Callable] = BASELINES,
        dtype: torch.dtype = torch.float32,
        seed: int = 0,
    ):
        self.variables, self.metrics, self.baselines = list(variables), dict(metrics), dict(baselines)
        self.ensemble_metrics, self.dtype = dict(ensemble_metrics), dtype
        self.names = None if regions is None else list(regions)
        self.weights = None if regions is None else torch.stack([regions[n] for n in self.names]).to(dtype)
        self.sums: dict[tuple[str, float], dict[str, torch.Tensor]] = {}
        self.counts: dict[tuple[str, float], int] = {}
        self.ranks: dict[tuple[str, float], torch.Tensor] = {}
        self.generator = torch.Generator().manual_seed(seed)  # rank ties, reproducibly

    def add(
        self,
        lead: float,
        forecast: torch.Tensor,
        verification: Verification,
        method: str = "model",
        baselines: bool = True,
    ) -> None:
        """Score ``forecast`` (``[B, V, H, W]``, or ``[M, B, V, H, W]`` members) of ``method``
        at ``lead`` hours, and, with ``baselines``, every baseline."""
        if self.weights is None:
            lat = verification.lat.cpu().numpy()
            self.names = ["global"]
            self.weights = torch.stack(
                list(
                    region_weights({"global": WB2_REGIONS["global"]}, lat, np.zeros(verification.truth.shape[-1]))[
                        0
                    ].values()
                )
            )
            self.weights = self.weights.to(self.dtype)
        verification = replace(
            verification, truth=verification.truth.to(self.dtype), climatology=verification.climatology.to(self.dtype)
        )
        candidates = {method: forecast}
        if baselines:
            candidates.update({name: make(verification) for name, make in self.baselines.items()})
        for name, guess in candidates.items():
            if guess is not None:
                self._score(name, lead, guess.to(self.dtype), verification)

    def _score(self, method: str, lead: float, guess: torch.Tensor, v: Verification) -> None:
        key = (method, lead)
        members = guess if guess.ndim == 5 else None
        mean = guess.mean(dim=0) if members is not None else guess
        w = self.weights.to(guess.device)
        sums = self.sums.setdefault(key, {})
        scored = [(name, metric, mean) for name, metric in self.metrics.items()]
        if members is not None:
            scored += [(name, metric, members) for name, metric in self.ensemble_metrics.items()]
        if members is not None and members.shape[0] > 1:
            ranks = rank_of_truth(members, v.truth, self.generator)
            hist = torch.stack(
                [
                    torch.einsum("bvhw,rhw->rv", (ranks == k).to(w.dtype), w).double()
                    for k in range(members.shape[0] + 1)
                ],
                dim=-1,
            )
            self.ranks[key] = self.ranks.get(key, 0) + hist.cpu()
        for name, metric, field in scored:
            maps = metric.maps(field, v)
            if maps is None:
                continue
            means = [torch.einsum("bvhw,rhw->rbv", m.to(w.dtype), w).double() for m in maps]
            per_sample = metric.combine(*means)  # [R, B, V]
            sums[name] = sums.get(name, 0) + per_sample.sum(dim=1).cpu()
        self.counts[key] = self.counts.get(key, 0) + v.truth.shape[0]

    def table(self) -> pd.DataFrame:
        """One row per variable, lead, method and region: ``samples`` and a column per metric
        (NaN where undefined, e.g. the ACC of the climatology, which has no anomaly);
        ensembles add ``spread_skill`` (spread over the RMSE of the ensemble mean)."""
        rows = []
        for (method, lead), sums in self.sums.items():
            n = self.counts[(method, lead)]
            scores = {name: self._finish(name, total / n) for name, total in sums.items()}
            if "spread" in scores:
                scores["spread_skill"] = scores["spread"] / scores["rmse"]
            for r, region in enumerate(self.names):
                for j, var in enumerate(self.variables):
                    rows.append(
                        {
                            "variable": var,
                            "lead_hours": lead,
                            "method": method,
                            "region": region,
                            "samples": n,
                            **{k: s[r, j].item() for k, s in scores.items()},
                        }
                    )
        return pd.DataFrame(rows).sort_values(["region", "variable", "lead_hours", "method"], ignore_index=True)

    def _finish(self, name: str, mean: torch.Tensor) -> torch.Tensor:
        metric = self.metrics.get(name) or self.ensemble_metrics[name]
        return metric.finish(mean)

    def rank_histograms(self) -> pd.DataFrame:
        """Area-weighted rank frequencies of the truth among the members (bins sum to 1): one row
        per method, lead, region, variable and rank ``0..M``."""
        rows = [
            {
                "method": method,
                "lead_hours": lead,
                "region": region,
                "variable": var,
                "rank": k,
                "frequency": (hist[r, j, k] / hist[r, j].sum()).item(),
            }
            for (method, lead), hist in self.ranks.items()
            for r, region in enumerate(self.names)
            for j, var in enumerate(self.variables)
            for k in range(hist.shape[-1])
        ]
        return pd.DataFrame(rows, columns=["method", "lead_hours", "region", "variable", "rank", "frequency"])
