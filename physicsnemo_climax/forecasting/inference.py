# SPDX-License-Identifier: Apache-2.0
"""Forecasts from xarray initial conditions::

run = Run.load("runs/finetune_global")
out = forecast(run, xr.open_dataset("ic.nc"), lead_times=["24h", "72h"])
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr

from ..data.forcings import unix_seconds
from ..data.regrid import regrid
from ..data.sources import on_grid_of
from ..data.times import lead_hours
from ..data.units import STATING, expected_units, parse_assumed
from ..errors import ConfigError, DataError, InputError
from .core import Start, forecast_dataset, lead_forecasts, member_starts, window_dataset
from .ensembles import EnsembleSpec, check_stochastic
from .initial import FILL_BOUND, state, time_axis
from .run import Run

logger = logging.getLogger(__name__)


def on_model_grid(ds: xr.Dataset, lat: np.ndarray, lon: np.ndarray, regrid_method: str | None) -> xr.Dataset:
    """``ds`` (with ``lat``/``lon`` dims, or ``latitude``/``longitude``) on the model grid: the same
    points in another order (north to south, longitudes from -180) are reordered; another grid is
    regridded when ``regrid_method`` allows, else an :class:`InputError`."""
    ds = lat_lon(ds)
    try:
        ds = on_grid_of(ds, xr.Dataset(coords={"lat": lat, "lon": lon}), "the initial condition", "the model's")
    except DataError as err:
        if regrid_method is None:
            raise InputError(f"{err}; pass regrid_method (--regrid) to regrid it") from None
        ds = regrid(ds, lat, lon, regrid_method)
    return ds


def lat_lon(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with its ``latitude``/``longitude`` dimensions named ``lat``/``lon``."""
    return ds.rename({k: v for k, v in {"latitude": "lat", "longitude": "lon"}.items() if k in ds.dims})


