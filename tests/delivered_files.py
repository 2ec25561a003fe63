# SPDX-License-Identifier: Apache-2.0
"""ERA5 as it is delivered, in miniature: CDS NetCDF (2024+ and older), CDS GRIB,
WeatherBench 2 and ARCO-ERA5 Zarr; every layout holds the same analytic fields."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from era5_files import smooth

#: A regional CDS box, north to south as the CDS delivers it: 8 x 16 points.
LAT = np.arange(57.5, 39.9, -2.5)
LON = np.arange(0.0, 40.0, 2.5)
TIMES = pd.date_range("2000-01-01", periods=8, freq="6h").values
LEVELS = np.array([850.0, 500.0])  # the CDS's order, high pressure first


def fields(times=TIMES, lat=LAT, lon=LON) -> dict[str, np.ndarray]:
    """``t2m [T, H, W]`` and ``t [T, L, H, W]`` (K) on the grid."""
    t = np.stack([smooth(times, lat, lon, p, 10.0, 250.0) for p in (1, 2)], 1)
    return {"t2m": smooth(times, lat, lon, 0, 15.0, 285.0), "t": t}


def cds_netcdf(path: Path) -> Path:
    """The CDS's NetCDF since 2024: ``valid_time``, ``pressure_level``, scalar ``number``,
    an ``expver`` label along time."""
    f = fields()
    ds = xr.Dataset(
        {
            "t2m": (("valid_time", "latitude", "longitude"), f["t2m"]),
            "t": (("valid_time", "pressure_level", "latitude", "longitude"), f["t"]),
        },
        coords={
            "valid_time": TIMES,
            "pressure_level": LEVELS,
            "latitude": LAT,
            "longitude": LON,
            "number": 0,
            "expver": ("valid_time", np.array(["0001"] * 6 + ["0005"] * 2)),
        },
    )
    ds.t2m.attrs["units"] = ds.t.attrs["units"] = "K"
    ds.to_netcdf(path)
    return path


def cds_netcdf_old(path: Path) -> Path:
    """The older CDS NetCDF: ``time``, ``level``, ERA5 (expver 1) and ERA5T (expver 5) as a
    dimension, each NaN where the other has data, packed in int16."""
    f = fields()
    era5t = np.arange(TIMES.size) >= 6

    def split(a):
        shape = (a.shape[0], 2) + a.shape[1:]
        out = np.full(shape, np.nan, np.float32)
        out[~era5t, 0], out[era5t, 1] = a[~era5t], a[era5t]
        return out

    ds = xr.Dataset(
        {
            "t2m": (("time", "expver", "latitude", "longitude"), split(f["t2m"])),
            "t": (("time", "expver", "level", "latitude", "longitude"), split(f["t"])),
        },
        coords={"time": TIMES, "expver": [1, 5], "level": LEVELS.astype(np.int32), "latitude": LAT, "longitude": LON},
    )
    encoding = {}
    for name in ("t2m", "t"):
        lo, hi = float(np.nanmin(ds[name])), float(np.nanmax(ds[name]))
        encoding[name] = {
            "dtype": "int16",
            "scale_factor": (hi - lo) / 65000,
            "add_offset": (hi + lo) / 2,
            "_FillValue": np.int16(-32767),
        }
        ds[name].attrs["units"] = "K"
    ds.to_netcdf(path, encoding=encoding)
    return path


def packing_step(values: np.ndarray) -> float:
    """The quantisation step of :func:`cds_netcdf_old` for ``values``."""
    return float(np.nanmax(values) - np.nanmin(values)) / 65000


def grib_message(
    out,
    short_name: str,
    level_type: str,
    level: int,
    when: np.datetime64,
    values: np.ndarray,
    lat=LAT,
    lon=LON,
    step_hours: int = 0,
) -> None:
    """One GRIB 2 message from ecCodes' samples, ``values [H, W]`` north to south."""
    import eccodes

    sample = "regular_ll_pl_grib2" if level_type == "isobaricInhPa" else "regular_ll_sfc_grib2"
    h = eccodes.codes_grib_new_from_samples(sample)
    stamp = pd.Timestamp(when)
    keys = [
        ("Ni", lon.size),
        ("Nj", lat.size),
        ("latitudeOfFirstGridPointInDegrees", float(lat[0])),
        ("latitudeOfLastGridPointInDegrees", float(lat[-1])),
        ("longitudeOfFirstGridPointInDegrees", float(lon[0])),
        ("longitudeOfLastGridPointInDegrees", float(lon[-1])),
        ("iDirectionIncrementInDegrees", float(abs(lon[1] - lon[0]))),
        ("jDirectionIncrementInDegrees", float(abs(lat[1] - lat[0]))),
        ("jScansPositively", 0),
        ("dataDate", int(stamp.strftime("%Y%m%d"))),
        ("dataTime", stamp.hour * 100),
        ("shortName", short_name),
        ("typeOfLevel", level_type),
        ("level", level),
        ("bitsPerValue", 24),
    ]
    for key, value in keys:
        eccodes.codes_set(h, key, value)
    if step_hours:
        eccodes.codes_set(h, "stepRange", str(step_hours))
    eccodes.codes_set_values(h, np.asarray(values, np.float64).ravel())
    eccodes.codes_write(h, out)
    eccodes.codes_release(h)


