# SPDX-License-Identifier: Apache-2.0
"""``climax data prepare``: raw files -> shard store (:mod:`.store`).

One pass over the data, split by years: select variables and levels, regrid,
write shards, and accumulate per-year moments (training years) and
climatologies (every split). Work goes to ``<out>.partial``; each finished
year leaves a marker with its partial statistics, so a restarted run skips
it; the manifest is written and the folder renamed only at the very end, so
an interrupted run never leaves a store that loads as complete.
"""

from __future__ import annotations

import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from ..files import atomic_path, sha256
from ..grid import native_axes, regional_axes, regular_grid, spacing_shape
from .climatology import day_and_hour
from .cmip6 import is_cmor, to_climax_units
from .regrid import regrid_weights
from .sources import Catalogue, split_name
from .stats import Climatology, Moments
from .store import MANIFEST, SPLITS, StoreError, npz_arrays, write_npz
from .streamed import check_streamable, open_store, stream_entry
from .times import CALENDAR_DATES

logger = logging.getLogger(__name__)

#: Computed constant: the latitude of each cell (spelled as in the official checkpoints).
LATITUDE_FIELD = "lattitude"


#: The forms a split's period may take, for the error that shows them.
PERIOD_FORMS = (
    "2016 (a year)",
    "1979-2015 (years)",
    "2019-03-01:2019-03-24 or 2019-03-01/2019-03-24 (days, both included)",
)


def parse_periods(spec) -> list[list[str]]:
    """Split periods, each within one calendar year, as ``[start, end)`` ISO dates.

    Years (``"1979-2015"``, ``2016``) or date ranges with inclusive ends
    (``"2000-01-01:2000-09-30"``, or with ``/`` as the CDS writes them), alone
    or in a list.

    Raises
    ------
    ValueError
        For any other text, showing the accepted forms.
    """
    items = spec if isinstance(spec, (list, tuple)) else [spec]
    periods: list[tuple[np.datetime64, np.datetime64]] = []
    for item in items:
        text = str(item).strip()
        days = re.fullmatch(r"(\d{4}-\d{2}-\d{2})\s*[:/]\s*(\d{4}-\d{2}-\d{2})", text)
        years = re.fullmatch(r"(\d{4})(?:\s*-\s*(\d{4}))?", text)
        try:
            if days:
                periods += _day_periods(np.datetime64(days.group(1), "D"), np.datetime64(days.group(2), "D"), text)
            elif years:
                first, last = int(years.group(1)), int(years.group(2) or years.group(1))
                if last < first:
                    raise ConfigError("the last year is before the first")
                periods += [
                    (np.datetime64(f"{y}-01-01"), np.datetime64(f"{y + 1}-01-01")) for y in range(first, last + 1)
                ]
            else:
                raise ConfigError("not a year, a range of years or a range of days")
        except ValueError as err:
            raise ConfigError(f"period {text!r}: {err}; write it as one of: {'; '.join(PERIOD_FORMS)}") from None
    return [[str(lo), str(hi)] for lo, hi in sorted(set(periods))]


def _day_periods(lo: np.datetime64, last: np.datetime64, text: str) -> list[tuple[np.datetime64, np.datetime64]]:
    """``[lo, last + 1 day)`` cut at year boundaries."""
    hi = last + np.timedelta64(1, "D")
    if hi <= lo:
        raise ConfigError("empty date range (the end is before the start)")
    periods = []
    while lo < hi:
        next_year = (lo.astype("datetime64[Y]") + 1).astype("datetime64[D]")
        periods.append((lo, min(hi, next_year)))
        lo = min(hi, next_year)
    return periods


