# SPDX-License-Identifier: Apache-2.0
"""One source of gridded weather data, in the layout it was delivered in, to one convention.

Sources: NetCDF files (the Copernicus CDS's, old and new, WeatherBench,
CMIP6), GRIB files (the CDS default, through cfgrib and the ecCodes wheels of
the ``grib`` extra), and Zarr stores, local or remote through fsspec URLs
(``gs://``, ``s3://``, ``https://``, ``file://``, ``memory://``: Google's
ARCO-ERA5, the WeatherBench 2 stores). Every source is opened lazily and
leaves here with the coordinates ``time`` (the valid time), ``lat``, ``lon``
and, for upper-air fields, ``level`` in hPa:

* CDS NetCDF since 2024: ``valid_time`` -> ``time``, ``pressure_level`` ->
  ``level``, ``expver`` (ERA5 / ERA5T, a coordinate along time) and a scalar
  ``number`` dropped;
* older CDS NetCDF: ``expver`` as a dimension (ERA5 and ERA5T in one file, each
  NaN where the other holds data) merged into one field, ERA5 first; packed
  int16 with ``scale_factor`` / ``add_offset`` is unpacked by xarray;
* GRIB (analysis): cfgrib's reference ``time``, ``step`` and ``valid_time``
  become one ``time``; ERA5 accumulations (several base times x steps with
  distinct valid times) are laid out along their valid times; a forecast with
  several steps per valid time needs ``grib_step``; ``isobaricInhPa`` ->
  ``level``; ``surface`` / ``heightAboveGround`` / ``number`` scalars dropped.
  A file holding several hypercubes (fields on different level types) gives
  one dataset per hypercube. cfgrib's index files go to a cache folder, never
  next to the (possibly read-only) input.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import xarray as xr

from ..errors import DataError

GRIB_SUFFIXES = (".grib", ".grib1", ".grib2", ".grb", ".grb1", ".grb2")

#: fsspec protocols opened anonymously unless storage options say otherwise
#: (the public WeatherBench 2 and ARCO-ERA5 buckets need no credentials).
ANONYMOUS = {"gs": {"token": "anon"}, "gcs": {"token": "anon"}, "s3": {"anon": True}}

_COORDS = {
    "lat": ("lat", "latitude"),
    "lon": ("lon", "longitude"),
    "level": ("level", "pressure_level", "plev", "isobaricInhPa"),
}


def is_url(source: str | Path) -> bool:
    return "://" in str(source)


def storage_options(source: str, given: dict | None = None) -> dict:
    """fsspec options for ``source``: anonymous access to public buckets, then ``given`` on top."""
    protocol = str(source).split("://", 1)[0] if is_url(source) else ""
    return {**ANONYMOUS.get(protocol, {}), **(given or {})}


def grib_cache() -> Path:
    """Where cfgrib's index files go: ``$CLIMAX_CACHE/cfgrib`` or ``~/.cache/physicsnemo_climax/cfgrib``."""
    root = os.environ.get("CLIMAX_CACHE") or Path.home() / ".cache" / "physicsnemo_climax"
    return Path(root) / "cfgrib"


def open_parts(source: str | Path, options: dict | None = None, grib_step: float | None = None) -> list[xr.Dataset]:
    """The source as lazily opened datasets in the common convention (several for a GRIB
    file with several hypercubes, one otherwise).

    Raises
    ------
    DataError
        Naming the source when it cannot be opened or reached (one line, the cause
        at its end), or when its layout is one this module cannot bring to the convention.
    """
    text = str(source)
    kind = (
        "GRIB"
        if text.lower().endswith(GRIB_SUFFIXES)
        else ("Zarr" if is_url(text) or Path(text).is_dir() or text.rstrip("/").endswith(".zarr") else "NetCDF")
    )
    if not is_url(text) and not Path(text).exists():
        raise DataError(f"{text}: no such file or folder")
    try:
        if kind == "GRIB":
            raw = open_grib(text)
        elif kind == "Zarr":
            raw = [open_zarr(text, options)]
        else:
            raw = [xr.open_dataset(text, chunks=None)]
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001 -- any failure to open or reach the source: one line naming it
        cause = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{text}: cannot be opened as {kind} ({type(err).__name__}: {cause[:300]})") from err
    parts = [normalise(ds, text, grib_step) for ds in raw]
    if len(parts) > 1:
        check_same_grid(parts, text)
    return parts


def open_zarr(source: str, options: dict | None = None) -> xr.Dataset:
    """A Zarr store, local or at an fsspec URL (public buckets anonymously), lazily and as it is."""
    return xr.open_zarr(
        source,
        storage_options=storage_options(source, options) if is_url(source) else None,
        chunks=None,
        consolidated=None,
    )


def open_file(source: str | Path, options: dict | None = None) -> xr.Dataset:
    """One source as one dataset (a GRIB file's hypercubes merged)."""
    parts = open_parts(source, options)
    return parts[0] if len(parts) == 1 else xr.merge(parts, compat="override", join="outer")


def open_grib(path: str) -> list[xr.Dataset]:
    """Every hypercube of a GRIB file (cfgrib), its index in the cache folder."""
    try:
        import cfgrib
    except ImportError as err:
        raise DataError(
            f"{path}: reading GRIB needs cfgrib and ecCodes: pip install 'physicsnemo-climax[grib]' ({err})"
        ) from err
    cache = grib_cache()
    cache.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:16]
    kwargs = {"indexpath": str(cache / f"{key}.{{short_hash}}.idx")}
    datasets = cfgrib.open_datasets(path, backend_kwargs=kwargs, chunks=None)
    if not datasets:
        raise DataError(f"{path}: no GRIB messages cfgrib can read")
    return datasets


