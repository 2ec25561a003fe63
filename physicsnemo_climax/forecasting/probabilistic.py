# SPDX-License-Identifier: Apache-2.0
"""WeatherBench 2's probabilistic scores of an ensemble and its wind scores, as
:class:`.scoring.Metric` s (per-point maps, area means, time mean; no I/O).

- ``energy_score``: per variable, ``E‖X − y‖ − E‖X − X'‖ / 2`` where ``‖·‖`` is the
  area-weighted root mean square over the region's points (the field of one variable
  is the vector, as WB2 does: variables, levels and leads are scored apart, so no
  units are mixed). ``E‖X − y‖`` is the mean over members; ``E‖X − X'‖`` the mean
  over the ``M − 1`` adjacent pairs of members (WB2's estimate: unbiased, like the
  fair CRPS). It is the CRPS's multivariate sibling: the norm is taken per sample
  before the time mean.
- ``debiased_mse``: the MSE of the ensemble mean minus the members' variance
  (``ddof=1``) over ``M`` at every point: an unbiased estimate of the MSE of the
  mean of infinitely many members (WB2's ``DebiasedEnsembleMeanMSE``); it may be
  negative for a good small ensemble, hence no square root.
- ``brier>T``: ``(P(X > T) − 1{y > T})²`` with ``P`` the fraction of members above
  the threshold ``T`` (WB2's ``EnsembleBrierScore``), for thresholds in physical
  units or climatological quantiles (``brier>q0.9``); ``bss>qQ`` its skill over the
  climatological probability ``1 − Q``, ``1 − <BS> / <BS_clim>`` (time means first).
- ``rps``: over the categories the quantiles cut, ``Σ_k (P(X < t_k) − 1{y < t_k})²``
  (WB2's ``EnsembleRPS``: not divided by the number of categories); ``rpss``
  against the climatological ``P(X < t_k) = q_k``.
- ``wind_vector_rmse``: on the rows of a derived wind speed, the RMSE of the wind
  vector, ``sqrt(<Δu² + Δv²>)`` (WB2's ``WindVectorRMSE``), for every method.

Written here rather than taken from ``physicsnemo.metrics``: it has no energy score,
Brier score or categorical RPS (its ``rank_probability_score`` measures the flatness
of a rank histogram).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import torch

from .scoring import Metric, Verification

#: Wind components whose speed is a derived variable, by the derived name; ``{level}`` stands for
#: every pressure level with both components scored.
WIND_PAIRS = {
    "10m_wind_speed": ("10m_u_component_of_wind", "10m_v_component_of_wind"),
    "wind_speed_{level}": ("u_component_of_wind_{level}", "v_component_of_wind_{level}"),
}


def wind_pairs(variables: Sequence[str]) -> dict[str, tuple[str, str]]:
    """Derived wind speed name -> ``(u, v)`` for every pair of :data:`WIND_PAIRS` in ``variables``."""
    found = {}
    for name, (u, v) in WIND_PAIRS.items():
        if "{level}" not in name:
            if u in variables and v in variables:
                found[name] = (u, v)
            continue
        head = u.split("{level}")[0]
        for var in variables:
            level = var[len(head) :] if var.startswith(head) else ""
            if level.isdigit() and v.format(level=level) in variables:
                found[name.format(level=level)] = (var, v.format(level=level))
    return found


def add_speeds(fields: torch.Tensor, variables: Sequence[str], pairs: Mapping[str, tuple[str, str]]) -> torch.Tensor:
    """``fields`` (``[..., V, H, W]``) with ``sqrt(u² + v²)`` of each pair appended on the ``V`` axis
    (``[..., V + P, H, W]``); computed per member for an ensemble."""
    idx = list(variables)
    speeds = [torch.hypot(fields[..., idx.index(u), :, :], fields[..., idx.index(v), :, :]) for u, v in pairs.values()]
    return torch.cat([fields, torch.stack(speeds, dim=-3)], dim=-3) if speeds else fields


def with_speeds(v: Verification, variables: Sequence[str], pairs: Mapping[str, tuple[str, str]]) -> Verification:
    """``v`` with the wind speeds of ``pairs`` appended to its truth, climatology and initial state
    (:func:`add_speeds`; SEEPS does not score them: NaN). The climatology's speed is that of its mean
    components, the climatological forecast of the vector (below the mean speed). Its thresholds
    already hold the speeds (:class:`.score_thresholds.ScoreThresholds`)."""
    if not pairs:
        return v

    def add(t):
        return None if t is None else add_speeds(t, variables, pairs)

    def nan(t):
        return torch.cat([t, t[:, :1].expand(-1, len(pairs), -1, -1) * float("nan")], dim=1)

    return replace(
        v,
        truth=add(v.truth),
        climatology=add(v.climatology),
        initial=add(v.initial),
        seeps=None if v.seeps is None else tuple(nan(t) for t in v.seeps),
    )


def energy_score_maps(members: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
    """Squared distances whose area means :func:`energy_score_combine` turns into the energy score.

    Parameters
    ----------
    members : torch.Tensor
        ``[M, B, V, H, W]``, ``M >= 2`` (``None`` is returned for fewer).
    truth : torch.Tensor
        ``[B, V, H, W]``.

    Returns
    -------
    tuple of torch.Tensor
        ``2M − 1`` maps ``[B, V, H, W]``: ``(X_m − y)²`` for each member, then
        ``(X_m − X_{m+1})²`` for each adjacent pair.
    """
    if members.shape[0] < 2:
        return None
    return (*(members - truth).square().unbind(0), *(members[:-1] - members[1:]).square().unbind(0))


def energy_score_combine(*means: torch.Tensor) -> torch.Tensor:
    """The per-sample energy score ``[R, B, V]`` from the area means of :func:`energy_score_maps`:
    the square root of each is an area-weighted L2 norm."""
    m = (len(means) + 1) // 2
    norms = torch.stack(means).clamp(min=0).sqrt()  # clamp: rounding below 0 of an all-zero map
    return norms[:m].mean(dim=0) - 0.5 * norms[m:].mean(dim=0)


def debiased_mse_map(members: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """``[B, V, H, W]``: ``(mean − y)² − var / M`` of ``[M, B, V, H, W]`` members (``var`` with ``ddof=1``)."""
    m = members.shape[0]
    return (members.mean(dim=0) - truth).square() - members.var(dim=0, correction=1) / m


def brier_map(members: torch.Tensor, truth: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """``[B, V, H, W]``: ``(P(X > T) − 1{y > T})²``, ``P`` the members' fraction above ``threshold``
    (broadcast with ``truth``; NaN where it is NaN: a variable without the threshold)."""
    above = (members > threshold).to(truth.dtype).mean(dim=0)
    return (above - (truth > threshold).to(truth.dtype)).square() + threshold * 0  # NaN stays NaN


def ranked_probability_maps(
    members: torch.Tensor, truth: torch.Tensor, edges: torch.Tensor, cdf: Sequence[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-point RPS of the members and of the climatological forecast over the categories ``edges`` cut.

    Parameters
    ----------
    members : torch.Tensor
        ``[M, B, V, H, W]``.
    truth : torch.Tensor
        ``[B, V, H, W]``.
    edges : torch.Tensor
        ``[K, B or 1, V, H, W]`` increasing thresholds.
    cdf : sequence of float
        ``K`` climatological probabilities of falling below each edge (the quantiles).

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        ``[B, V, H, W]`` each: ``Σ_k (P(X < t_k) − 1{y < t_k})²`` and the same with ``P = cdf``.
    """
    forecast = (members[None] < edges[:, None]).to(truth.dtype).mean(dim=1)  # [K, B, V, H, W]
    observed = (truth < edges).to(truth.dtype)
    climate = torch.tensor(list(cdf), dtype=truth.dtype, device=truth.device).view(-1, 1, 1, 1, 1)
    nan = edges.sum(dim=0) * 0  # NaN where a variable has no edges
    return (forecast - observed).square().sum(dim=0) + nan, (climate - observed).square().sum(dim=0) + nan