@dataclass
class PrepareConfig:
    """What to prepare (JSON-serialisable; kept to refuse mixing configs on restart).

    Parameters
    ----------
    inputs : list of str
        NetCDF files, Zarr folders or glob patterns.
    variables : list of str
        ClimaX names, e.g. ``["2m_temperature", "geopotential_500"]``.
    splits : dict
        Split -> years or date ranges, e.g. ``{"train": "1979-2015", "val": 2016,
        "test": "2017-2018"}`` or ``{"train": "2000-01-01:2000-08-31", ...}``
        (see :func:`parse_periods`).
    grid : tuple of int, float, or "native"
        Target ``(H, W)`` in the convention of :mod:`physicsnemo_climax.grid`
        (global, regridded); a spacing in degrees (``5.625``: the global grid of
        that spacing, or with ``region`` its cells whose centres fall in the box,
        regridded); or ``"native"``: the source's own points, regional
        boxes included (latitudes south to north, longitudes without a jump).
    region : list of 4 floats, optional
        ``[lat0, lat1, lon0, lon1]`` (east from ``lon0`` to ``lon1``): crop the
        native grid, or the global grid of a spacing, to this box.
    method : {"conservative", "bilinear"}
        Regridding.
    hours_per_step : int
        Keep times whose hour since the start of the year is a multiple of this.
    shards_per_year : int
        Shards a year is split into.
    name_map : dict
        ClimaX base name -> variable name in the files (e.g. CMIP6 names).
    scales : dict
        ClimaX base name -> factor applied on reading a variable that is not a CMIP6 one
        (CMIP6 variables are converted to ClimaX's units by :mod:`.cmip6`).
    nan_policy : {"raise", "fill"}
        NaNs are an error, or (when asked) filled with the field's mean.
    day_of_year_climatology : bool
        Also write ``{split}/climatology_doy.npz``.
    storage_options : dict
        fsspec options for URL inputs (public buckets are read anonymously).
    grib_step : float, optional
        Hours: the forecast step to take from GRIB files with several steps.
    calendar_dates : {"refuse", "drop"}
        Dates of the sources' calendar the standard one lacks (``360_day``'s 30
        February): an error naming the first, or left out (the store records
        the calendar and how many dates were dropped).
    stream : bool
        Write no shards: the statistics, climatologies and a manifest saying where each field is in
        the source, which training then reads directly (:mod:`.streamed`; one Zarr source, on the
        store's grid).
    """

    inputs: list[str]
    variables: list[str]
    splits: dict
    grid: tuple[int, int] | str = (32, 64)
    region: list | None = None
    method: str = "conservative"
    hours_per_step: int = 6
    shards_per_year: int = 4
    name_map: dict = field(default_factory=dict)
    scales: dict = field(default_factory=dict)
    nan_policy: str = "raise"
    day_of_year_climatology: bool = False
    storage_options: dict = field(default_factory=dict)
    grib_step: float | None = None
    calendar_dates: str = "refuse"
    stream: bool = False

    def __post_init__(self):
        self.inputs = [str(p) for p in self.inputs]
        self.variables = list(self.variables)
        if isinstance(self.grid, (int, float)):
            spacing_shape(self.grid)  # a spacing that does not divide the globe: refused now
            self.grid = float(self.grid)
        elif self.grid != "native":
            self.grid = tuple(int(g) for g in self.grid)
        if self.region is not None:
            self.region = [float(v) for v in self.region]
            if isinstance(self.grid, tuple) or len(self.region) != 4:
                raise ConfigError(
                    f"--region {' '.join(f'{v:g}' for v in self.region)} (region): a box lat0 lat1 lon0 lon1 "
                    "crops the native grid (--grid native) or a grid of a spacing (--grid DEG, e.g. "
                    f"--grid 2.8125); the global grid --grid {' '.join(map(str, self.grid))} is not cropped"
                )
        if self.calendar_dates not in CALENDAR_DATES:
            raise ConfigError(f"--calendar-dates {self.calendar_dates} (calendar_dates): choose from {CALENDAR_DATES}")
        self.splits = {k: parse_periods(v) for k, v in self.splits.items()}
        unknown = set(self.splits) - set(SPLITS)
        if unknown:
            raise ConfigError(f"unknown splits {sorted(unknown)}; use {SPLITS}")
        if "train" not in self.splits:
            raise ConfigError("splits must include 'train' (statistics come from it)")
        if self.nan_policy not in ("raise", "fill"):
            raise ConfigError(f"nan_policy must be 'raise' or 'fill', got {self.nan_policy!r}")
        if len(set(self.variables)) != len(self.variables):
            raise ConfigError(f"duplicate variables in {self.variables}")
        for split, periods in self.splits.items():
            years = [start[:4] for start, _ in periods]
            if len(set(years)) != len(years):
                raise ConfigError(f"split {split}: at most one period per calendar year, got {periods}")


