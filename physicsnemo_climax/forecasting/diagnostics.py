# SPDX-License-Identifier: Apache-2.0
"""Fields behind the scores: mean error (bias) maps and zonal energy spectra, per
method at chosen leads; no I/O (:mod:`.report` draws them).

The zonal spectrum of a field is the power of its Fourier transform along
each latitude circle, ``|X_k|^2`` for zonal wavenumbers ``k = 0 .. W/2``
(doubled for ``0 < k < W/2``, so the sum over ``k`` is the mean square along
the circle), averaged over latitudes with cell-area weights and over
samples. A forecast that blurs loses power at high wavenumbers against the
truth's.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from .score_regions import cell_areas


def zonal_power(fields: torch.Tensor, lat: torch.Tensor) -> torch.Tensor:
    """Zonal power spectrum ``[..., W // 2 + 1]`` of ``[..., B, H, W]`` fields (mean over B and H)."""
    w = fields.shape[-1]
    power = torch.fft.rfft(fields.double(), dim=-1).abs().square() / w**2
    power[..., 1 : (w + 1) // 2] *= 2
    area = torch.as_tensor(cell_areas(lat.cpu().numpy()), dtype=torch.float64, device=fields.device)
    return (power * (area / area.sum())[:, None]).sum(dim=-2).mean(dim=-2)


class FieldDiagnostics:
    """Bias maps and zonal spectra per ``(method, lead)`` for the leads in ``leads``; the truth's
    spectra under method ``"truth"``."""

    def __init__(self, leads: Iterable[float], lat: torch.Tensor):
        self.leads, self.lat = set(float(v) for v in leads), lat
        self.errors: dict[tuple[str, float], torch.Tensor] = {}
        self.power: dict[tuple[str, float], torch.Tensor] = {}
        self.counts: dict[tuple[str, float], int] = {}

    def add(self, method: str, lead: float, forecast: torch.Tensor, truth: torch.Tensor) -> None:
        """Accumulate ``forecast`` ``[B, V, H, W]`` (an ensemble ``[M, ...]``: its mean) against ``truth``."""
        if float(lead) not in self.leads:
            return
        if forecast.ndim == 5:
            forecast = forecast.double().mean(dim=0)
        n = truth.shape[0]
        pairs = [(method, forecast)] + ([("truth", truth)] if method == "model" else [])
        for name, field in pairs:
            key = (name, float(lead))
            spectrum = zonal_power(field.transpose(0, 1), self.lat) * n  # [V, K]
            self.power[key] = self.power.get(key, 0) + spectrum.cpu()
            self.counts[key] = self.counts.get(key, 0) + n
        key = (method, float(lead))
        self.errors[key] = self.errors.get(key, 0) + (forecast.double() - truth.double()).sum(dim=0).cpu()

    def bias_map(self, method: str, lead: float) -> torch.Tensor:
        """Mean ``forecast - truth``, ``[V, H, W]``."""
        return self.errors[(method, float(lead))] / self.counts[(method, float(lead))]

    def spectrum(self, method: str, lead: float) -> torch.Tensor:
        """Mean zonal power spectrum ``[V, W // 2 + 1]``."""
        return self.power[(method, float(lead))] / self.counts[(method, float(lead))]
