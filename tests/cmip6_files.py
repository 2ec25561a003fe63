# SPDX-License-Identifier: Apache-2.0
"""Small CMIP6 files laid out as ESGF delivers them, for the CMIP6 tests.

One variable per file, named ``{var}_{table}_{model}_{experiment}_{member}_gn_{start}-{end}.nc``;
CMOR names and attributes (``units``, ``standard_name``, ``_FillValue`` 1e20); ``plev`` in Pa,
descending; ``lat``/``lon`` with ``lat_bnds``/``lon_bnds``; ``time`` in ``days since
1850-01-01`` of the model's calendar, with ``time_bnds``.
"""

from pathlib import Path

import cftime
import numpy as np
import xarray as xr

MODEL = "MPI-ESM1-2-HR"
PLEV = np.array([100000.0, 85000.0, 70000.0, 50000.0, 25000.0])
#: CMOR name -> (standard_name, units, upper air)
CMOR = {
    "tas": ("air_temperature", "K", False),
    "pr": ("precipitation_flux", "kg m-2 s-1", False),
    "ta": ("air_temperature", "K", True),
    "zg": ("geopotential_height", "m", True),
    "ua": ("eastward_wind", "m s-1", True),
    "va": ("northward_wind", "m s-1", True),
    "hus": ("specific_humidity", "1", True),
}
#: A plausible size per CMOR variable, for the analytic values: (offset, scale).
SIZES = {
    "tas": (285.0, 15.0),
    "pr": (3e-5, 2e-5),
    "ta": (250.0, 10.0),
    "zg": (5000.0, 300.0),
    "ua": (5.0, 10.0),
    "va": (0.0, 5.0),
    "hus": (5e-3, 2e-3),
}


def model_grid(h=12, w=24):
    """A regular model grid: latitudes south to north, longitudes from 0, with their bounds."""
    dlat, dlon = 180 / h, 360 / w
    lat = -90 + (np.arange(h) + 0.5) * dlat
    lon = np.arange(w) * dlon + dlon / 2
    return lat, lon, np.stack([lat - dlat / 2, lat + dlat / 2], 1), np.stack([lon - dlon / 2, lon + dlon / 2], 1)


def stamps(start, steps, hours=6, calendar="proleptic_gregorian"):
    """``steps`` cftime dates of ``calendar`` every ``hours`` from ``start`` (a tuple y, m, d, h)."""
    first = cftime.datetime(*start, calendar=calendar)
    return [first + np.timedelta64(hours * k, "h").item() for k in range(steps)]


def values(var, dates, lat, lon, level=None):
    """The analytic field ``[T, H, W]`` (``[T, P, H, W]`` with levels) of ``var`` at ``dates``."""
    offset, scale = SIZES[var]
    days = np.array([(d - cftime.datetime(1850, 1, 1, calendar=d.calendar)).total_seconds() / 86400 for d in dates])
    la, lo = np.deg2rad(lat)[None, :, None], np.deg2rad(lon)[None, None, :]
    base = np.cos(la) * np.cos(lo - 0.3 * days[:, None, None]) + 0.5 * np.sin(la)
    if level is None:
        return (offset + scale * base).astype(np.float32)
    pressure = (level / 1e5)[None, :, None, None]
    # heights grow with the log of pressure (a 7.4 km scale height); the rest scale with pressure
    profile = 7400.0 * np.log(1 / pressure) + 100.0 if var == "zg" else offset * pressure
    return (profile + scale * base[:, None]).astype(np.float32)


def write(folder, var, dates, h=12, w=24, table="6hrPlevPt", alone=None):
    """One ESGF-like file of ``var`` at ``dates`` (cftime); returns its path. With ``alone`` (hPa), only
    that level, as a variable of its own with a scalar ``plev`` (6hrPlevPt's ``zg500``)."""
    if alone is not None:
        return write_alone(folder, var, dates, alone, h, w, table)
    name, units, upper = CMOR[var]
    calendar = dates[0].calendar
    lat, lon, lat_bnds, lon_bnds = model_grid(h, w)
    dims = ("time", "plev", "lat", "lon") if upper else ("time", "lat", "lon")
    data = values(var, dates, lat, lon, PLEV if upper else None)
    step = dates[1] - dates[0]
    coords = {"time": dates, "lat": lat, "lon": lon}
    if upper:
        coords["plev"] = PLEV
    ds = xr.Dataset(
        {
            var: (dims, data, {"standard_name": name, "units": units}),
            "lat_bnds": (("lat", "bnds"), lat_bnds),
            "lon_bnds": (("lon", "bnds"), lon_bnds),
            "time_bnds": (("time", "bnds"), np.stack([np.array(dates) - step / 2, np.array(dates) + step / 2], 1)),
        },
        coords=coords,
        attrs={"source_id": MODEL, "table_id": table, "variable_id": var, "frequency": "6hrPt"},
    )
    ds.lat.attrs.update(units="degrees_north", standard_name="latitude", bounds="lat_bnds")
    ds.lon.attrs.update(units="degrees_east", standard_name="longitude", bounds="lon_bnds")
    if upper:
        ds.plev.attrs.update(units="Pa", standard_name="air_pressure", positive="down")
    encoding = {
        var: {"_FillValue": np.float32(1e20), "dtype": "float32"},
        "time": {"units": "days since 1850-01-01", "calendar": calendar, "dtype": "float64"},
        "time_bnds": {"units": "days since 1850-01-01", "calendar": calendar},
    }
    first, last = (d.strftime("%Y%m%d%H%M") for d in (dates[0], dates[-1]))
    path = Path(folder) / f"{var}_{table}_{MODEL}_historical_r1i1p1f1_gn_{first}-{last}.nc"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(path, encoding=encoding)
    return str(path)


def write_alone(folder, var, dates, hpa, h, w, table):
    """``{var}{hpa}``: one level of ``var`` alone, ``plev`` a scalar coordinate (as CMOR writes ``p500``)."""
    path = Path(write(Path(folder) / "levels", var, dates, h, w, table))
    with xr.open_dataset(path) as ds:
        one = ds.sel(plev=hpa * 100.0).load().rename({var: f"{var}{hpa}"})
    one.attrs["variable_id"] = f"{var}{hpa}"
    out = Path(folder) / path.name.replace(f"{var}_", f"{var}{hpa}_", 1)
    one.to_netcdf(out)
    return str(out)


def write_set(folder, variables, start=(1979, 1, 1, 6), steps=40, files=2, calendar="proleptic_gregorian", **kw):
    """``files`` time-chunked files per variable, consecutive, covering ``steps`` 6-hourly dates."""
    dates = stamps(start, steps, calendar=calendar)
    chunks = np.array_split(np.arange(steps), files)
    return [write(folder, var, [dates[i] for i in chunk], **kw) for var in variables for chunk in chunks]