def _period_times(times: np.ndarray, start: str, end: str, hours_per_step: int) -> np.ndarray:
    """Times in ``[start, end)`` whose hour since 1 January is a multiple of the step."""
    lo, hi = np.datetime64(start, "h"), np.datetime64(end, "h")
    year_start = lo.astype("datetime64[Y]").astype("datetime64[h]")
    chosen = times[(times >= lo) & (times < hi)]
    hours = (chosen - year_start) // np.timedelta64(1, "h")
    exact = (chosen - year_start) % np.timedelta64(1, "h") == np.timedelta64(0)
    return chosen[exact & (hours % hours_per_step == 0)]


class Preparer:
    """Carries out one :class:`PrepareConfig` into ``out``."""

    def __init__(self, config: PrepareConfig, out: str | Path):
        self.config = config
        self.out = Path(out)
        self.work = self.out.with_name(self.out.name + ".partial")
        self.catalogue = Catalogue(
            config.inputs, config.name_map, config.storage_options, config.grib_step, config.calendar_dates
        )
        self._target_grid()
        self.shape = (self.lat.size, self.lon.size)
        self.checksums: dict[str, str] = {}
        self.in_order = self.weights is None and all(np.array_equal(i, np.arange(i.size)) for i in self.index)
        self.fields = [v for v in config.variables if v != LATITUDE_FIELD]
        self.units = {LATITUDE_FIELD: "degrees_north"}
        self.level_fields = {v for v in self.fields if self.catalogue.is_level_field(v)}
        self.conversions: dict[str, tuple[float, float]] = {}
        for name in self.fields:  # fail before any work if a variable is absent
            self.conversions[name], self.units[name] = self._conversion(name)
        self.listed: dict[str, list] = {}  # per split, each shard's name and steps
        if config.stream:
            check_streamable(config, self.catalogue, regridded=self.weights is not None)

    def _target_grid(self) -> None:
        """The store's axes ``lat``, ``lon`` and how to get there from the source: regridding
        ``weights`` (latitude, longitude), or ``None`` and the source's rows and columns ``index``."""
        config = self.config
        if config.grid == "native":
            try:
                *self.index, self.lat, self.lon = native_axes(self.catalogue.lat, self.catalogue.lon, config.region)
            except ValueError as err:
                raise DataError(f"{config.inputs[0]}: {err}") from None
            self.weights = None
            return
        shape = spacing_shape(config.grid) if isinstance(config.grid, float) else config.grid
        lat, lon = regular_grid(shape)
        rows, cols = np.arange(lat.size), np.arange(lon.size)
        if config.region is not None:  # the global grid's cells in the box: regional and global stores nest
            rows, cols, self.lat, self.lon = regional_axes(config.grid, config.region)
        else:
            self.lat, self.lon = lat, lon
        # the global grid's weights, then its rows and columns in the box: the same cells, the same values
        w_lat, w_lon = regrid_weights(self.catalogue.lat, self.catalogue.lon, lat, lon, config.method)
        self.weights = w_lat[rows], w_lon[cols]
        same = same_points(self.catalogue.lat, self.catalogue.lon, lat, lon)
        if same is not None:  # the source is on the target grid (WeatherBench 2's 64x32 is ClimaX's 5.625 deg):
            self.index, self.weights = (same[0][rows], same[1][cols]), None  # any method gives the values themselves

    def _conversion(self, name: str) -> tuple[tuple[float, float], str]:
        """``((scale, offset), units)`` of field ``name`` in the store: a CMIP6 variable brought to
        ClimaX's units (:mod:`.cmip6`), anything else scaled as the user asked, in its own units."""
        da, path = self.catalogue.locate(name)[0]
        if is_cmor(str(da.name)):
            scale, offset, units = to_climax_units(
                name, str(da.name), da.attrs.get("units", ""), path, self.config.scales
            )
            return (scale, offset), units
        return (self.config.scales.get(split_name(name)[0], 1.0), 0.0), self.catalogue.units(name)

    # ------------------------------------------------------------------ read
    def _read_all(self, times: np.ndarray) -> dict[str, tuple[np.ndarray, Moments, np.ndarray]]:
        """Every variable at ``times``: ``name -> (values [T, H, W], their moments, their float64
        sums over time)``. The levels of one upper-air variable are read together (a source chunk
        holding them all is fetched once), two variables at a time: one is laid out and summed
        while the other is decoded."""
        groups: dict[str, list[str]] = {}
        for name in self.config.variables:  # a level held alone (CMIP6's zg500) is read alone
            base, level = split_name(name)
            alone = level is None or name in self.level_fields
            groups.setdefault(name if alone else base, []).append(name)
        with ThreadPoolExecutor(2, thread_name_prefix="prepare-variable") as pool:
            parts = list(pool.map(lambda item: self._read_group(*item, times), groups.items()))
        return {name: values for part in parts for name, values in part.items()}

    def _read_group(self, key: str, names: list[str], times: np.ndarray) -> dict[str, tuple]:
        """One variable (``key`` is its name), or levels of one upper-air variable (``key`` is
        its base name), on the store's grid, each with its moments and sums (:meth:`_read_all`)."""
        if names == [LATITUDE_FIELD]:
            fields = {LATITUDE_FIELD: np.broadcast_to(self.lat[:, None], (len(times), *self.shape)).astype(np.float32)}
        elif key == names[0]:
            fields = {key: self._on_grid(key, self.catalogue.read(key, times), times)}
        else:
            raw = self.catalogue.read_levels(names, times)
            fields = {name: self._on_grid(name, raw[:, k], times) for k, name in enumerate(names)}
        return {name: (values, *Moments.with_sums(values)) for name, values in fields.items()}

    def _on_grid(self, name: str, raw: np.ndarray, times: np.ndarray) -> np.ndarray:
        """``raw [T, H_in, W_in]`` (or ``[1, ...]`` for a constant) scaled, checked for NaN
        and on the store's grid (regridded or cropped): ``[T, H, W]`` float32."""
        scale, offset = self.conversions.get(name, (1.0, 0.0))
        raw = raw * scale + offset if (scale, offset) != (1.0, 0.0) else raw
        if self.weights is None and not self.in_order:  # the source's points (in the region), in the store's order
            raw = raw[:, self.index[0][:, None], self.index[1][None, :]]
        bad = np.isnan(raw) if not np.isfinite(raw.sum()) else None  # the sum: no temporary as large as raw
        if bad is not None and bad.any():
            if self.config.nan_policy == "raise":
                t = int(np.argwhere(bad.any(axis=(1, 2)))[0, 0])
                when = times[t] if len(times) > t and raw.shape[0] > 1 else "constant"
                raise DataError(
                    f"NaN in variable {name} at time {when} "
                    f"({int(bad.sum())} values); use nan_policy='fill' to fill them"
                )
            raw = np.where(bad, np.nanmean(raw, axis=(1, 2), keepdims=True), raw)
        out = raw
        if self.weights is not None:
            w_lat, w_lon = self.weights
            out = w_lat @ raw.astype(np.float64) @ w_lon.T
        if out.shape[0] == 1 and len(times) > 1:  # constants repeat along time
            out = np.repeat(out, len(times), axis=0)
        return out.astype(np.float32, copy=False)

    # ------------------------------------------------------------------ run
    def run(self) -> Path:
        """Prepare the store; returns its path."""
        if self.out.exists():
            raise StoreError(f"{self.out} already exists; prepare into a new folder")
        self._start_or_resume()
        time_source = next((v for v in self.fields if len(self.catalogue.times(v))), None)
        if time_source is None:
            raise ConfigError("no time-dependent variable among the requested ones")
        all_times = self.catalogue.times(time_source)
        moments = {v: Moments() for v in self.config.variables}
        covered, missing = {}, {}  # the periods the data reach, [first time, last time + step); steps absent there
        step = np.timedelta64(self.config.hours_per_step, "h")
        for split, periods in self.config.splits.items():
            (self.work / split).mkdir(exist_ok=True)
            clim = {v: Climatology(self.shape, self.config.day_of_year_climatology) for v in self.config.variables}
            covered[split], missing[split] = [], []
            for start, end in periods:
                year = int(start[:4])
                times = _period_times(all_times, start, end, self.config.hours_per_step)
                if times.size == 0:
                    raise DataError(f"no data for {start}..{end} (split {split}) in {self.config.inputs}")
                covered[split].append(
                    [str(times[0].astype("datetime64[h]")), str((times[-1] + step).astype("datetime64[h]"))]
                )
                missing[split] += absent_steps(times, step)
                year_moments = self._year(split, year, times, clim)
                if split == "train":
                    for v, m in year_moments.items():
                        moments[v] = moments[v].merge(m)
            self._write_climatology(split, clim)
        self._finish(moments, covered, {k: v for k, v in missing.items() if v})
        return self.out

    def _start_or_resume(self) -> None:
        stamp = self.work / "prepare.json"
        config = json.loads(json.dumps(asdict(self.config)))
        if self.work.exists():
            previous = json.loads(stamp.read_text()) if stamp.exists() else None
            defaults = {f.name: f.default for f in fields(PrepareConfig) if f.default is not MISSING}
            defaults.update(storage_options={}, name_map={}, scales={})
            if previous is not None:  # keys a newer version added keep their defaults
                previous = {**json.loads(json.dumps(defaults)), **previous}
            if previous != config:
                keys = sorted(set(config) | set(previous or {}))
                diff = {
                    k: ((previous or {}).get(k), config.get(k))
                    for k in keys
                    if (previous or {}).get(k) != config.get(k)
                }
                raise StoreError(
                    f"{self.work} holds an unfinished preparation with another configuration "
                    f"(key: (previous, now)) {diff}; remove it or prepare elsewhere"
                )
            logger.info("resuming the unfinished preparation in %s", self.work)
        else:
            self.work.mkdir(parents=True)
            stamp.write_text(json.dumps(config, indent=1))
        np.save(self.work / "lat.npy", self.lat)
        np.save(self.work / "lon.npy", self.lon)

    def _year(self, split: str, year: int, times: np.ndarray, clim: dict) -> dict[str, Moments]:
        parts = np.array_split(times, self.config.shards_per_year)  # the shards :meth:`_write_shards` writes
        self.listed.setdefault(split, []).extend([f"{year}_{i}", c.size] for i, c in enumerate(parts) if c.size)
        marker = self.work / split / f".{year}.done.npz"
        variables = self.config.variables
        if marker.exists():  # finished before an interruption: reuse its partial statistics
            saved = npz_arrays(marker, 366 * self.shape[0] * self.shape[1])  # headers checked, as any store file
            for v in variables:
                clim[v].sum += saved[f"sum/{v}"]
                clim[v].count += int(saved["count"])
                if clim[v].doy_sum is not None:
                    clim[v].doy_sum += saved[f"doy_sum/{v}"]
                    clim[v].doy_count += saved["doy_count"]
            return {v: Moments(*saved[f"moments/{v}"]) for v in variables}

        year_moments = {v: Moments() for v in variables}
        year_clim = {v: Climatology(self.shape, self.config.day_of_year_climatology) for v in variables}
        self._write_shards(split, year, times, year_moments, year_clim)

        record = {"count": year_clim[variables[0]].count}
        for v in variables:
            record[f"sum/{v}"] = year_clim[v].sum
            record[f"moments/{v}"] = np.array([year_moments[v].count, year_moments[v].mean, year_moments[v].m2])
            if year_clim[v].doy_sum is not None:
                record[f"doy_sum/{v}"] = year_clim[v].doy_sum
                record["doy_count"] = year_clim[v].doy_count
            clim[v].sum += year_clim[v].sum
            clim[v].count += year_clim[v].count
            if clim[v].doy_sum is not None:
                clim[v].doy_sum += year_clim[v].doy_sum
                clim[v].doy_count += year_clim[v].doy_count
        tmp = marker.with_name(f".{year}.tmp.npz")
        np.savez(tmp, **record)
        tmp.replace(marker)
        logger.info("prepared %s %d: %d steps", split, year, times.size)
        return year_moments

    def _write_shards(self, split: str, year: int, times: np.ndarray, moments: dict, clim: dict) -> None:
        """The year's shards, their moments and climatology sums, in a pipeline: the next shard
        is read and summed (a thread) while the last one is written and hashed (another)."""
        chunks = [(i, c) for i, c in enumerate(np.array_split(times, self.config.shards_per_year)) if c.size]
        with (
            ThreadPoolExecutor(1, thread_name_prefix="prepare-read") as reader,
            ThreadPoolExecutor(1, thread_name_prefix="prepare-write") as writer,
        ):
            pending, written = reader.submit(self._read_all, chunks[0][1]), []
            for k, (i, chunk) in enumerate(chunks):
                fields = pending.result()
                if k + 1 < len(chunks):
                    pending = reader.submit(self._read_all, chunks[k + 1][1])
                days = day_and_hour(chunk)[0] + 1
                for v, (values, shard_moments, sums) in fields.items():
                    moments[v] = moments[v].merge(shard_moments)
                    clim[v].update(values, days, sums)
                shard = self.work / split / f"{year}_{i}.npz"
                written.append(writer.submit(self._write_shard, shard, {v: f[0] for v, f in fields.items()}))
            for done in written:
                done.result()

    def _write_shard(self, shard: Path, fields: dict[str, np.ndarray]) -> None:
        if self.config.stream:  # read where it is: summed, never copied
            return
        with atomic_path(shard) as tmp:
            digest = write_npz(tmp, {v: values[:, None] for v, values in fields.items()})
        self.checksums[f"{shard.parent.name}/{shard.name}"] = digest

    def _write_climatology(self, split: str, clim: dict) -> None:
        write_climatology(self.work / split, clim)

    def _spacing(self) -> float | None:
        """Degrees between the store's cells when it is a regular grid of equal spacings, else ``None``."""
        if self.config.grid == "native":
            return None
        h, w = spacing_shape(self.config.grid) if isinstance(self.config.grid, float) else self.config.grid
        return 180.0 / h if np.isclose(180.0 / h, 360.0 / w) else None

    def _finish(self, moments: dict[str, Moments], covered: dict[str, list], missing: dict[str, list]) -> None:
        write_normalization(self.work, moments)
        for marker in self.work.glob("*/.*.done.npz"):
            marker.unlink()
        manifest = self._manifest(covered, missing)
        (self.work / MANIFEST).write_text(json.dumps(manifest, indent=1))
        self.work.rename(self.out)

    def _manifest(self, covered: dict[str, list], missing: dict[str, list]) -> dict:
        """``store.json``: what the store holds, where its data came from, its shards' checksums."""
        shards = sorted(
            p
            for split in self.config.splits
            for p in (self.work / split).glob("*.npz")
            if not p.name.startswith("climatology")
        )
        return {
            "format": "climax-shards/1",
            "variables": self.config.variables,
            "hours_per_step": self.config.hours_per_step,
            "grid": list(self.shape),
            "grid_kind": "native" if self.config.grid == "native" else "regular",
            "spacing": self._spacing(),
            "region": self.config.region,
            "calendar": self.catalogue.calendar,  # the sources' (cftime's name): a contract with downscaling
            **({"calendar_dates_dropped": len(self.catalogue.dropped)} if self.catalogue.dropped else {}),
            "splits": self.config.splits,
            "coverage": covered,
            **({"missing_times": missing} if missing else {}),
            "method": self.config.method,
            "units": self.units,
            "inputs": self.config.inputs,
            "checksums": {
                f"{p.parent.name}/{p.name}": self.checksums.get(f"{p.parent.name}/{p.name}") or sha256(p)
                for p in shards
            },  # shards of years finished before a restart: hashed now
            **({"stream": self._stream_entry()} if self.config.stream else {}),
        }

    def _stream_entry(self) -> dict:
        """Where each field is in the (one) source: variable, level, units; the source's rows and
        columns in the store's order; the shards (:mod:`.streamed`)."""
        fields = {}
        for name in self.config.variables:
            if name == LATITUDE_FIELD:
                fields[name] = {"variable": None}
                continue
            da = self.catalogue.locate(name)[0][0]
            level = split_name(name)[1] if name not in self.level_fields else None
            scale, offset = self.conversions[name]
            fields[name] = {
                "variable": str(da.name),
                "level": level,
                "source_scale": float(self.catalogue.alias_scale(str(da.name))),
                "scale": float(scale),
                "offset": float(offset),
            }
        index = None if self.in_order else [np.asarray(i).tolist() for i in self.index]
        return stream_entry(self.config, fields, index, self.listed)


