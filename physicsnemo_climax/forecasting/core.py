# SPDX-License-Identifier: Apache-2.0
"""The forecast core: normalised initial states and their members in, forecasts at leads out.

Every ClimaX forecast goes through here: ``climax forecast`` and the forecast
API (:mod:`.inference`), the scorecard (:mod:`.evaluation`, one lead at a
time as it scores them) and ensembles of either. :func:`member_starts` makes
the states the members start from (:mod:`.ensembles`), :func:`lead_forecasts`
runs them to each lead (:func:`.rollout.model_steps`,
:func:`.rollout.forecast_steps`), and :func:`forecast_dataset` lays physical
fields out as ``([member,] time, lead_time, lat, lon)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import xarray as xr

from ..data.windows import TimeWindow
from .ensembles import EnsembleSpec, members_of, model_noise
from .rollout import forecast_steps, model_steps


@dataclass(frozen=True)
class Start:
    """A batch of normalised states that start together.

    Attributes
    ----------
    state : torch.Tensor
        ``[B, V, H, W]`` normalised model inputs on the model's device.
    extra : float
        Hours this batch starts before the forecast's initial time (lagged members run
        ``extra`` hours longer, to the same valid time).
    seconds : np.ndarray or None
        ``[B]`` initial times of the states, seconds since 1970 (for the forcings).
    members : tuple of int
        The members the states are, member-major (``B`` is a multiple of their count).
    seed : int
        The ensemble's seed: a stochastic model's noise of each member (:func:`.ensembles.model_noise`).
    """

    state: torch.Tensor
    extra: float = 0.0
    seconds: np.ndarray | None = None
    members: tuple[int, ...] = (0,)
    seed: int = 0


def member_starts(
    run,
    x: torch.Tensor,
    seconds: np.ndarray | None,
    spec: EnsembleSpec,
    earlier: Sequence[torch.Tensor] = (),
    lag: float = 0.0,
) -> list[Start]:
    """The starts of the members of the states ``x`` ``[B, V, H, W]`` (initial times ``seconds``
    ``[B]``), member-major: ``x`` alone (one member), its perturbed members as one batch
    (:func:`.ensembles.members_of`), or (``lagged``) ``x`` and then member ``k``'s state
    ``earlier[k - 1]`` ``[B, V, H, W]``, ``k * lag`` hours before ``x``."""
    if spec.members == 1:
        return [Start(x, 0.0, seconds, seed=spec.seed)]
    if spec.perturbation != "lagged":
        tiled = None if seconds is None else np.tile(seconds, spec.members)
        return [Start(members_of(run, x, spec), 0.0, tiled, tuple(range(spec.members)), spec.seed)]
    return [Start(x, 0.0, seconds, seed=spec.seed)] + [
        Start(state.to(x.device), k * lag, None if seconds is None else seconds - 3600.0 * k * lag, (k,), spec.seed)
        for k, state in enumerate(earlier, start=1)
    ]


def lead_forecasts(
    run, starts: list[Start], out_variables: list[str], leads: Sequence[float], members: int, mode: str = "auto"
) -> Iterator[tuple[float, torch.Tensor]]:
    """``(lead, forecast)`` of each lead: the normalised ``out_variables`` ``[M, B, V, h, w]``
    (float32, on the CPU) of the ``starts`` (:func:`member_starts`), each run to ``lead`` plus its
    ``extra`` hours in the model steps of :func:`.rollout.model_steps` (``mode``), one batch a start;
    a stochastic model's noise is each member's own (:func:`.ensembles.model_noise`)."""
    variables = list(run.info.variables)
    # a lagged member of a run of time-mean windows predicts the window that starts ``lead`` after
    # its own start (S2S practice): a window's mean is only defined at the windows trained
    windows = bool(run.info.windows)
    for lead in leads:
        pred = torch.cat(
            [
                forecast_steps(
                    run.model,
                    s.state,
                    variables,
                    out_variables,
                    model_steps(run.info, lead if windows else lead + s.extra, mode),
                    run.region,
                    run.forcings,
                    s.seconds,
                    model_noise(run.model, s.seed, s.members, len(s.state) // len(s.members), s.state.device),
                )[-1]
                .float()
                .cpu()
                for s in starts
            ]
        )
        yield lead, pred.reshape(members, -1, *pred.shape[1:])


def forecast_dataset(
    fields: np.ndarray,
    times: np.ndarray,
    hours: Sequence[float],
    variables: Sequence[str],
    units: dict,
    lat: np.ndarray,
    lon: np.ndarray,
) -> xr.Dataset:
    """Physical fields ``[M, time, lead, V, h, w]`` as ``(member, time, lead_time, lat, lon)``
    variables (no ``member`` for one member) with their ``units``, and ``valid_time``."""
    dims = ("member", "time", "lead_time", "lat", "lon")
    out = xr.Dataset(
        {v: (dims, fields[:, :, :, j], {"units": units.get(v) or ""}) for j, v in enumerate(variables)},
        coords={
            "member": np.arange(fields.shape[0]),
            "time": times,
            "lead_time": pd.to_timedelta(list(hours), unit="h"),
            "lat": lat,
            "lon": lon,
        },
    )
    out = out.isel(member=0, drop=True) if fields.shape[0] == 1 else out
    out = out.assign_coords(valid_time=out.time + out.lead_time)
    out.lat.attrs, out.lon.attrs = {"units": "degrees_north"}, {"units": "degrees_east"}
    return out


def window_dataset(forecast: xr.Dataset, windows: Sequence[tuple[float, float]]) -> xr.Dataset:
    """A forecast of time-mean windows (:func:`forecast_dataset` with the window starts as its
    leads) laid out by ``window``: labels such as ``d14-28``, with ``window_start`` and
    ``window_end`` after the initial time and ``valid_time_start``/``valid_time_end``.

    ``windows`` are the run's ``(start, end)`` hours; the forecast's leads are starts among them.
    """
    ends = {float(start): float(end) for start, end in windows}
    starts = forecast.lead_time.values / np.timedelta64(1, "h")
    bounds = [TimeWindow(float(h), ends[float(h)]) for h in starts]
    out = forecast.drop_vars("valid_time").rename({"lead_time": "window"})
    out = out.assign_coords(
        window=[w.label for w in bounds],
        window_start=("window", pd.to_timedelta([w.start_hours for w in bounds], unit="h")),
        window_end=("window", pd.to_timedelta([w.end_hours for w in bounds], unit="h")),
    )
    out = out.assign_coords(valid_time_start=out.time + out.window_start, valid_time_end=out.time + out.window_end)
    out.attrs["window_mean"] = "mean of the states from window_start (included) to window_end (excluded)"
    return out
