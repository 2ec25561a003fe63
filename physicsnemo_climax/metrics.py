# SPDX-License-Identifier: Apache-2.0
"""Latitude-weighted forecast scores, per variable, in physical units.

Weights are ``cos(lat)`` normalised to mean 1 over the grid's latitudes, as
in WeatherBench and ClimaX. RMSE takes the square root per sample, then the
mean over samples; bias (forecast minus truth) and MAE are weighted means
over the grid, averaged over samples; the ensemble CRPS is PhysicsNeMo's map
(fair form by default) weighted the same way; ACC is PhysicsNeMo's (``physicsnemo.metrics.climate.acc``,
anomalies against a climatology, centred by their weighted mean) averaged
over samples. ClimateBench's NRMSEs are at the end.
"""

from __future__ import annotations

import torch
from physicsnemo.metrics.climate.acc import acc as _acc
from physicsnemo.metrics.general.crps import crps as _crps
from physicsnemo.metrics.general.crps import kcrps as _kcrps

from .errors import InputError


def latitude_weights(lat: torch.Tensor) -> torch.Tensor:
    """``cos(lat)`` normalised to mean 1, ``[H]``."""
    w = torch.cos(torch.deg2rad(lat.double()))
    return (w / w.mean()).float()


def weighted_mse_loss(pred: torch.Tensor, target: torch.Tensor, lat: torch.Tensor) -> torch.Tensor:
    """Latitude-weighted mean squared error over everything (the training loss).

    Parameters
    ----------
    pred, target : torch.Tensor
        ``[..., H, W]``.
    lat : torch.Tensor
        ``[H]`` degrees.
    """
    w = latitude_weights(lat).to(pred.device, pred.dtype)[:, None]
    return ((pred - target).square() * w).mean()


def weighted_crps_loss(
    members: torch.Tensor, target: torch.Tensor, lat: torch.Tensor, alpha: float = 1.0
) -> torch.Tensor:
    """Latitude-weighted almost-fair kernel CRPS of an ensemble over everything (the CRPS
    training loss): weighted as :func:`weighted_mse_loss`, every variable alike.

    Parameters
    ----------
    members : torch.Tensor
        ``[M, ..., H, W]``, ``M >= 2`` members of one forecast.
    target : torch.Tensor
        ``[..., H, W]``.
    lat : torch.Tensor
        ``[H]`` degrees.
    alpha : float
        ``alpha`` times the fair CRPS plus ``1 - alpha`` times the CRPS of the members'
        own distribution (all ``M^2`` pairs): ``1`` is fair, ``0.95`` the almost-fair CRPS
        of AIFS-CRPS (Lang et al. 2024).

    Notes
    -----
    Per point, ``E|X - y| - (1 - (1 - alpha) / M) sum_{i != j} |x_i - x_j| / (2 M (M - 1))``.
    The fair CRPS alone is unbiased for the CRPS of the distribution the members come from,
    but degenerate: with two members, one on the truth makes the score 0 wherever the other
    is; the small share of the members' own CRPS removes that. PhysicsNeMo's ``kcrps`` gives both ends (``biased=False``: fair,
    ``biased=True``: all ``M^2`` pairs) but not the blend, which is made here. Float32.
    """
    m = members.shape[0]
    if m < 2:
        raise InputError(f"the CRPS loss needs at least 2 members, got {m}")
    members, target = members.float(), target.float()
    local = _kcrps(members, target, dim=0, biased=False)
    if alpha != 1.0:
        local = alpha * local + (1.0 - alpha) * _kcrps(members, target, dim=0, biased=True)
    w = latitude_weights(lat).to(local.device)[:, None]
    return (local * w).mean()


def rmse(pred: torch.Tensor, target: torch.Tensor, lat: torch.Tensor) -> torch.Tensor:
    """Latitude-weighted RMSE per variable, ``[V]``, from ``[B, V, H, W]``."""
    w = latitude_weights(lat).to(pred.device, torch.float64)[:, None]
    per_sample = ((pred.double() - target.double()).square() * w).mean(dim=(-2, -1)).sqrt()
    return per_sample.mean(dim=0)


