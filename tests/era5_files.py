# SPDX-License-Identifier: Apache-2.0
"""Small ERA5 / WeatherBench / CMIP6-like NetCDF files for the data tests."""

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

LEVELS = [250, 500, 850]


def grid(h=8, w=16, descending=False, lon180=False):
    lat = -90 + (np.arange(h) + 0.5) * 180 / h
    lon = np.arange(w) * 360 / w
    if descending:
        lat = lat[::-1]
    if lon180:
        lon = np.sort(((lon + 180) % 360) - 180)
    return lat, lon


def smooth(times, lat, lon, phase, scale=1.0, offset=0.0):
    """A smooth, time-varying analytic field ``[T, H, W]`` (same place, same value)."""
    t = (times - np.datetime64("2000-01-01")) / np.timedelta64(1, "D")
    la, lo = np.deg2rad(lat)[None, :, None], np.deg2rad(lon)[None, None, :]
    wave = np.cos(la) * np.cos(lo - 0.3 * t[:, None, None] + phase) + 0.5 * np.sin(la)
    return (offset + scale * wave).astype(np.float32)


def write_era5(
    folder, years=(2000, 2001), hours=6, descending=False, lon180=False, per_year=True, h=8, w=16, nan_at=None
):
    """ERA5-style files: ``z``/``t`` on ``level``, ``t2m``, constant ``lsm``.

    One file per year (``per_year``) holding every variable, plus a constants
    file; short ERA5 names, ``latitude``/``longitude`` coordinates.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lat, lon = grid(h, w, descending, lon180)
    paths = []
    for year in years:
        times = pd.date_range(f"{year}-01-01", f"{year}-12-31 23:00", freq=f"{hours}h").values
        z = np.stack([smooth(times, lat, lon, p, 500.0, 5e4) for p in (0, 1, 2)], 1)
        t = np.stack([smooth(times, lat, lon, p, 10.0, 250.0) for p in (3, 4, 5)], 1)
        t2m = smooth(times, lat, lon, 6, 15.0, 285.0)
        if nan_at is not None and nan_at[0] == year:
            t2m[nan_at[1], 0, 0] = np.nan
        ds = xr.Dataset(
            {
                "z": (("time", "level", "latitude", "longitude"), z.astype(np.float32)),
                "t": (("time", "level", "latitude", "longitude"), t.astype(np.float32)),
                "t2m": (("time", "latitude", "longitude"), t2m),
            },
            coords={"time": times, "level": LEVELS, "latitude": lat, "longitude": lon},
        )
        for name, units in (("z", "m**2 s**-2"), ("t", "K"), ("t2m", "K")):
            ds[name].attrs["units"] = units
        path = folder / f"era5_{year}.nc"
        ds.to_netcdf(path)
        paths.append(str(path))
    lsm = (np.cos(np.deg2rad(lon))[None, :] * np.ones((h, 1)) > 0).astype(np.float32)
    xr.Dataset({"lsm": (("latitude", "longitude"), lsm)}, coords={"latitude": lat, "longitude": lon}).to_netcdf(
        folder / "constants.nc"
    )
    paths.append(str(folder / "constants.nc"))
    return paths


def write_cmip6(folder, year=2000, h=8, w=16):
    """CMIP6-style ``ta`` on ``plev`` (Pa) with ``lat``/``lon``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lat, lon = grid(h, w)
    times = pd.date_range(f"{year}-01-01", f"{year}-01-31 18:00", freq="6h").values
    ta = np.stack([smooth(times, lat, lon, p, 10.0, 250.0) for p in (3, 4, 5)], 1)
    path = folder / "ta_6hrPlevPt_model_historical.nc"
    xr.Dataset(
        {"ta": (("time", "plev", "lat", "lon"), ta)},
        coords={"time": times, "plev": [25000.0, 50000.0, 85000.0], "lat": lat, "lon": lon},
    ).to_netcdf(path)
    return str(path)