def absent_steps(times: np.ndarray, step: np.timedelta64) -> list[str]:
    """The steps between the first and last of ``times`` (sorted ``[T]``) that they lack, as ISO
    hours (a ``noleap`` source's 29 February, a ``360_day`` one's 31sts): the store's stamps skip them."""
    every = np.arange(times[0], times[-1] + step, step)
    return [str(t.astype("datetime64[h]")) for t in np.setdiff1d(every, times)]


def same_points(lat_in, lon_in, lat_out, lon_out) -> tuple[np.ndarray, np.ndarray] | None:
    """Positions in the source of the target's points when both grids have the same points
    (in any order, longitudes in either convention); ``None`` otherwise."""
    lat_order, lon_order = np.argsort(lat_in), np.argsort(np.asarray(lon_in) % 360)
    if lat_in.shape != lat_out.shape or lon_in.shape != lon_out.shape:
        return None
    if not (
        np.allclose(lat_in[lat_order], np.sort(lat_out), atol=1e-6)
        and np.allclose(np.asarray(lon_in)[lon_order] % 360, np.sort(np.asarray(lon_out) % 360), atol=1e-6)
    ):
        return None
    return lat_order[np.argsort(np.argsort(lat_out))], lon_order[np.argsort(np.argsort(np.asarray(lon_out) % 360))]


