# SPDX-License-Identifier: Apache-2.0
"""Latitude-weighted forecast scores, per variable, in physical units.

Weights are ``cos(lat)`` normalised to mean 1 over the grid's latitudes, as
in WeatherBench and ClimaX. RMSE takes the square root per sample, then the
mean over samples; ACC is PhysicsNeMo's (``physicsnemo.metrics.climate.acc``,
anomalies against a climatology, centred by their weighted mean) averaged
over samples. ClimateBench's NRMSEs are at the end.
"""

from __future__ import annotations

import numpy as np
import torch
from physicsnemo.metrics.climate.acc import acc as _acc


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


def rmse(pred: torch.Tensor, target: torch.Tensor, lat: torch.Tensor) -> torch.Tensor:
    """Latitude-weighted RMSE per variable, ``[V]``, from ``[B, V, H, W]``."""
    w = latitude_weights(lat).to(pred.device, torch.float64)[:, None]
    per_sample = ((pred.double() - target.double()).square() * w).mean(dim=(-2, -1)).sqrt()
    return per_sample.mean(dim=0)


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


def climatebench_nrmse(pred, truth, lat) -> dict[str, float]:
    """ClimateBench's normalised RMSEs over a whole period (e.g. 2080-2100).

    With ``<.>`` the cos-latitude weighted global mean and ``N = |<mean_t truth>|``:

    * ``spatial = sqrt(<(mean_t truth - mean_t pred)^2>) / N``
    * ``global = sqrt(mean_t (<truth> - <pred>)^2) / N``
    * ``total = spatial + 5 global``

    Computed on the full period at once, so it does not depend on how the
    predictions were batched.

    Parameters
    ----------
    pred, truth : array-like
        ``[T, H, W]`` yearly fields of the period.
    lat : array-like
        ``[H]`` degrees.
    """
    pred, truth = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    if pred.shape != truth.shape or pred.ndim != 3:
        raise ValueError(f"pred and truth must both be [T, H, W], got {pred.shape} and {truth.shape}")
    w = np.cos(np.deg2rad(np.asarray(lat, np.float64)))[:, None] * np.ones(pred.shape[-1])
    w = w / w.sum()

    def global_mean(field):
        return (field * w).sum(axis=(-2, -1))

    norm = abs(global_mean(truth.mean(0)))
    spatial = np.sqrt(global_mean((truth.mean(0) - pred.mean(0)) ** 2)) / norm
    glob = np.sqrt(((global_mean(truth) - global_mean(pred)) ** 2).mean()) / norm
    return {"nrmse_spatial": float(spatial), "nrmse_global": float(glob), "nrmse_total": float(spatial + 5 * glob)}
