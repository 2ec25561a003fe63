# SPDX-License-Identifier: Apache-2.0
"""Latitude-weighted forecast scores, per variable, in physical units.

Weights are ``cos(lat)`` normalised to mean 1 over the grid's latitudes, as
in WeatherBench and ClimaX. RMSE takes the square root per sample, then the
mean over samples; bias (forecast minus truth) and MAE are weighted means
over the grid, averaged over samples; ACC is PhysicsNeMo's (``physicsnemo.metrics.climate.acc``,
anomalies against a climatology, centred by their weighted mean) averaged
over samples. ClimateBench's NRMSEs are at the end.
"""

from __future__ import annotations

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


def bias(pred: torch.Tensor, target: torch.Tensor, lat: torch.Tensor) -> torch.Tensor:
    """Latitude-weighted mean error (forecast minus truth) per variable, ``[V]``, from ``[B, V, H, W]``."""
    w = latitude_weights(lat).to(pred.device, torch.float64)[:, None]
    return ((pred.double() - target.double()) * w).mean(dim=(-2, -1)).mean(dim=0)


def mae(pred: torch.Tensor, target: torch.Tensor, lat: torch.Tensor) -> torch.Tensor:
    """Latitude-weighted mean absolute error per variable, ``[V]``, from ``[B, V, H, W]``."""
    w = latitude_weights(lat).to(pred.device, torch.float64)[:, None]
    return ((pred.double() - target.double()).abs() * w).mean(dim=(-2, -1)).mean(dim=0)


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