def write_climatology(folder: Path, clim: dict[str, Climatology]) -> None:
    """``climatology.npz`` (``[1, H, W]`` per variable) and, when accumulated,
    ``climatology_doy.npz`` (``[366, 1, H, W]``) in a split's folder."""
    with atomic_path(folder / "climatology.npz") as tmp:
        np.savez(tmp, **{v: c.mean()[None].astype(np.float32) for v, c in clim.items()})
    if any(c.doy_sum is not None for c in clim.values()):
        with atomic_path(folder / "climatology_doy.npz") as tmp:
            np.savez(tmp, **{v: c.day_of_year_mean()[:, None].astype(np.float32) for v, c in clim.items()})


def write_normalization(root: Path, moments: dict[str, Moments]) -> None:
    """``normalize_mean.npz`` and ``normalize_std.npz`` (shape ``[1]`` per variable)."""
    with atomic_path(root / "normalize_mean.npz") as tmp:
        np.savez(tmp, **{v: np.array([m.mean]) for v, m in moments.items()})
    # constant fields (zero spread) are left unscaled rather than divided by 0
    with atomic_path(root / "normalize_std.npz") as tmp:
        np.savez(tmp, **{v: np.array([m.std if m.std > 0 else 1.0]) for v, m in moments.items()})


def compute_statistics(root: str | Path, day_of_year: bool = False) -> None:
    """(Re)compute a store's normalization (training split) and climatologies.

    ``climax data stats`` runs this, e.g. for an official folder that lacks
    them. Day-of-year climatologies need time stamps, which only stores
    prepared here have (their manifest gives each period's start); official
    folders get the time mean only.
    """
    store = open_store(root)  # a streamed store's statistics are computed from its source
    variables = store.variables()
    moments = {v: Moments() for v in variables}
    steps_per_day = 24 / store.hours_per_step
    for split in SPLITS:
        if not (store.root / split).is_dir():
            continue
        with_doy = day_of_year and store.manifest is not None
        clim = {v: Climatology(store.grid, with_doy) for v in variables}
        shards = store.shards(split)
        manifest = store.manifest or {}
        starts = {p[0][:4]: p[0] for p in manifest.get("coverage", manifest.get("splits", {})).get(split, [])}
        for year in sorted({s.path.stem.split("_")[0] for s in shards}):
            first_day = np.datetime64(starts.get(year, f"{year}-01-01")) - np.datetime64(f"{year}-01-01")
            elapsed = int(first_day / np.timedelta64(1, "D") * steps_per_day)
            for shard in (s for s in shards if s.path.stem.split("_")[0] == year):
                days = (np.arange(elapsed, elapsed + shard.steps) // steps_per_day).astype(int) + 1
                elapsed += shard.steps
                for v in variables:
                    values = np.asarray(shard.array(v))[:, 0]
                    clim[v].update(values, days)
                    if split == "train":
                        moments[v] = moments[v].merge(Moments.of(values))
        write_climatology(store.root / split, clim)
    write_normalization(store.root, moments)


def prepare(config: PrepareConfig, out: str | Path) -> Path:
    """Prepare a store from raw files, or with ``config.stream`` the side folder of a source read
    where it is (:mod:`.streamed`); see :class:`PrepareConfig`."""
    return Preparer(config, out).run()
