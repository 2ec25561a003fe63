# SPDX-License-Identifier: Apache-2.0
"""Raw gridded files (ERA5, WeatherBench, CMIP6) as one lazy catalogue.

Every file is opened lazily with xarray (NetCDF or Zarr) and its coordinates
are given common names: ``lat``, ``lon``, ``time``, ``level`` (hPa). A
variable is asked for by its ClimaX name, ``{name}_{level}`` for upper-air
fields (``geopotential_500``) and ``{name}`` otherwise; the files may call it
by its long name, its ERA5 short name or its CMIP6 name (see
:data:`ALIASES`), or by a name given in ``name_map``.
"""

from __future__ import annotations

import glob
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from ..errors import DataError

logger = logging.getLogger(__name__)

#: ClimaX variable name -> names found in ERA5 / WeatherBench / CMIP6 files.
ALIASES: dict[str, tuple[str, ...]] = {
    "geopotential": ("geopotential", "z", "zg"),
    "temperature": ("temperature", "t", "ta"),
    "u_component_of_wind": ("u_component_of_wind", "u", "ua"),
    "v_component_of_wind": ("v_component_of_wind", "v", "va"),
    "specific_humidity": ("specific_humidity", "q", "hus"),
    "relative_humidity": ("relative_humidity", "r", "hur"),
    "2m_temperature": ("2m_temperature", "t2m", "tas"),
    "10m_u_component_of_wind": ("10m_u_component_of_wind", "u10", "uas"),
    "10m_v_component_of_wind": ("10m_v_component_of_wind", "v10", "vas"),
    "mean_sea_level_pressure": ("mean_sea_level_pressure", "msl", "psl"),
    "surface_pressure": ("surface_pressure", "sp", "ps"),
    "total_precipitation": ("total_precipitation", "tp", "pr"),
    "toa_incident_solar_radiation": ("toa_incident_solar_radiation", "tisr"),
    "land_sea_mask": ("land_sea_mask", "lsm", "sftlf"),
    "orography": ("orography", "z_surface", "orog"),
}

_COORDS = {
    "lat": ("lat", "latitude"),
    "lon": ("lon", "longitude"),
    "time": ("time", "valid_time"),
    "level": ("level", "pressure_level", "plev", "isobaricInhPa"),
}


def split_name(name: str) -> tuple[str, int | None]:
    """``"geopotential_500" -> ("geopotential", 500)``; ``"2m_temperature" -> (.., None)``."""
    match = re.fullmatch(r"(.+)_(\d+)", name)
    if match and not name.startswith(("2m_", "10m_")):
        return match.group(1), int(match.group(2))
    return name, None


def open_file(path: str | Path) -> xr.Dataset:
    """Open one NetCDF file or Zarr store lazily, with common coordinate names.

    Raises
    ------
    DataError
        Naming the file when it cannot be opened (truncated, not NetCDF/Zarr).
    """
    path = Path(path)
    is_zarr = path.is_dir() or path.suffix == ".zarr"
    try:
        ds = xr.open_dataset(path, engine="zarr" if is_zarr else None, chunks=None)
    except (OSError, ValueError, RuntimeError) as err:
        raise DataError(f"{path}: cannot be opened as {'Zarr' if is_zarr else 'NetCDF'} ({err})") from err
    renames = {}
    for common, names in _COORDS.items():
        for name in names:
            if name in ds.variables and name != common:
                renames[name] = common
                break
    ds = ds.rename(renames)
    if "level" in ds.coords and float(ds.level.max()) > 2000:  # CMIP6 plev in Pa
        ds = ds.assign_coords(level=ds.level / 100.0)
    if "lat" not in ds.coords or "lon" not in ds.coords:
        raise DataError(f"{path}: no latitude/longitude coordinates (have {list(ds.coords)})")
    return ds


def on_grid_of(ds: xr.Dataset, ref: xr.Dataset, path: str, ref_path: str) -> xr.Dataset:
    """``ds`` in ``ref``'s grid order: latitudes flipped and longitudes reordered
    (``[-180, 180)`` vs ``[0, 360)``) when they are the same points in another order.

    Raises
    ------
    DataError
        When the points differ, with both files' sizes and ranges.
    """
    lat, want = ds.lat.values, ref.lat.values
    if lat.shape == want.shape and np.allclose(lat[::-1], want) and not np.allclose(lat, want):
        ds = ds.isel(lat=slice(None, None, -1))
    lon, want_lon = ds.lon.values % 360, ref.lon.values % 360
    order = np.argsort(lon)
    if lon.shape == want_lon.shape and np.allclose(lon[order], np.sort(want_lon)) \
            and not np.allclose(ds.lon.values, ref.lon.values):
        ds = ds.isel(lon=order[np.argsort(np.argsort(want_lon))]).assign_coords(lon=ref.lon.values)
    for axis in ("lat", "lon"):
        a, b = ds[axis].values, ref[axis].values
        if a.shape != b.shape or not np.allclose(a, b):
            raise DataError(f"grids differ between files: {axis} of {path} ({a.size} points, {a[0]:.4g}..{a[-1]:.4g})"
                            f" is not that of {ref_path} ({b.size} points, {b[0]:.4g}..{b[-1]:.4g})")
    return ds