def cds_grib(path: Path) -> Path:
    """The CDS's default: GRIB with 2 m temperature (heightAboveGround) and temperature
    on pressure levels in one file, one message per field, level and time."""
    f = fields()
    with open(path, "wb") as out:
        for i, when in enumerate(TIMES):
            grib_message(out, "2t", "heightAboveGround", 2, when, f["t2m"][i])
            for k, level in enumerate(LEVELS):
                grib_message(out, "t", "isobaricInhPa", int(level), when, f["t"][i, k])
    return path


#: A small global grid in WeatherBench 2's equiangular convention (no poles) and ARCO's (with poles).
WB2_LAT = -90 + (np.arange(8) + 0.5) * 22.5
WB2_LON = np.arange(16) * 22.5
ARCO_LAT = np.linspace(90, -90, 9)
ARCO_LON = np.arange(16) * 22.5


def wb2_dataset(times=TIMES) -> xr.Dataset:
    """WeatherBench 2 layout: long names, ``(time, longitude, latitude)`` order, latitude
    ascending, integer ``level``, time-less ``geopotential_at_surface`` and ``land_sea_mask``."""
    f = fields(times, WB2_LAT, WB2_LON)
    lonlat = lambda a: np.swapaxes(a, -1, -2)  # noqa: E731
    static = smooth(times[:1], WB2_LAT, WB2_LON, 7, 2000.0, 3000.0)[0]
    ds = xr.Dataset(
        {
            "2m_temperature": (("time", "longitude", "latitude"), lonlat(f["t2m"])),
            "temperature": (("time", "level", "longitude", "latitude"), lonlat(f["t"])),
            "geopotential_at_surface": (("longitude", "latitude"), lonlat(static)),
            "land_sea_mask": (("longitude", "latitude"), lonlat((static > 3000).astype(np.float32))),
        },
        coords={"time": times, "level": LEVELS.astype(np.int64), "latitude": WB2_LAT, "longitude": WB2_LON},
    )
    ds["2m_temperature"].attrs["units"] = ds["temperature"].attrs["units"] = "K"
    ds["geopotential_at_surface"].attrs["units"] = "m**2 s**-2"
    return ds


def arco_dataset(times=TIMES) -> xr.Dataset:
    """ARCO-ERA5 layout: long names, ``(time, level, latitude, longitude)``, latitude 90 -> -90."""
    f = fields(times, ARCO_LAT, ARCO_LON)
    ds = xr.Dataset(
        {
            "2m_temperature": (("time", "latitude", "longitude"), f["t2m"]),
            "temperature": (("time", "level", "latitude", "longitude"), f["t"]),
        },
        coords={"time": times, "level": LEVELS.astype(np.int64), "latitude": ARCO_LAT, "longitude": ARCO_LON},
    )
    ds["2m_temperature"].attrs["units"] = ds["temperature"].attrs["units"] = "K"
    return ds


def write_zarr(ds: xr.Dataset, target: str, time_chunk: int = 3) -> str:
    """Zarr format 2 with consolidated metadata (as WB2 and ARCO publish), chunked along time."""
    chunks = {name: {"time": time_chunk} if "time" in ds[name].dims else {} for name in ds.data_vars}
    encoding = {name: {"chunks": tuple(c.get(d, ds.sizes[d]) for d in ds[name].dims)} for name, c in chunks.items()}
    ds.to_zarr(target, mode="w", zarr_format=2, consolidated=True, encoding=encoding)
    return target
