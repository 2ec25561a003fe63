# SPDX-License-Identifier: Apache-2.0
"""Forecasts from xarray initial conditions::

    run = Run.load("runs/finetune_global")
    out = forecast(run, xr.open_dataset("ic.nc"), lead_times=["24h", "72h"])
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
import xarray as xr

from ..data.regrid import regrid
from ..data.sources import split_name
from .rollout import forecast_steps, model_steps
from .run import Run


def _hours(lead) -> float:
    return pd.to_timedelta(lead if not isinstance(lead, (int, float)) else f"{lead}h") / pd.Timedelta(hours=1)


def _field(ds: xr.Dataset, name: str) -> xr.DataArray:
    """Variable ``name`` (``geopotential_500``) from a dataset holding it directly or on ``level``."""
    if name in ds:
        return ds[name]
    base, level = split_name(name)
    if level is not None and base in ds and "level" in ds[base].dims:
        if level in ds[base].level.values:
            return ds[base].sel(level=level)
    raise KeyError(f"initial condition lacks variable {name} (has {list(ds.data_vars)})")


def on_model_grid(ds: xr.Dataset, lat: np.ndarray, lon: np.ndarray, regrid_method: str | None) -> xr.Dataset:
    """``ds`` with ``lat``/``lon`` dims and a ``time`` dim, on the model grid (regridded if allowed)."""
    ds = ds.rename({k: v for k, v in {"latitude": "lat", "longitude": "lon"}.items() if k in ds.dims})
    same_grid = ds.lat.size == lat.size and ds.lon.size == lon.size and np.allclose(ds.lat, lat) \
        and np.allclose(ds.lon % 360, lon % 360)
    if not same_grid:
        if regrid_method is None:
            raise ValueError(
                f"initial condition grid ({ds.lat.size} x {ds.lon.size}) differs from the model's "
                f"({lat.size} x {lon.size}, lat {lat[0]:.4g}..{lat[-1]:.4g}); pass regrid_method")
        ds = regrid(ds, lat, lon, regrid_method)
    if "time" not in ds.dims:
        ds = ds.expand_dims(time=[np.datetime64("NaT")] if "time" not in ds.coords else [ds.time.values])
    return ds


def forecast(
    run: Run,
    initial_condition: xr.Dataset,
    lead_times: Sequence = ("24h",),
    out_variables: Sequence[str] | None = None,
    regrid_method: str | None = None,
) -> xr.Dataset:
    """Forecast from an xarray initial condition.

    Parameters
    ----------
    run : Run
        Model with its statistics and region (:meth:`Run.load`).
    initial_condition : xarray.Dataset
        The run's input variables on ``lat``/``lon`` (names as the model's, or
        the base name with a ``level`` dimension), with or without ``time``
        (several initial times are forecast together).
    lead_times : sequence
        Hours as numbers or strings such as ``"72h"``, ``"5D"``; leads beyond
        the trained ones roll out (global runs only).
    out_variables : sequence of str, optional
        Variables to return (default: the run's outputs).
    regrid_method : str, optional
        ``"conservative"`` or ``"bilinear"`` to accept another grid; by default
        a different grid is an error.

    Returns
    -------
    xarray.Dataset
        ``[time, lead_time, lat, lon]`` per variable on the run's region (the
        whole grid for global runs), with ``valid_time`` and units.
    """
    info, model, region = run.info, run.model, run.region
    variables, out_variables = info["variables"], list(out_variables or info["out_variables"])
    ds = on_model_grid(initial_condition, np.asarray(info["lat"]), np.asarray(info["lon"]), regrid_method)
    # constants (land-sea mask, orography) may come without a time axis
    fields = [_field(ds, v).broadcast_like(ds.time).transpose("time", "lat", "lon").values for v in variables]
    mean_x, std_x = (torch.as_tensor(a, dtype=torch.float32)[:, None, None] for a in run.stats(variables))
    mean_y, std_y = (torch.as_tensor(a, dtype=torch.float32)[:, None, None] for a in run.stats(out_variables))
    x = ((torch.as_tensor(np.stack(fields, axis=1), dtype=torch.float32) - mean_x) / std_x).to(region.lat.device)
    hours = [_hours(lead) for lead in lead_times]
    with torch.no_grad():
        stacked = torch.stack([
            forecast_steps(model, x, variables, out_variables, model_steps(info, lead), region)[-1].float().cpu()
            * std_y + mean_y for lead in hours], dim=1).numpy()  # [time, lead, V, H, W]
    units = info.get("units", {})
    out = xr.Dataset(
        {v: (("time", "lead_time", "lat", "lon"), stacked[:, :, j], {"units": units.get(v, "")})
         for j, v in enumerate(out_variables)},
        coords={"time": ds.time.values, "lead_time": pd.to_timedelta(hours, unit="h"),
                "lat": region.lat.cpu().numpy(), "lon": region.lon.cpu().numpy()},
    )
    out = out.assign_coords(valid_time=out.time + out.lead_time)
    out.lat.attrs, out.lon.attrs = {"units": "degrees_north"}, {"units": "degrees_east"}
    return out