@dataclass
class Catalogue:
    """Lazily opened files, checked to share one grid.

    Parameters
    ----------
    paths : list of str
        Files, folders of Zarr, or glob patterns.
    name_map : dict, optional
        ClimaX base name -> variable name in the files, beyond :data:`ALIASES`.
    """

    paths: list[str]
    name_map: dict[str, str] | None = None

    def __post_init__(self):
        files = []
        for pattern in self.paths:
            matches = sorted(glob.glob(str(pattern))) or ([pattern] if Path(pattern).exists() else [])
            if not matches:
                raise FileNotFoundError(f"no input files match {pattern}")
            files += matches
        self.files = files
        first = open_file(files[0])
        self.datasets = [first] + [on_grid_of(open_file(f), first, f, files[0]) for f in files[1:]]
        self.lat = first.lat.values.astype(float)
        self.lon = first.lon.values.astype(float)

    def _names(self, base: str) -> tuple[str, ...]:
        extra = (self.name_map or {}).get(base)
        return ((extra,) if extra else ()) + ALIASES.get(base, (base,))

    def locate(self, name: str) -> list[tuple[xr.DataArray, str]]:
        """The field ``name`` in every file holding it, as ``(DataArray, file)``.

        Raises
        ------
        KeyError
            Naming the variable (and level) and the files searched.
        """
        base, level = split_name(name)
        found = []
        for path, ds in zip(self.files, self.datasets):
            var = next((n for n in self._names(base) if n in ds.data_vars), None)
            if var is None:
                continue
            da = ds[var]
            if level is not None:
                if "level" not in da.dims:
                    raise KeyError(f"{path}: variable {var!r} has no pressure levels, {name} asked for")
                if not np.isclose(da.level.values, level).any():
                    raise KeyError(
                        f"{path}: variable {var!r} has no level {level} hPa for {name} "
                        f"(levels {da.level.values.tolist()})"
                    )
                da = da.sel(level=level, method="nearest")
            if "time" in da.dims and not da.indexes["time"].is_unique:
                stamps = da.indexes["time"]
                raise DataError(f"{path}: variable {var!r} has duplicate time stamps "
                                f"{[str(t) for t in stamps[stamps.duplicated()][:3]]}; keep one of each")
            found.append((da, path))
        if not found:
            raise KeyError(
                f"variable {name} (looked for {list(self._names(base))}) is in none of {self.files}"
            )
        return found

    def times(self, name: str) -> np.ndarray:
        """All time stamps of variable ``name``, sorted (empty for constants)."""
        stamps = [da.time.values for da, _ in self.locate(name) if "time" in da.dims]
        return np.unique(np.concatenate(stamps)) if stamps else np.array([], "datetime64[ns]")

    def read(self, name: str, times: np.ndarray | None) -> np.ndarray:
        """Values ``[T, H, W]`` at ``times`` (or ``[1, H, W]`` for a constant field).

        Raises
        ------
        KeyError
            If a time stamp is missing, naming the variable and the time.
        """
        pieces = self.locate(name)
        if times is None or all("time" not in da.dims for da, _ in pieces):
            da = pieces[0][0]
            da = da.isel(time=0) if "time" in da.dims else da
            return np.asarray(da.transpose("lat", "lon").values)[None]
        out = np.empty((len(times), self.lat.size, self.lon.size), dtype=np.float32)
        source = np.full(len(times), -1)  # the piece each time came from
        for j, (da, path) in enumerate(pieces):
            hit = np.isin(times, da.time.values)
            if not hit.any():
                continue
            values = _values(da.sel(time=times[hit]).transpose("time", "lat", "lon"), path, name)
            again = source[hit] >= 0
            if again.any():
                _check_duplicates(name, times[hit][again], out[hit][again], values[again],
                                  [pieces[k][1] for k in source[hit][again]], path)
            out[hit], source[hit] = values, j
        filled = source >= 0
        if not filled.all():
            raise KeyError(f"variable {name} has no data at {times[~filled][:3]} in {self.files}")
        return out


def _values(da: xr.DataArray, path: str, name: str) -> np.ndarray:
    """``da.values``, or a :class:`DataError` naming file and variable when the file cannot be read."""
    try:
        return np.asarray(da.values)
    except (OSError, RuntimeError, ValueError) as err:
        raise DataError(f"{path}: cannot read variable {name} ({err})") from err


def _check_duplicates(name: str, stamps: np.ndarray, before: np.ndarray, now: np.ndarray, earlier: list[str],
                      path: str) -> None:
    """Time stamps found in two files: the same values are merged (with a note), different ones are an error."""
    same = np.array([np.array_equal(a, b, equal_nan=True) for a, b in zip(before, now)])
    if not same.all():
        k = int(np.argmin(same))
        raise DataError(f"variable {name}: {earlier[k]} and {path} hold different values at the same time "
                        f"{stamps[k]} ({int((~same).sum())} conflicting stamps); keep one of the files")
    logger.info("variable %s: %d time stamps of %s repeat those of %s with the same values; merged",
                name, len(stamps), path, earlier[0])
