# SPDX-License-Identifier: Apache-2.0
"""Forcings: inputs that are known functions of time and place, computed rather than predicted.

A forcing is evaluated at the **valid time of the forecast** (initial time
plus lead), the time the model predicts for, as GraphCast does with its
forcings: a model asked for +6 h sees the sun where it will be at +6 h. The
fields come from PhysicsNeMo's solar geometry (``physicsnemo.utils.zenith_angle``)
and from the calendar:

========================================  =========  ===========================================
name                                      units      value at valid time ``t``
========================================  =========  ===========================================
``cos_zenith``                            1          cosine of the solar zenith angle (negative at night)
``toa_incident_solar_radiation``          J m**-2    incident solar energy at the top of the atmosphere,
                                                     accumulated over the hour ending at ``t``
                                                     (ERA5's ``tisr`` convention)
``year_progress_sin`` / ``_cos``          1          sin / cos of 2 pi x (fraction of a tropical year
                                                     since 2000-01-01 00 UTC); the same everywhere
``day_progress_sin`` / ``_cos``           1          sin / cos of 2 pi x (local mean solar time / 24 h)
========================================  =========  ===========================================

They are normalised with statistics over a fixed reference year (2000, every
6 h), so a run's statistics do not depend on its data split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from physicsnemo.utils.zenith_angle import cos_zenith_angle_from_timestamp, toa_incident_solar_radiation_accumulated

from ..errors import InputError

TROPICAL_YEAR_DAYS = 365.2422
EPOCH_2000 = np.datetime64("2000-01-01T00", "s").astype(np.int64)

#: Forcing name -> units.
FORCINGS = {
    "cos_zenith": "1",
    "toa_incident_solar_radiation": "J m**-2",
    "year_progress_sin": "1",
    "year_progress_cos": "1",
    "day_progress_sin": "1",
    "day_progress_cos": "1",
}


def check_forcings(names: Sequence[str], key: str = "data.forcings") -> list[str]:
    """``names`` as a list, or an :class:`InputError` naming ``key`` and the unknown names."""
    names = list(names or [])
    unknown = [n for n in names if n not in FORCINGS]
    if unknown:
        raise InputError(f"{key}={names}: {unknown} are not forcings; choose among {list(FORCINGS)}")
    if len(set(names)) != len(names):
        raise InputError(f"{key}={names}: a forcing is listed twice")
    return names


def unix_seconds(times) -> np.ndarray:
    """``[T]`` float64 seconds since 1970-01-01 UTC of datetime64 times (or of numbers, taken as seconds)."""
    times = np.asarray(times)
    if np.issubdtype(times.dtype, np.datetime64):
        if np.isnat(times).any():
            raise InputError("forcings need the initial condition's time; it has none (NaT)")
        return times.astype("datetime64[s]").astype(np.int64).astype(np.float64)
    return times.astype(np.float64)


def forcing_fields(names: Sequence[str], seconds, lat, lon) -> np.ndarray:
    """Forcings at valid times on a grid, physical units.

    Parameters
    ----------
    names : sequence of str
        Forcing names (:data:`FORCINGS`).
    seconds : array-like
        ``[T]`` valid times, seconds since 1970-01-01 UTC (:func:`unix_seconds`).
    lat, lon : array-like
        ``[H]`` and ``[W]`` degrees.

    Returns
    -------
    np.ndarray
        ``[T, F, H, W]`` float32.
    """
    t = np.asarray(seconds, np.float64)[:, None, None]
    lat2 = np.asarray(lat, np.float64)[None, :, None]
    lon2 = np.asarray(lon, np.float64)[None, None, :]
    shape = (t.shape[0], lat2.shape[1], lon2.shape[2])
    year = 2 * np.pi * ((t - EPOCH_2000) / 86400.0 / TROPICAL_YEAR_DAYS % 1.0)
    day = 2 * np.pi * ((t / 86400.0 + lon2 / 360.0) % 1.0)
    fields = []
    for name in check_forcings(names):
        if name == "cos_zenith":
            value = cos_zenith_angle_from_timestamp(t, lon2, lat2)
        elif name == "toa_incident_solar_radiation":
            with np.errstate(invalid="ignore"):  # arccos at the poles' edge cases inside PhysicsNeMo
                value = toa_incident_solar_radiation_accumulated(t, lat2, lon2, interval=3600)
        else:
            angle = year if name.startswith("year") else day
            value = np.sin(angle) if name.endswith("sin") else np.cos(angle)
        fields.append(np.broadcast_to(value, shape))
    return np.stack(fields, axis=1).astype(np.float32) if fields else np.zeros((shape[0], 0, *shape[1:]), np.float32)


def reference_statistics(names: Sequence[str], lat, lon) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std ``[F]`` of the forcings over the reference year (2000, every 6 h), on the grid
    thinned to at most 64 x 128 points (they are smooth, and 0.25 degree would cost 1.5 G values)."""
    lat, lon = np.asarray(lat), np.asarray(lon)
    lat, lon = lat[:: max(1, -(-lat.size // 64))], lon[:: max(1, -(-lon.size // 128))]
    seconds = EPOCH_2000 + 6 * 3600.0 * np.arange(1464)
    fields = forcing_fields(names, seconds, lat, lon).astype(np.float64)
    weights = np.broadcast_to(np.cos(np.deg2rad(lat))[:, None], fields.shape[2:])  # area weights
    mean = (fields * weights).sum(axis=(0, 2, 3)) / (weights.sum() * fields.shape[0])
    var = ((fields - mean[None, :, None, None]) ** 2 * weights).sum(axis=(0, 2, 3)) / (weights.sum() * fields.shape[0])
    return mean, np.sqrt(np.maximum(var, 1e-12))


@dataclass(frozen=True)
class Forcings:
    """The forcings a model takes, on its grid, with their normalisation.

    Attributes
    ----------
    names : tuple of str
    lat, lon : np.ndarray
        ``[H]``, ``[W]`` degrees.
    mean, std : np.ndarray
        ``[F]`` normalisation statistics (:func:`reference_statistics`).
    """

    names: tuple[str, ...]
    lat: np.ndarray
    lon: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def build(cls, names: Sequence[str], lat, lon) -> Forcings:
        names = tuple(check_forcings(names))
        return cls(names, np.asarray(lat), np.asarray(lon), *reference_statistics(names, lat, lon))

    def fields(self, seconds) -> np.ndarray:
        """``[T, F, H, W]`` forcings in physical units at valid times ``seconds`` ``[T]``."""
        return forcing_fields(self.names, seconds, self.lat, self.lon)

    def normalised(self, seconds) -> np.ndarray:
        """``[T, F, H, W]`` normalised forcings at valid times ``seconds`` ``[T]``."""
        fields = self.fields(seconds)
        return (fields - self.mean[:, None, None].astype(np.float32)) / self.std[:, None, None].astype(np.float32)

    def fill(self, state: torch.Tensor, variables: Sequence[str], seconds) -> torch.Tensor:
        """``state`` ``[B, V, H, W]`` (normalised) with its forcing channels set for valid times
        ``seconds`` ``[B]``; a new tensor (``state`` is left as it is)."""
        index = [list(variables).index(n) for n in self.names if n in variables]
        if not index:
            return state
        seconds = seconds.detach().cpu().numpy() if torch.is_tensor(seconds) else np.asarray(seconds)
        fields = torch.from_numpy(self.normalised(np.broadcast_to(seconds, (state.shape[0],))))
        state = state.clone()
        state[:, index] = fields[:, [i for i, n in enumerate(self.names) if n in variables]].to(state)
        return state
