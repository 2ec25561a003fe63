# SPDX-License-Identifier: Apache-2.0
"""Forecasts from xarray initial conditions.

    run = Run.load("runs/finetune_global")
    out = forecast(run, xr.open_dataset("ic.nc"), lead_times=["24h", "72h"])
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
import xarray as xr

from .data.regrid import regrid
from .data.sources import split_name
from .engine.evaluation import model_steps
from .engine.rollout import forecast_steps
from .engine.run import Run


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
        Model with its statistics (:meth:`Run.load`).
    initial_condition : xarray.Dataset
        The run's input variables on ``lat``/``lon`` (names as the model's,
        or the base name with a ``level`` dimension), with or without a
        ``time`` dimension (several initial times are forecast together).
    lead_times : sequence
        Leads: hours as numbers or strings such as ``"72h"``, ``"5D"``.
        Leads beyond what the run was trained on roll out.
    out_variables : sequence of str, optional
        Variables to return (default: the run's outputs).
    regrid_method : str, optional
        ``"conservative"`` or ``"bilinear"`` to accept another grid; by default
        a different grid is an error.

    Returns
    -------
    xarray.Dataset
        ``[time, lead_time, lat, lon]`` per variable, with ``valid_time`` and
        units.
    """
    info, model = run.info, run.model
    variables = info["variables"]
    out_variables = list(out_variables or info["out_variables"])
    lat, lon = np.asarray(info["lat"]), np.asarray(info["lon"])
    ds = initial_condition.rename({k: v for k, v in {"latitude": "lat", "longitude": "lon"}.items()
                                   if k in initial_condition.dims})
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
    # constants (land-sea mask, orography) may come without a time axis
    fields = [_field(ds, v).broadcast_like(ds.time).transpose("time", "lat", "lon").values for v in variables]
    x = torch.as_tensor(np.stack(fields, axis=1), dtype=torch.float32)
    mean_x, std_x = (torch.as_tensor(a, dtype=torch.float32)[:, None, None] for a in run.stats(variables))
    mean_y, std_y = (torch.as_tensor(a, dtype=torch.float32)[:, None, None] for a in run.stats(out_variables))
    device = next(model.parameters()).device
    x = ((x - mean_x) / std_x).to(device)

    hours = [_hours(lead) for lead in lead_times]
    predictions = []
    with torch.no_grad():
        for lead in hours:
            steps = model_steps(info, lead, "auto")
            pred = forecast_steps(model, x, variables, out_variables, steps)[-1]
            predictions.append(pred.float().cpu() * std_y + mean_y)
    stacked = torch.stack(predictions, dim=1).numpy()  # [time, lead, V, H, W]
    lead_td = pd.to_timedelta(hours, unit="h")
    units = info.get("units", {})
    out = xr.Dataset(
        {v: (("time", "lead_time", "lat", "lon"), stacked[:, :, j], {"units": units.get(v, "")})
         for j, v in enumerate(out_variables)},
        coords={"time": ds.time.values, "lead_time": lead_td, "lat": lat, "lon": lon},
    )
    out = out.assign_coords(valid_time=out.time + out.lead_time)
    out.lat.attrs, out.lon.attrs = {"units": "degrees_north"}, {"units": "degrees_east"}
    return out
