# SPDX-License-Identifier: Apache-2.0
"""ClimateBench's scores: the normalised RMSEs of a whole period, and the
linear pattern-scaling baseline they are compared with."""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .data import Scenario


def nrmse(pred, truth, lat) -> dict[str, float]:
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
        raise InputError(f"pred and truth must both be [T, H, W], got {pred.shape} and {truth.shape}")
    w = np.cos(np.deg2rad(np.asarray(lat, np.float64)))[:, None] * np.ones(pred.shape[-1])
    w = w / w.sum()

    def global_mean(field):
        return (field * w).sum(axis=(-2, -1))

    norm = abs(global_mean(truth.mean(0)))
    spatial = np.sqrt(global_mean((truth.mean(0) - pred.mean(0)) ** 2)) / norm
    glob = np.sqrt(((global_mean(truth) - global_mean(pred)) ** 2).mean()) / norm
    return {"nrmse_spatial": float(spatial), "nrmse_global": float(glob), "nrmse_total": float(spatial + 5 * glob)}


def pattern_scaling(train: list[Scenario], test: Scenario, target: str) -> np.ndarray:
    """Linear pattern scaling: per cell, ``y = a + b CO2 + c CH4`` fitted by least squares
    on the training scenarios' yearly global-mean CO2 and CH4; returns ``[T_test, H, W]``."""

    def design(s):  # CO2, CH4 are global: any cell holds them
        return np.stack([np.ones(len(s.years)), s.inputs[:, 0, 0, 0], s.inputs[:, 2, 0, 0]], axis=1).astype(np.float64)

    a = np.concatenate([design(s) for s in train])
    y = np.concatenate([s.outputs[target].reshape(len(s.years), -1) for s in train]).astype(np.float64)
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    return (design(test) @ coef).reshape(len(test.years), *test.outputs[target].shape[1:]).astype(np.float32)
