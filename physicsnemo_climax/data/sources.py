# SPDX-License-Identifier: Apache-2.0
"""Raw gridded sources (ERA5, WeatherBench, CMIP6) as one lazy catalogue.

Every source (a file, a Zarr store or a URL) is opened lazily by
:mod:`.formats`, in whatever layout it came, with the common coordinates
``time``, ``lat``, ``lon``, ``level`` (hPa). A variable is asked for by its
ClimaX name, ``{name}_{level}`` for upper-air fields (``geopotential_500``)
and ``{name}`` otherwise; the sources may call it by its long name (ERA5 /
WeatherBench 2 / ARCO), its ERA5 short name or its CMIP6 name (see
:data:`ALIASES`), or by a name given in ``name_map``. One level may also be a
variable of its own, named with its hPa as CMIP6 does (``zg500``).

Times of another calendar (CMIP6's ``noleap``, ``360_day``) are taken by
calendar date (:func:`.times.standard_dataset`); the catalogue knows the one
calendar of its sources (:attr:`Catalogue.calendar`) and the dates it dropped.

Values are read in time blocks aligned with the source's own chunks (a chunk
is fetched once even when two requests share it), remote blocks with retries
and back-off, with a progress bar for remote sources.
"""

from __future__ import annotations

import glob
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from ..errors import DataError, UnknownName
from .formats import is_url, open_file, open_parts  # noqa: F401  (open_file: re-exported)
from .times import STANDARD, STANDARD_CALENDARS, standard_dataset

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
    "orography": ("orography", "z_surface", "orog", "geopotential_at_surface"),
}

#: Factors for names whose units differ from the ClimaX field's: WeatherBench 2 and
#: ARCO-ERA5 give surface geopotential (m^2 s^-2); ClimaX's orography is in metres.
ALIAS_SCALES = {"geopotential_at_surface": (1 / 9.80665, "m")}

#: Attempts of a remote read before it fails, and the first wait (doubled each time).
RETRIES, BACKOFF_S = 4, 0.5


def split_name(name: str) -> tuple[str, int | None]:
    """``"geopotential_500" -> ("geopotential", 500)``; ``"2m_temperature" -> (.., None)``."""
    match = re.fullmatch(r"(.+)_(\d+)", name)
    if match and not name.startswith(("2m_", "10m_")):
        return match.group(1), int(match.group(2))
    return name, None


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
    if (
        lon.shape == want_lon.shape
        and np.allclose(lon[order], np.sort(want_lon))
        and not np.allclose(ds.lon.values, ref.lon.values)
    ):
        ds = ds.isel(lon=order[np.argsort(np.argsort(want_lon))]).assign_coords(lon=ref.lon.values)
    for axis in ("lat", "lon"):
        a, b = ds[axis].values, ref[axis].values
        if a.shape != b.shape or not np.allclose(a, b):
            raise DataError(
                f"grids differ between files: {axis} of {path} ({a.size} points, {a[0]:.4g}..{a[-1]:.4g})"
                f" is not that of {ref_path} ({b.size} points, {b[0]:.4g}..{b[-1]:.4g})"
            )
    return ds


def expand(paths: list[str]) -> list[str]:
    """Glob patterns to sorted files; URLs as given.

    Raises
    ------
    FileNotFoundError
        Naming a pattern that matches nothing.
    """
    files = []
    for pattern in paths:
        pattern = str(pattern)
        matches = (
            [pattern]
            if is_url(pattern)
            else sorted(glob.glob(pattern)) or ([pattern] if Path(pattern).exists() else [])
        )
        if not matches:
            raise FileNotFoundError(f"no input files match {pattern}")
        files += matches
    return files


