# SPDX-License-Identifier: Apache-2.0
"""WeatherBench 2's Zarr layout, both ways.

A WB2 forecast has ``time`` (the initialisation), ``prediction_timedelta``
(``timedelta64``), ``latitude`` (here written south to north), ``longitude``
(``0..360``), ``level`` (hPa) for upper-air variables, and optionally an
ensemble axis (``number`` in WB2's ENS data; ``realization`` and ``member``
are read too). Variables carry WB2's names (ours without the level:
``geopotential_500`` is ``geopotential`` at ``level=500``) with ``long_name``
and ``units``. A WB2 climatology has ``dayofyear`` (1..366) and ``hour``
instead of the two time axes.

This package works on ``(time, lead_time, [member,] lat, lon)`` with one
variable per level; :func:`to_wb2` and :func:`from_wb2` convert.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from ..errors import DataError
from .sources import split_name

#: ``long_name`` and ``units`` of WeatherBench 2's ERA5 variables.
ATTRS = {
    "geopotential": ("Geopotential", "m**2 s**-2"),
    "temperature": ("Temperature", "K"),
    "u_component_of_wind": ("U component of wind", "m s**-1"),
    "v_component_of_wind": ("V component of wind", "m s**-1"),
    "specific_humidity": ("Specific humidity", "kg kg**-1"),
    "relative_humidity": ("Relative humidity", "%"),
    "vertical_velocity": ("Vertical velocity", "Pa s**-1"),
    "2m_temperature": ("2 metre temperature", "K"),
    "10m_u_component_of_wind": ("10 metre U wind component", "m s**-1"),
    "10m_v_component_of_wind": ("10 metre V wind component", "m s**-1"),
    "mean_sea_level_pressure": ("Mean sea level pressure", "Pa"),
    "total_precipitation_6hr": ("Total precipitation", "m"),
    "total_precipitation_24hr": ("Total precipitation", "m"),
    "toa_incident_solar_radiation": ("TOA incident solar radiation", "J m**-2"),
    "land_sea_mask": ("Land-sea mask", "(0 - 1)"),
}
#: Axis order of WB2 forecasts.
ORDER = ("time", "prediction_timedelta", "number", "level", "latitude", "longitude")
#: Ensemble axes WB2-layout files use, the first found is read as ``member``.
MEMBER_DIMS = ("number", "realization", "member", "ensemble")
#: The kind of a forecast Zarr written by ``climax forecast --format wb2`` (:func:`..files.output_folder`).
WB2_FORECAST = "WeatherBench 2 forecast"


def written_by_climax(folder: Path) -> bool:
    """Whether ``folder`` is a WB2 forecast Zarr an older ``climax forecast`` wrote (before output
    markers): its root attributes say ``made_by: physicsnemo-climax ...``."""
    try:
        attrs = json.loads((Path(folder) / ".zattrs").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(attrs, dict) and str(attrs.get("made_by", "")).startswith("physicsnemo-climax")


def to_wb2(ds: xr.Dataset, attrs: dict | None = None) -> xr.Dataset:
    """A forecast ``(time, lead_time, [member,] lat, lon)`` per variable in WB2's layout.

    Variables on levels are stacked on ``level`` (their union: a variable missing
    at a level is NaN there); ``attrs`` go to the dataset (run, checkpoint).
    """
    ds = ds.drop_vars([c for c in ("valid_time",) if c in ds.coords])
    ds = ds.rename(
        {
            k: v
            for k, v in {
                "lead_time": "prediction_timedelta",
                "lat": "latitude",
                "lon": "longitude",
                "member": "number",
            }.items()
            if k in ds.dims
        }
    )
    groups: dict[str, list] = {}
    for name in ds.data_vars:
        base, level = split_name(name)
        groups.setdefault(base, []).append((level, name))
    out = {}
    for base, items in groups.items():
        if items[0][0] is None:
            out[base] = ds[items[0][1]]
        else:
            out[base] = xr.concat([ds[n].expand_dims(level=[lv]) for lv, n in sorted(items)], dim="level", join="outer")
        order = [d for d in ORDER if d in out[base].dims]
        out[base] = out[base].transpose(*order, *[d for d in out[base].dims if d not in order])
        long_name, units = ATTRS.get(base, (base.replace("_", " "), ""))
        out[base].attrs = {"long_name": long_name, "units": ds[items[0][1]].attrs.get("units") or units}
    wb2 = xr.Dataset(out, attrs=dict(attrs or {}))
    wb2 = wb2.assign_coords(longitude=wb2.longitude % 360).sortby(["latitude", "longitude"])
    wb2.latitude.attrs, wb2.longitude.attrs = {"units": "degrees_north"}, {"units": "degrees_east"}
    if "level" in wb2.dims:
        wb2 = wb2.assign_coords(level=wb2.level.astype(np.int64))
        wb2.level.attrs = {"units": "hPa", "long_name": "pressure level"}
    return wb2


def from_wb2(ds: xr.Dataset, variables: list[str], what: str = "the forecast") -> xr.Dataset:
    """``variables`` (our names) of a WB2-layout dataset as ``(..., lat, lon)`` per variable;
    lazy (nothing is read). Time axes are renamed ``lead_time`` (from ``prediction_timedelta``),
    the ensemble axis ``member``.

    Raises
    ------
    DataError
        Naming what is missing: a variable, or a level of one.
    """
    renames = {"prediction_timedelta": "lead_time", "latitude": "lat", "longitude": "lon"}
    member = next((d for d in MEMBER_DIMS if d in ds.dims), None)
    if member is not None:
        renames[member] = "member"
    ds = ds.rename({k: v for k, v in renames.items() if k in ds.dims or k in ds.coords})
    fields, missing = {}, []
    for name in variables:
        base, level = split_name(name)
        source = name if name in ds else (f"{base}_mean" if f"{base}_mean" in ds else base)
        if source == name and name in ds:
            fields[name] = ds[name]
        elif source in ds and level is not None and "level" in ds[source].dims:
            if level in ds.level.values:
                fields[name] = ds[source].sel(level=level, drop=True)
            else:
                missing.append(f"{name} (levels {ds.level.values.tolist()})")
        elif source in ds and level is None and "level" not in ds[source].dims:
            fields[name] = ds[source]
        else:
            missing.append(name)
    if missing:
        raise DataError(f"{what} lacks {', '.join(missing)} (has {sorted(ds.data_vars)})")
    return xr.Dataset(fields)
