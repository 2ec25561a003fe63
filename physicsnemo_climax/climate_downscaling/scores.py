# SPDX-License-Identifier: Apache-2.0
"""The downscaling scores of the paper (appendix 9.1), accumulated over a split.

Per method and output variable, in physical units, over all samples:

* ``rmse``: latitude-weighted RMSE, the square root per sample then the mean
  over samples (:func:`..metrics.rmse`, as forecasting scores it);
* ``mean_bias``: mean(prediction) - mean(truth) over all samples and points,
  unweighted (the paper's formula);
* ``area_weighted_bias``: the same difference with ``cos(lat)`` weights
  (:func:`..metrics.bias`), for comparison with forecasting's bias;
* ``pearson``: the correlation of the flattened prediction and truth (all
  samples and points, unweighted).

Sums are float64 and taken around a fixed per-variable ``shift`` (the target
store's mean), so the correlation does not lose digits to large means such
as geopotential's. The zonal power spectra (:func:`..forecasting.diagnostics.zonal_power`)
of every method and of the truth are averaged over samples.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from ..forecasting.diagnostics import zonal_power
from ..metrics import bias, rmse

#: The moments each (method, variable) keeps.
MOMENTS = ("samples", "points", "rmse", "area_bias", "p", "t", "pp", "tt", "pt")


class DownscalingScores:
    """Sums per ``(method, variable)``; the truth's spectra under method ``"truth"``.

    Parameters
    ----------
    lat : torch.Tensor
        ``[H]`` degrees of the target grid.
    shift : dict
        ``{variable: value}`` subtracted before the moments are summed (the target's mean).
    """

    def __init__(self, lat: torch.Tensor, shift: dict[str, float]):
        self.lat, self.shift = lat.double().cpu(), dict(shift)
        self.sums: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
        self.power: dict[tuple[str, str], torch.Tensor] = {}

    def add(self, method: str, names: Sequence[str], pred: torch.Tensor, truth: torch.Tensor) -> None:
        """Accumulate ``pred`` against ``truth``, both ``[B, V, H, W]`` for the variables ``names``."""
        pred, truth = pred.double().cpu(), truth.double().cpu()
        n = truth.shape[0]
        per_rmse, per_bias = rmse(pred, truth, self.lat) * n, bias(pred, truth, self.lat) * n
        p_power, t_power = (zonal_power(f.transpose(0, 1), self.lat) * n for f in (pred, truth))
        for k, name in enumerate(names):
            p, t = pred[:, k] - self.shift[name], truth[:, k] - self.shift[name]
            moments = dict(
                samples=torch.tensor(float(n), dtype=torch.float64),
                points=torch.tensor(float(t.numel()), dtype=torch.float64),
                rmse=per_rmse[k],
                area_bias=per_bias[k],
                p=p.sum(),
                t=t.sum(),
                pp=(p * p).sum(),
                tt=(t * t).sum(),
                pt=(p * t).sum(),
            )
            kept = self.sums.setdefault((method, name), {m: torch.zeros((), dtype=torch.float64) for m in MOMENTS})
            for m in MOMENTS:
                kept[m] += moments[m]
            self._add_power((method, name), p_power[k])
            if method == "model":  # the truth's spectrum once per sample
                self._add_power(("truth", name), t_power[k])

    def _add_power(self, key: tuple[str, str], power: torch.Tensor) -> None:
        self.power[key] = self.power.get(key, 0) + power

    def table(self) -> pd.DataFrame:
        """One row per method and variable: ``rmse``, ``mean_bias``, ``area_weighted_bias``,
        ``pearson``, ``samples``."""
        rows = []
        for (method, name), s in self.sums.items():
            points = s["points"]
            mean_p, mean_t = s["p"] / points, s["t"] / points
            cov = s["pt"] / points - mean_p * mean_t
            var_p, var_t = s["pp"] / points - mean_p**2, s["tt"] / points - mean_t**2
            rows.append(
                {
                    "method": method,
                    "variable": name,
                    "rmse": float(s["rmse"] / s["samples"]),
                    "mean_bias": float(mean_p - mean_t),
                    "area_weighted_bias": float(s["area_bias"] / s["samples"]),
                    "pearson": float(cov / torch.sqrt(var_p * var_t)),
                    "samples": int(s["samples"]),
                }
            )
        return pd.DataFrame(rows)

    def spectra(self) -> pd.DataFrame:
        """Mean zonal power per method (and ``truth``), variable and zonal wavenumber."""
        rows = []
        for (method, name), total in self.power.items():
            samples = self.sums[("model" if method == "truth" else method, name)]["samples"]
            for k, value in enumerate((total / samples).tolist()):
                rows.append({"method": method, "variable": name, "wavenumber": k, "power": value})
        return pd.DataFrame(rows)