def check_same_grid(parts: list[xr.Dataset], source: str) -> None:
    """Every hypercube of one file on one grid."""
    ref = parts[0]
    for ds in parts[1:]:
        for axis in ("lat", "lon"):
            a, b = ds[axis].values, ref[axis].values
            if a.shape != b.shape or not np.allclose(a, b):
                raise DataError(
                    f"{source}: its GRIB messages are on different grids: {axis} "
                    f"{b.size} points {b.min():.4g}..{b.max():.4g} for {list(ref.data_vars)}, "
                    f"{a.size} points {a.min():.4g}..{a.max():.4g} for {list(ds.data_vars)}"
                )


# ---------------------------------------------------------------- the convention
def normalise(ds: xr.Dataset, source: str, grib_step: float | None = None) -> xr.Dataset:
    """``ds`` with ``time`` (valid), ``lat``, ``lon``, ``level`` (hPa), and no ensemble or experiment axis."""
    ds = valid_time(ds, source, grib_step)
    renames = {}
    for common, names in _COORDS.items():
        present = next((n for n in names if n in ds.variables), None)
        if present is not None and present != common:
            renames[present] = common
    ds = ds.rename(renames)
    ds = merge_expver(ds)
    ds = single_member(ds, source)
    scalars = [c for c in ds.coords if ds[c].ndim == 0 and c not in ("time",)]
    ds = ds.drop_vars(scalars)
    if "level" in ds.coords and ds.level.size and float(ds.level.max()) > 2000:  # CMIP6 plev in Pa
        ds = ds.assign_coords(level=ds.level / 100.0)
    if "lat" not in ds.coords or "lon" not in ds.coords:
        raise DataError(f"{source}: no latitude/longitude coordinates (have {list(ds.coords)})")
    return ds


def valid_time(ds: xr.Dataset, source: str, grib_step: float | None) -> xr.Dataset:
    """One ``time`` axis of valid times from cfgrib's ``time`` + ``step`` or the CDS's ``valid_time``."""
    if "valid_time" not in ds.variables:
        return ds
    if "step" not in ds.variables:  # CDS NetCDF since 2024
        return ds.rename(valid_time="time") if "time" not in ds.variables else ds.drop_vars("valid_time")
    if "step" in ds.dims and grib_step is not None:
        hours = ds.step.values / np.timedelta64(1, "h")
        if not np.isclose(hours, grib_step).any():
            raise DataError(f"{source}: no forecast step of {grib_step} h (steps {hours.tolist()} h)")
        ds = ds.isel(step=int(np.argmin(np.abs(hours - grib_step))))
    if "step" in ds.dims:
        return accumulations(ds, source)
    dims = ds.valid_time.dims
    ds = ds.drop_vars("step", errors="ignore")
    if dims == ("time",) or (not dims and "time" in ds.dims):
        return ds.assign_coords(time=("time", np.atleast_1d(ds.valid_time.values))).drop_vars("valid_time")
    stamp = ds.valid_time.values
    ds = ds.drop_vars(["valid_time", "time"], errors="ignore")
    return ds.expand_dims(time=[stamp])


def accumulations(ds: xr.Dataset, source: str) -> xr.Dataset:
    """Base times x steps laid out along their valid times, when every valid time occurs once
    (ERA5 accumulations from the CDS); otherwise the steps of a forecast, which must be chosen."""
    steps = (ds.step.values / np.timedelta64(1, "h")).tolist()
    if "time" in ds.dims:
        stacked = ds.stack(sample=("time", "step"))
        stamps = stacked.valid_time.values
        if len(np.unique(stamps)) == stamps.size:
            stacked = stacked.drop_vars(["sample", "time", "step"]).rename(sample="time")
            return stacked.assign_coords(time=("time", stamps)).drop_vars("valid_time").sortby("time")
    raise DataError(
        f"{source}: a forecast with steps {steps} h whose valid times repeat across its "
        f"base times; choose one lead with grib_step (climax data prepare --grib-step HOURS, "
        f"e.g. --grib-step {steps[0]:g})"
    )


def merge_expver(ds: xr.Dataset) -> xr.Dataset:
    """The older CDS layout's ``expver`` dimension (ERA5 = 1 first, then ERA5T = 5) as one field;
    an ``expver`` coordinate along time (the new layout) only labels, and goes."""
    if "expver" not in ds.variables:
        return ds
    if "expver" not in ds.dims:
        return ds.drop_vars("expver")
    order = np.argsort(np.asarray(ds.expver.values).astype(float))
    merged = ds.isel(expver=int(order[0]), drop=True)
    for i in order[1:]:
        merged = merged.combine_first(ds.isel(expver=int(i), drop=True))
    return merged


def single_member(ds: xr.Dataset, source: str) -> xr.Dataset:
    """Drop a one-member ``number`` axis; an ensemble is refused."""
    if "number" not in ds.dims:
        return ds
    if ds.sizes["number"] > 1:
        raise DataError(
            f"{source}: an ensemble with {ds.sizes['number']} members (number = "
            f"{ds.number.values.tolist()[:5]}); prepare one member at a time"
        )
    return ds.isel(number=0, drop=True)
