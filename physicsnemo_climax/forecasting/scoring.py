# SPDX-License-Identifier: Apache-2.0
"""Scores of forecasts, accumulated per method, lead and variable; no I/O.

A metric is ``metric(forecast, verification) -> [V]``, its mean over the
batch; a baseline is ``baseline(verification) -> forecast``, or ``None``
where it does not apply. Add one to :data:`METRICS` or :data:`BASELINES`
(or hand your own to :class:`Scorer`) and it is in every scorecard, file and
plot (:mod:`.report`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import pandas as pd
import torch

from ..metrics import acc, bias, mae, rmse


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
        ``[H]`` latitudes, for the weights.
    """

    truth: torch.Tensor
    climatology: torch.Tensor
    initial: torch.Tensor | None
    lat: torch.Tensor


Metric = Callable[[torch.Tensor, Verification], torch.Tensor]
Baseline = Callable[[Verification], "torch.Tensor | None"]

#: Latitude-weighted scores per variable (:mod:`..metrics`).
METRICS: dict[str, Metric] = {
    "rmse": lambda forecast, v: rmse(forecast, v.truth, v.lat),
    "bias": lambda forecast, v: bias(forecast, v.truth, v.lat),
    "mae": lambda forecast, v: mae(forecast, v.truth, v.lat),
    "acc": lambda forecast, v: acc(forecast, v.truth, v.climatology, v.lat),
}

#: Reference forecasts scored next to the model.
BASELINES: dict[str, Baseline] = {
    "persistence": lambda v: v.initial,
    "climatology": lambda v: v.climatology.expand_as(v.truth),
}


class Scorer:
    """Running means of every metric, per method (the model and each baseline), lead and variable.

    Parameters
    ----------
    variables : sequence of str
        The scored variables, in the order of the ``V`` axis.
    metrics, baselines : mapping, optional
        Default :data:`METRICS` and :data:`BASELINES`.
    """

    def __init__(self, variables: Sequence[str], metrics: Mapping[str, Metric] = METRICS,
                 baselines: Mapping[str, Baseline] = BASELINES):
        self.variables, self.metrics, self.baselines = list(variables), dict(metrics), dict(baselines)
        self.sums: dict[tuple[str, float], dict[str, torch.Tensor]] = {}
        self.counts: dict[tuple[str, float], int] = {}

    def add(self, lead: float, forecast: torch.Tensor, verification: Verification) -> None:
        """Score the model's ``forecast`` ``[B, V, H, W]`` and every baseline at ``lead`` hours."""
        candidates = {"model": forecast, **{name: make(verification) for name, make in self.baselines.items()}}
        n = verification.truth.shape[0]
        for method, guess in candidates.items():
            if guess is None:
                continue
            key = (method, lead)
            sums = self.sums.setdefault(key, {m: torch.zeros(len(self.variables), dtype=torch.float64)
                                              for m in self.metrics})
            for name, metric in self.metrics.items():
                sums[name] += metric(guess, verification).double().cpu() * n
            self.counts[key] = self.counts.get(key, 0) + n

    def table(self) -> pd.DataFrame:
        """One row per variable, lead and method; a column per metric (NaN where undefined,
        e.g. the ACC of the climatology, which has no anomaly)."""
        rows = [{"variable": var, "lead_hours": lead, "method": method,
                 **{name: (total[j] / self.counts[(method, lead)]).item() for name, total in sums.items()}}
                for (method, lead), sums in self.sums.items() for j, var in enumerate(self.variables)]
        return pd.DataFrame(rows).sort_values(["variable", "lead_hours", "method"], ignore_index=True)