def inputs(ds: xr.Dataset, variables: list[str], nan_policy: str) -> np.ndarray:
    """``[time, V, H, W]`` float32 fields of ``variables``; non-finite values are an
    :class:`InputError` naming the variable, or with ``nan_policy="mean"`` set to NaN
    here for the caller to replace with the training mean."""
    if nan_policy not in ("raise", "mean"):
        raise ConfigError(f"nan_policy={nan_policy!r}: choose raise or mean")
    # constants (land-sea mask, orography) may come without a time axis
    fields = [ds[v].broadcast_like(ds.time).transpose("time", "lat", "lon").values for v in variables]
    x = np.stack(fields, axis=1).astype(np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        per_variable = bad.sum(axis=(0, 2, 3))
        listed = ", ".join(f"{v}: {n}" for v, n in zip(variables, per_variable) if n)
        if nan_policy == "raise":
            raise InputError(
                f"the initial condition has non-finite values ({listed}); fill them (values of "
                f"magnitude >= {FILL_BOUND:g} count as fill values), or pass nan_policy='mean' "
                "(--nan-policy mean) to use the training mean there"
            )
        logger.warning("initial condition: non-finite values (%s) replaced by the training mean", listed)
        x[bad] = np.nan
    return x


@torch.no_grad()
def forecast(
    run: Run,
    initial_condition: xr.Dataset,
    lead_times: Sequence | None = ("24h",),
    out_variables: Sequence[str] | None = None,
    regrid_method: str | None = None,
    nan_policy: str = "raise",
    ensemble: EnsembleSpec | None = None,
    assume_units=None,
) -> xr.Dataset:
    """Forecast from an xarray initial condition, on the run's device.

    Parameters
    ----------
    run : Run
        Model with its statistics and region, on the device :meth:`Run.load` decided.
    initial_condition : xarray.Dataset
        The run's input variables on ``lat``/``lon`` (names as the model's, or
        the base name with a ``level`` dimension), with or without ``time``
        (several initial times are forecast together; a run with forcings needs
        ``time``, and computes them, never reads them), each with its ``units``
        attribute; it is checked and brought to the run's units as
        :mod:`.initial` says.
    lead_times : sequence, optional
        Hours as numbers (``12``, ``"12"``) or durations such as ``"72h"``, ``"5D"``;
        leads beyond the trained ones roll out (global runs only). A run of time-mean
        windows (sub-seasonal) takes the starts of its windows, and ``None`` gives all of them.
    out_variables : sequence of str, optional
        Variables to return (default: the run's outputs).
    regrid_method : str, optional
        ``"conservative"`` or ``"bilinear"`` to accept another grid; by default
        a different grid is an error (the same grid in another order is reordered).
    nan_policy : {"raise", "mean"}
        Non-finite input values (and fill values) are an error, or replaced by the training mean.
    ensemble : EnsembleSpec, optional
        Members and perturbation (:mod:`.ensembles`), made by :mod:`.core`. ``lagged`` takes member
        ``k`` from the ``k``-th latest time of the initial condition and forecasts the latest one.
    assume_units : str, mapping or sequence of str, optional
        Units of fields without a ``units`` attribute: ``"run"`` (the run's),
        ``{"2m_temperature": "degC"}``, or ``["2m_temperature=degC", "run"]``
        (:func:`..data.units.parse_assumed`); by default such fields are refused.

    Returns
    -------
    xarray.Dataset
        ``[time, lead_time, lat, lon]`` per variable (``[member, time, ...]`` for an
        ensemble, whose attributes record how it was made) on the run's region (the
        whole grid for global runs), with ``valid_time`` and the run's units; a run of
        time-mean windows gives ``[time, window, lat, lon]`` (:func:`.core.window_dataset`).
    """
    spec, out_variables = ensemble or EnsembleSpec(), list(out_variables or run.info.out_variables)
    check_stochastic(run.model, spec)
    x, times = normalised_state(run, initial_condition, regrid_method, nan_policy, parse_assumed(assume_units))
    hours = forecast_leads(run, lead_times)
    starts, times = initial_starts(run, x, times, spec)
    fields = torch.stack([f for _, f in lead_forecasts(run, starts, out_variables, hours, spec.members)], dim=2)
    out = physical_dataset(run, fields, times, hours, out_variables)
    return out if spec.members == 1 else out.assign_attrs(spec.record())


def forecast_leads(run: Run, lead_times: Sequence | None) -> list[float]:
    """The leads asked for, in hours; ``None`` is every window of a run of time-mean windows.

    Raises
    ------
    InputError
        For ``None`` with a run that forecasts states at leads.
    """
    if lead_times is None:
        if not run.info.windows:
            raise InputError("give the lead times to forecast (--lead 24h 72h)")
        return [start for start, _ in run.info.windows]
    return [lead_hours(lead) for lead in lead_times]


def physical_dataset(
    run: Run, fields: torch.Tensor, times: np.ndarray, hours: list[float], variables: list[str]
) -> xr.Dataset:
    """Normalised forecasts ``fields`` ``[M, T, lead, V, h, w]`` of ``variables`` in the run's units,
    as the forecast dataset (:func:`.core.forecast_dataset`) on the run's region, by window for a
    run of time-mean windows (:func:`.core.window_dataset`)."""
    mean, std = run.field_stats(variables)
    units = {v: expected_units(v, run.info.units) for v in variables}
    lat, lon = run.region.lat.cpu().numpy(), run.region.lon.cpu().numpy()
    out = forecast_dataset((fields * std + mean).numpy(), times, hours, variables, units, lat, lon)
    return window_dataset(out, run.info.windows) if run.info.windows else out


def normalised_state(
    run: Run, initial_condition: xr.Dataset, regrid_method: str | None, nan_policy: str, assumed: dict
) -> tuple[torch.Tensor, np.ndarray]:
    """The normalised model inputs ``[T, V, H, W]`` (on the model's device) of an initial condition
    checked by :mod:`.initial` and brought to the model grid, and its times ``[T]``."""
    info = run.info
    ds = state(time_axis(lat_lon(initial_condition)), run.state_variables, info.units, assumed, STATING)
    ds = on_model_grid(ds, np.asarray(info.lat), np.asarray(info.lon), regrid_method)
    mean_x, std_x = run.field_stats(run.state_variables)
    x = ((torch.from_numpy(inputs(ds, run.state_variables, nan_policy)) - mean_x) / std_x).nan_to_num(0.0)
    return run.model_inputs(x).to(run.region.lat.device), ds.time.values


def initial_starts(run: Run, x: torch.Tensor, times: np.ndarray, spec: EnsembleSpec) -> tuple[list[Start], np.ndarray]:
    """The member starts (:func:`.core.member_starts`) of the states ``x`` ``[T, V, H, W]`` at ``times``,
    and the initial times they forecast from: all of ``times``, or for a ``lagged`` ensemble the
    latest, member ``k`` starting from the ``k``-th latest state.

    Raises
    ------
    InputError
        When a lagged ensemble's initial condition has fewer than ``members`` times, or they are not
        evenly spaced.
    """
    seconds = unix_seconds(times) if run.forcings is not None else None  # NaT (no time) is an error only here
    if spec.perturbation != "lagged" or spec.members == 1:
        return member_starts(run, x, seconds, spec), times
    members = spec.members
    if len(times) < members:
        raise InputError(
            f"a lagged ensemble of {members} members needs {members} initial times, "
            f"the initial condition has {len(times)}"
        )
    gaps = np.diff(times[-members:]) / np.timedelta64(1, "h")
    if len(gaps) and not np.allclose(gaps, gaps[0]):
        raise InputError(f"lagged members need evenly spaced initial times, got gaps of {gaps.tolist()} h")
    step = float(gaps[0]) if len(gaps) else 0.0
    earlier = [x[len(times) - 1 - k :][:1] for k in range(1, members)]
    return member_starts(run, x[-1:], None if seconds is None else seconds[-1:], spec, earlier, step), times[-1:]