@dataclass
class Catalogue:
    """Lazily opened sources, checked to share one grid.

    Parameters
    ----------
    paths : list of str
        Files, Zarr folders, glob patterns or fsspec URLs.
    name_map : dict, optional
        ClimaX base name -> variable name in the sources, beyond :data:`ALIASES`.
    storage_options : dict, optional
        fsspec options for URLs (public buckets are read anonymously by default).
    grib_step : float, optional
        Hours: the forecast step to take from GRIB files with several steps.
    calendar_dates : {"refuse", "drop"}
        Dates the standard calendar lacks (``360_day``'s 30 February): an error, or left out.

    Attributes
    ----------
    calendar : str
        The sources' calendar (cftime's name; ``standard`` for numpy times).
    dropped : list of str
        The distinct dates left out, sorted (``calendar_dates="drop"``).
    """

    paths: list[str]
    name_map: dict[str, str] | None = None
    storage_options: dict | None = None
    grib_step: float | None = None
    calendar_dates: str = "refuse"
    _blocks: dict = field(default_factory=dict, repr=False)
    _located: dict = field(default_factory=dict, repr=False)  # name -> what locate found (the sources do not change)

    def __post_init__(self):
        self.files = expand(self.paths)
        opened = [(f, ds) for f in self.files for ds in open_parts(f, self.storage_options, self.grib_step)]
        opened = self._standard_times(opened)
        first_path, first = opened[0]
        self.parts = [(first_path, first)] + [(f, on_grid_of(ds, first, f, first_path)) for f, ds in opened[1:]]
        self.lat = first.lat.values.astype(float)
        self.lon = first.lon.values.astype(float)

    def _standard_times(self, opened: list[tuple[str, xr.Dataset]]) -> list[tuple[str, xr.Dataset]]:
        """Every source's times as numpy dates (:func:`.times.standard_dataset`), one calendar for all.

        Raises
        ------
        DataError
            When two sources use different calendars (naming both), or a date is refused.
        """
        out, calendars, dropped = [], {}, set()
        for path, ds in opened:
            ds, calendar, lacking = standard_dataset(ds, path, self.calendar_dates)
            if "time" in ds.dims:  # constants (a land-sea mask) have no calendar to agree on
                key = STANDARD if calendar in STANDARD_CALENDARS else calendar  # the same dates, either name
                calendars.setdefault(key, (calendar, path))
            dropped.update(lacking)
            out.append((path, ds))
        if len(calendars) > 1:
            (one, a), (other, b) = list(calendars.values())[:2]
            raise DataError(f"{a} uses the {one} calendar but {b} the {other} calendar; prepare them apart")
        self.calendar = next(iter(calendars.values()), (STANDARD, None))[0]  # as the first source names it
        self.dropped = sorted(dropped)
        return out

    def _names(self, base: str) -> tuple[str, ...]:
        extra = (self.name_map or {}).get(base)
        return ((extra,) if extra else ()) + ALIASES.get(base, (base,))

    def _find(self, base: str) -> list[tuple[str, xr.Dataset, str]]:
        """``(source, dataset, variable name there)`` of every source holding ``base``."""
        found = []
        for path, ds in self.parts:
            var = next((n for n in self._names(base) if n in ds.data_vars), None)
            if var is not None:
                found.append((path, ds, var))
        if not found:
            raise UnknownName(f"variable {base} (looked for {list(self._names(base))}) is in none of {self.files}")
        return found

    def _level_fields(self, base: str, level: int | None) -> list[tuple[str, xr.Dataset, str]]:
        """``(source, dataset, variable name)`` of every source holding one pressure level of
        ``base`` as a variable of its own, named as CMIP6 names them (``zg500``: ``zg`` at 500 hPa)."""
        if level is None:
            return []
        names = [f"{n}{level}" for n in self._names(base)]
        found = []
        for path, ds in self.parts:
            var = next((n for n in names if n in ds.data_vars and "level" not in ds[n].dims), None)
            if var is not None:
                found.append((path, ds, var))
        return found

    def is_level_field(self, name: str) -> bool:
        """Whether ``name`` (``geopotential_500``) is read from a variable holding that level alone (``zg500``)."""
        return bool(self._level_fields(*split_name(name)))

    def locate(self, name: str) -> list[tuple[xr.DataArray, str]]:
        """The field ``name`` in every source holding it, as ``(DataArray, source)``.

        Raises
        ------
        KeyError
            Naming the variable (and level) and the sources searched.
        """
        if name not in self._located:  # selecting a level costs about 1 ms: found once, each read reuses it
            self._located[name] = self._locate(name)
        return list(self._located[name])

    def _locate(self, name: str) -> list[tuple[xr.DataArray, str]]:
        base, level = split_name(name)
        holders = self._level_fields(base, level)
        if holders:  # the level is a variable of its own (CMIP6's zg500): nothing to select
            level = None
        else:
            try:
                holders = self._find(base)
            except KeyError:
                raise UnknownName(
                    f"variable {name} (looked for {list(self._names(base))}) is in none of {self.files}"
                ) from None
        found = []
        for path, ds, var in holders:
            da = ds[var]
            if level is not None:
                if "level" not in da.dims:
                    raise UnknownName(f"{path}: variable {var!r} has no pressure levels, {name} asked for")
                if not np.isclose(da.level.values, level).any():
                    raise UnknownName(
                        f"{path}: variable {var!r} has no level {level} hPa for {name} "
                        f"(levels {da.level.values.tolist()})"
                    )
                da = da.sel(level=level, method="nearest")
            if "time" in da.dims and not da.indexes["time"].is_unique:
                stamps = da.indexes["time"]
                raise DataError(
                    f"{path}: variable {var!r} has duplicate time stamps "
                    f"{[str(t) for t in stamps[stamps.duplicated()][:3]]}; keep one of each"
                )
            found.append((da, path))
        return found

    def units(self, name: str) -> str:
        """Units of ``name`` as read (after :data:`ALIAS_SCALES`)."""
        da = self.locate(name)[0][0]
        return ALIAS_SCALES[da.name][1] if da.name in ALIAS_SCALES else da.attrs.get("units", "")

    def times(self, name: str) -> np.ndarray:
        """All time stamps of variable ``name``, sorted (empty for constants).

        Raises
        ------
        DataError
            When the sources holding it step in time differently (naming two of them).
        """
        pieces = [(da.time.values, path) for da, path in self.locate(name) if "time" in da.dims]
        steps = [(np.median(np.diff(t)) / np.timedelta64(1, "h"), path) for t, path in pieces if t.size > 1]
        other = next(((h, p) for h, p in steps if h != steps[0][0]), None)
        if other is not None:
            raise DataError(
                f"variable {name}: {steps[0][1]} steps every {steps[0][0]:g} h but {other[1]} every "
                f"{other[0]:g} h; mixed time steps across files (download one time step for all)"
            )
        return np.unique(np.concatenate([t for t, _ in pieces])) if pieces else np.array([], "datetime64[ns]")

    def read(self, name: str, times: np.ndarray | None) -> np.ndarray:
        """Values ``[T, H, W]`` at ``times`` (or ``[1, H, W]`` for a constant field).

        Raises
        ------
        KeyError
            If a time stamp is missing, naming the variable and the time.
        """
        pieces = self.locate(name)
        if times is None or all("time" not in da.dims for da, _ in pieces):
            da, path = pieces[0]
            da = da.isel(time=0) if "time" in da.dims else da
            return self._scaled(da, np.ascontiguousarray(read_values(da, path, name, ("lat", "lon")))[None])
        return self._read_pieces(pieces, name, times)

    def read_levels(self, names: list[str], times: np.ndarray) -> np.ndarray:
        """Several levels of one upper-air variable at once, ``[T, N, H, W]``: a source chunk
        that holds every level is then fetched once for all of them, not once per level."""
        bases = {split_name(n)[0] for n in names}
        if len(bases) != 1 or any(split_name(n)[1] is None for n in names):
            raise ValueError(f"read_levels: {names} are not levels of one variable")
        for n in names:  # every level there, or the error naming the missing one
            self.locate(n)
        levels = np.array([split_name(n)[1] for n in names], float)
        pieces = [(ds[var], path) for path, ds, var in self._find(bases.pop())]
        return self._read_pieces(pieces, ",".join(names), times, levels)

    def _read_pieces(
        self, pieces: list[tuple[xr.DataArray, str]], name: str, times: np.ndarray, levels: np.ndarray | None = None
    ) -> np.ndarray:
        """Values ``[T, ...]`` (``[T, N, H, W]`` with ``levels``) at ``times`` from the pieces
        holding them, duplicates across sources checked, every time stamp required."""
        out, source = None, np.full(len(times), -1)  # the piece each time came from
        for j, (da, path) in enumerate(pieces):
            hit = np.isin(times, da.time.values)
            if not hit.any():
                continue
            at = None if levels is None else [int(np.argmin(np.abs(da.level.values - v))) for v in levels]
            values = self._scaled(da, self._read_blocks(da, path, name, times[hit], at))
            if len(pieces) == 1 and hit.all():  # one source holds every time: no copy
                return values
            if out is None:
                out = by_level((len(times),) + values.shape[1:])
            again = source[hit] >= 0
            if again.any():
                _check_duplicates(
                    name,
                    times[hit][again],
                    out[hit][again],
                    values[again],
                    [pieces[k][1] for k in source[hit][again]],
                    path,
                )
            out[hit], source[hit] = values, j
        filled = source >= 0
        if not filled.all():
            raise UnknownName(f"variable {name} has no data at {times[~filled][:3]} in {self.files}")
        return out

    @staticmethod
    def alias_scale(variable: str) -> float:
        """The factor that brings the source's ``variable`` to the ClimaX field (:data:`ALIAS_SCALES`)."""
        return ALIAS_SCALES.get(variable, (1.0, ""))[0]

    @classmethod
    def _scaled(cls, da: xr.DataArray, values: np.ndarray) -> np.ndarray:
        scale = cls.alias_scale(da.name)
        return values if scale == 1.0 else values * np.float32(scale)

    def _read_blocks(
        self, da: xr.DataArray, path: str, name: str, times: np.ndarray, at: list[int] | None = None
    ) -> np.ndarray:
        """``da`` at ``times`` ``[T, H, W]`` (``[T, N, H, W]``: the levels at positions ``at``),
        read in runs of whole source chunks along time (about 64 MiB a read; every level
        of a run read at once, then picked: a list of levels would make the backend index
        point by point); the last chunk read of each field is kept, so a chunk that two calls
        share is fetched once."""
        index = da.indexes["time"].get_indexer(times)
        dims = ("time", "level", "lat", "lon") if "level" in da.dims else ("time", "lat", "lon")
        shape = tuple(len(at) if d == "level" and at is not None else da.sizes[d] for d in dims[1:])
        out = by_level((len(times),) + shape)
        key = (path, name)
        done = np.zeros(len(times), bool)
        if key in self._blocks:
            (lo, hi), data = self._blocks[key]  # its levels already picked
            done = _fill(out, index, lo, hi, data, None if at is None else range(len(at)))
        chunk = time_chunk(da)
        ids = np.unique(index[~done] // chunk)
        runs = np.split(ids, np.flatnonzero(np.diff(ids) > 1) + 1) if ids.size else []
        per_read = max(1, 2**26 // max(chunk * int(np.prod([da.sizes[d] for d in dims[1:]])) * 4, 1))
        blocks = [
            (int(r[i]) * chunk, min((int(r[min(i + per_read, r.size) - 1]) + 1) * chunk, da.sizes["time"]))
            for r in runs
            for i in range(0, r.size, per_read)
        ]
        whole = not done.any() and len(blocks) == 1 and np.all(np.diff(index) == 1)
        for lo, hi in _progress(blocks, f"{name} ({path})", is_url(path)):
            frame = da.isel(time=slice(lo, hi))
            data = retried(lambda frame=frame: read_values(frame, path, name, dims), path, name, is_url(path))
            last = max(lo, (hi - 1) // chunk * chunk)  # keep the run's last chunk only (its levels): little memory
            tail = data[last - lo :]
            self._blocks[key] = ((last, hi), tail.copy() if at is None else tail[:, at])
            if whole and at is None and data.flags.c_contiguous:  # every time, in order and laid out: no copy
                return data[index[0] - lo : index[-1] - lo + 1]
            _fill(out, index, lo, hi, data, at)
        return out


def by_level(shape: tuple[int, ...]) -> np.ndarray:
    """``np.empty(shape)`` of float32, ``[T, N, H, W]`` laid out level by level (each level's
    ``[T, H, W]`` one contiguous block, as a shard stores it) or ``[T, H, W]``."""
    if len(shape) < 4:
        return np.empty(shape, np.float32)
    return np.empty((shape[1], shape[0], *shape[2:]), np.float32).transpose(1, 0, 2, 3)


def time_chunk(da: xr.DataArray) -> int:
    """Time steps per chunk of the source (the backend's preferred chunks); 1 when unchunked."""
    return max(1, int(da.encoding.get("preferred_chunks", {}).get("time", 1)))


def _progress(blocks: list, desc: str, show: bool):
    """``blocks``, with a progress bar when reading a remote source."""
    if not show or len(blocks) < 2:
        return blocks
    from tqdm.auto import tqdm

    return tqdm(blocks, desc=desc, unit="block", leave=False)


def retried(read, path: str, name: str, remote: bool):
    """``read()``; for a remote source again after 0.5, 1, 2 s when it fails, then a :class:`DataError`."""
    for attempt in range(RETRIES if remote else 1):
        try:
            return read()
        except DataError as err:
            if not remote or attempt == RETRIES - 1:
                raise
            logger.warning("%s: reading %s failed (%s); retrying", path, name, err)
            time.sleep(BACKOFF_S * 2**attempt)
    raise AssertionError("unreachable")


def _fill(out: np.ndarray, index: np.ndarray, lo: int, hi: int, data: np.ndarray, at=None) -> np.ndarray:
    """``out[j] = data[index[j] - lo]`` (``out[j, k] = data[index[j] - lo, at[k]]``: the levels at
    positions ``at``) where ``lo <= index[j] < hi``; returns the mask of ``j`` filled.

    One copy of each level, by blocks when those positions run in order (as they do for
    consecutive times): ``data`` may be a transposed view of what the source decoded, and this
    copy is what lays it out as ``out``.
    """
    inside = (index >= lo) & (index < hi)
    where = np.flatnonzero(inside)
    if where.size and np.all(np.diff(where) == 1) and np.all(np.diff(index[where]) == 1):
        target, source = slice(where[0], where[-1] + 1), slice(index[where[0]] - lo, index[where[-1]] - lo + 1)
    else:
        target, source = inside, index[inside] - lo
    if at is None:
        out[target] = data[source]
    else:
        for k, level in enumerate(at):  # level by level: each a view, copied once into its block of out
            out[target, k] = data[source, level]
    return inside


def read_values(da: xr.DataArray, path: str, name: str, dims: tuple[str, ...] | None = None) -> np.ndarray:
    """``da.values`` with its axes in the order ``dims`` (a transposed view when the source
    orders them otherwise: the caller's copy lays it out), or a :class:`DataError` naming file
    and variable when the source cannot be read.

    The axes are put in order after reading: transposing the lazy array first would make
    xarray index the backend point by point (20x slower on a Zarr store laid out
    ``time, longitude, latitude`` as WeatherBench 2's are).
    """
    try:
        values = np.asarray(da.values)
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001 -- a damaged file or a dropped connection: say which
        raise DataError(f"{path}: cannot read variable {name} ({type(err).__name__}: {err})") from err
    if dims is not None and tuple(da.dims) != tuple(dims):
        values = np.transpose(values, [da.dims.index(d) for d in dims])
    return values


def _check_duplicates(
    name: str, stamps: np.ndarray, before: np.ndarray, now: np.ndarray, earlier: list[str], path: str
) -> None:
    """Time stamps found in two files: the same values are merged (with a note), different ones are an error."""
    same = np.array([np.array_equal(a, b, equal_nan=True) for a, b in zip(before, now)])
    if not same.all():
        k = int(np.argmin(same))
        raise DataError(
            f"variable {name}: {earlier[k]} and {path} hold different values at the same time "
            f"{stamps[k]} ({int((~same).sum())} conflicting stamps); keep one of the files"
        )
    logger.info(
        "variable %s: %d time stamps of %s repeat those of %s with the same values; merged",
        name,
        len(stamps),
        path,
        earlier[0],
    )