def bias(pred: torch.Tensor, target: torch.Tensor, lat: torch.Tensor) -> torch.Tensor:
    """Latitude-weighted mean error (forecast minus truth) per variable, ``[V]``, from ``[B, V, H, W]``."""
    w = latitude_weights(lat).to(pred.device, torch.float64)[:, None]
    return ((pred.double() - target.double()) * w).mean(dim=(-2, -1)).mean(dim=0)


def mae(pred: torch.Tensor, target: torch.Tensor, lat: torch.Tensor) -> torch.Tensor:
    """Latitude-weighted mean absolute error per variable, ``[V]``, from ``[B, V, H, W]``."""
    w = latitude_weights(lat).to(pred.device, torch.float64)[:, None]
    return ((pred.double() - target.double()).abs() * w).mean(dim=(-2, -1)).mean(dim=0)


def crps_map(members: torch.Tensor, target: torch.Tensor, fair: bool = True) -> torch.Tensor:
    """CRPS of an ensemble at every point, ``[...]`` from ``[M, ...]`` members and ``[...]`` truth.

    Parameters
    ----------
    fair : bool
        ``True`` (WeatherBench 2's form): ``E|X - y| - E|X - X'| / 2`` with ``E|X - X'|``
        over the ``M (M - 1)`` pairs of distinct members, unbiased for the CRPS of the
        distribution the members are drawn from. ``False``: over all ``M^2`` pairs, the
        CRPS of the empirical distribution of these members (PhysicsNeMo's kernel form,
        and ``properscoring``'s, which upstream CorrDiff scores with).

    Notes
    -----
    The map comes from PhysicsNeMo's ``crps`` (kernel method, all ``M^2`` pairs); the fair
    form subtracts ``E_{M^2}|X - X'| / (2 (M - 1))``, computed from the sorted members
    (``sum_{i,j} |x_i - x_j| = 2 sum_k (2k - M + 1) x_(k)``). One member gives ``|x - y|``
    in the empirical form; the fair form needs two.
    """
    m = members.shape[0]
    if m < 2 and fair:
        raise InputError(f"the fair CRPS of an ensemble needs at least 2 members, got {m}")
    local = _crps(members.double(), target.double(), dim=0, method="kernel")
    if fair:
        ranks = torch.arange(m, dtype=torch.float64, device=members.device)
        order = (2 * ranks - m + 1).view(m, *([1] * (members.ndim - 1)))
        pairs = 2 * (members.double().sort(dim=0).values * order).sum(dim=0) / m**2  # E|X - X'| over M^2 pairs
        local = local - pairs / (2 * (m - 1))
    return local


def crps(members: torch.Tensor, target: torch.Tensor, lat: torch.Tensor, fair: bool = True) -> torch.Tensor:
    """Latitude-weighted CRPS of an ensemble per variable, ``[V]``, mean over samples.

    ``members`` ``[M, B, V, H, W]`` (``M >= 2``), ``target`` ``[B, V, H, W]``, ``lat`` ``[H]``;
    ``fair`` as in :func:`crps_map`.
    """
    w = latitude_weights(lat).to(members.device, torch.float64)[:, None]
    return (crps_map(members, target, fair) * w).mean(dim=(-2, -1)).mean(dim=0)


def rank_of_truth(
    members: torch.Tensor, target: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Rank of the truth among ``M`` members at every point, ``0..M`` (``[...]`` int64).

    The rank is the number of members below the truth; members equal to it are
    split at random between below and above (so a dry truth among dry members
    does not pile up at rank 0), as rank histograms are usually built.
    """
    below = (members < target).sum(dim=0)
    ties = (members == target).sum(dim=0)
    if not bool(ties.any()):
        return below
    u = torch.rand(ties.shape, generator=generator, dtype=torch.float64).to(ties.device)
    return below + torch.floor(u * (ties + 1)).long()


def acc(pred: torch.Tensor, target: torch.Tensor, climatology: torch.Tensor, lat: torch.Tensor) -> torch.Tensor:
    """Latitude-weighted anomaly correlation per variable, ``[V]``.

    Parameters
    ----------
    pred, target : torch.Tensor
        ``[B, V, H, W]``.
    climatology : torch.Tensor
        ``[V, H, W]`` or ``[B, V, H, W]`` (e.g. day-of-year climatology per sample).
    lat : torch.Tensor
        ``[H]`` degrees.
    """
    clim = climatology.expand_as(pred).double()
    return _acc(pred.double(), target.double(), clim, lat.double().to(pred.device)).mean(dim=0)
