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
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

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
    """Open one NetCDF file or Zarr store lazily, with common coordinate names."""
    path = Path(path)
    is_zarr = path.is_dir() or path.suffix == ".zarr"
    ds = xr.open_dataset(path, engine="zarr" if is_zarr else None, chunks=None)
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
        raise ValueError(f"{path}: no latitude/longitude coordinates (have {list(ds.coords)})")
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
        self.datasets = [open_file(f) for f in files]
        first = self.datasets[0]
        for path, ds in zip(files[1:], self.datasets[1:]):
            for axis in ("lat", "lon"):
                if ds[axis].shape != first[axis].shape or not np.allclose(ds[axis], first[axis]):
                    raise ValueError(
                        f"grids differ between files: {axis} of {path} "
                        f"({ds[axis].size} points) is not that of {files[0]} ({first[axis].size} points)"
                    )
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
        filled = np.zeros(len(times), dtype=bool)
        for da, _ in pieces:
            hit = np.isin(times, da.time.values)
            if hit.any():
                part = da.sel(time=times[hit]).transpose("time", "lat", "lon")
                out[hit] = part.values
                filled |= hit
        if not filled.all():
            raise KeyError(f"variable {name} has no data at {times[~filled][:3]} in {self.files}")
        return out