def skill_combine(score: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Both per-sample means kept (``[R, B, V, 2]``), so the skill is a ratio of time means."""
    return torch.stack([score, reference], dim=-1)


def skill_finish(mean: torch.Tensor) -> torch.Tensor:
    """``1 − <score> / <reference>`` from :func:`skill_combine`'s time means (``[R, V, 2]`` -> ``[R, V]``)."""
    return 1 - mean[..., 0] / mean[..., 1]


def _brier(name: str):
    def maps(members, v):
        threshold = (v.thresholds or {}).get(name)
        return None if threshold is None else (brier_map(members, v.truth, threshold),)

    return maps


def _brier_skill(name: str, quantile: float):
    def maps(members, v):
        threshold = (v.thresholds or {}).get(name)
        if threshold is None:
            return None
        observed = (v.truth > threshold).to(v.truth.dtype)
        # the climatological forecast says 1 - q for the exceedance of the q quantile
        return brier_map(members, v.truth, threshold), (1 - quantile - observed).square() + threshold * 0

    return maps


def _rps(names: Sequence[str], quantiles: Sequence[float], reference: bool):
    def maps(members, v):
        if not v.thresholds or any(n not in v.thresholds for n in names):
            return None
        edges = torch.stack([v.thresholds[n] for n in names])  # [K, B or 1, V, H, W], one shape for all
        score, climate = ranked_probability_maps(members, v.truth, edges, quantiles)
        return (score, climate) if reference else (score,)

    return maps


def quantile_name(q: float) -> str:
    """The threshold name of the climatological quantile ``q`` (``q0.9``)."""
    return f"q{q:g}"


def probabilistic_metrics(
    energy: bool = False,
    debiased: bool = False,
    thresholds: Sequence[str] = (),
    quantiles: Sequence[float] = (),
) -> dict[str, Metric]:
    """The ensemble metrics asked for, to add to :data:`.scoring.ENSEMBLE_METRICS`.

    Parameters
    ----------
    energy, debiased : bool
        ``energy_score`` and ``debiased_mse``.
    thresholds : sequence of str
        Names of fixed thresholds (the value, ``273.15``): ``brier>NAME`` each.
    quantiles : sequence of float
        Climatological quantiles, increasing: ``brier>qQ`` and ``bss>qQ`` each, ``rps`` and ``rpss``
        over the categories they cut.
    """
    out = {}
    if energy:
        out["energy_score"] = Metric(lambda m, v: energy_score_maps(m, v.truth), energy_score_combine)
    if debiased:
        out["debiased_mse"] = Metric(lambda m, v: (debiased_mse_map(m, v.truth),) if m.shape[0] > 1 else None)
    for name in thresholds:
        out[f"brier>{name}"] = Metric(_brier(name))
    names = [quantile_name(q) for q in quantiles]
    for name, q in zip(names, quantiles):
        out[f"brier>{name}"] = Metric(_brier(name))
        out[f"bss>{name}"] = Metric(_brier_skill(name, q), skill_combine, skill_finish)
    if names:
        out["rps"] = Metric(_rps(names, quantiles, reference=False))
        out["rpss"] = Metric(_rps(names, quantiles, reference=True), skill_combine, skill_finish)
    return out


def wind_vector_metric(variables: Sequence[str], pairs: Mapping[str, tuple[str, str]]) -> Metric:
    """``wind_vector_rmse`` on the rows of the derived speeds in ``variables`` (NaN elsewhere):
    ``sqrt`` of the time mean of the area mean of ``Δu² + Δv²``."""
    idx = list(variables)
    rows = [(idx.index(name), idx.index(u), idx.index(v)) for name, (u, v) in pairs.items()]

    def maps(forecast, v):
        error = forecast - v.truth
        out = torch.full_like(error, float("nan"))
        for k, iu, iv in rows:
            out[:, k] = error[:, iu].square() + error[:, iv].square()
        return (out,)

    return Metric(maps, finish=torch.sqrt)
