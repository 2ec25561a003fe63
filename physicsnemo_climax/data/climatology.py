# SPDX-License-Identifier: Apache-2.0
"""Climatology as WeatherBench 2 defines it: per day of year and hour of day,
from the training years, smoothed over neighbouring days.

For each hour of day the store holds, the value for day of year ``d`` is
the weighted mean, over every year used, of that hour on the days
``d - 30 .. d + 30`` (a 61-day window, wrapping around the year), with
triangular weights ``1 - |k| / 30`` (zero at both ends). Day 366 of a year
that has none takes that year's day 365, as WeatherBench 2 does, so every
year counts in every window. Days of year are calendar ones (1 March is day
61 in a leap year, 60 otherwise), as ``time.dt.dayofyear`` gives them.

It is a reference for ACC and a baseline forecast that uses no knowledge of
the scored period (unlike the time mean of the scored split itself).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import xarray as xr

from ..errors import ConfigError, DataError
from .regrid import regrid
from .sources import on_grid_of
from .store import ShardStore, StoreError
from .units import STATING, to_run_units
from .wb2 import from_wb2

DAYS = 366


def window_weights(size: int) -> np.ndarray:
    """Triangular weights ``[size]`` over offsets ``-size // 2 .. size // 2`` days, zero at both ends."""
    if size < 1 or size % 2 == 0:
        raise ConfigError(f"climatology window {size}: give an odd number of days (WeatherBench 2 uses 61)")
    half = size // 2
    return np.ones(1) if half == 0 else 1.0 - np.abs(np.arange(-half, half + 1)) / half


@dataclass
class HourlyClimatology:
    """Fields ``[366, n_hours, V, H, W]`` by day of year (1 -> index 0) and hour of day.

    Attributes
    ----------
    fields : np.ndarray
    hours : np.ndarray
        ``[n_hours]`` hours of day, ascending.
    variables : list of str
    """

    fields: np.ndarray
    hours: np.ndarray
    variables: list[str]

    def at(self, stamps: np.ndarray) -> np.ndarray:
        """The climatology at the valid times ``stamps``: ``[B, V, H, W]``.

        Raises
        ------
        ValueError
            For a time whose hour of day the climatology does not hold.
        """
        day, hour = day_and_hour(stamps)
        slot = np.searchsorted(self.hours, hour)
        bad = (slot >= self.hours.size) | (self.hours[np.minimum(slot, self.hours.size - 1)] != hour)
        if bad.any():
            raise DataError(f"the climatology holds hours {self.hours.tolist()}, not {stamps[bad][:3]}")
        out = self.fields[day, slot]
        empty = np.isnan(out).reshape(len(out), -1).all(axis=1)
        if empty.any():
            raise StoreError(
                f"the climatology has no value for {str(np.asarray(stamps)[empty][0])[:13]}: no year "
                "it was computed from has data within its window of that day; choose years that "
                "cover the scored season, or eval.climatology=time_mean"
            )
        return out


def hourly_climatology(
    store: ShardStore,
    variables: list[str],
    split: str = "train",
    years: tuple[int, int] | None = None,
    window: int = 61,
) -> HourlyClimatology:
    """The day-of-year x hour-of-day climatology of ``variables`` over ``split`` (default: the
    training years), optionally only ``years`` (first, last, both included).

    Raises
    ------
    StoreError
        When the store carries no time stamps (official folders), or no time of ``split`` lies
        in ``years``.
    """
    weights = window_weights(window)
    step = int(store.hours_per_step)
    hours = np.arange(0, 24, step) if step <= 24 and 24 % step == 0 else None
    if hours is None:
        raise StoreError(f"{store.root}: a time step of {step} h does not divide the day")
    sums = np.zeros((DAYS, hours.size, len(variables), *store.grid))
    counts = np.zeros((DAYS, hours.size))
    for shard, stamps in zip(store.shards(split), store.shard_times(split)):
        year = stamps.astype("datetime64[Y]").astype(int) + 1970
        keep = np.ones(stamps.size, bool) if years is None else (year >= years[0]) & (year <= years[1])
        if not keep.any():
            continue
        day, hour = day_and_hour(stamps[keep])
        slot = hour // step
        values = np.stack([np.asarray(shard.array(v))[keep, 0] for v in variables], axis=1).astype(np.float64)
        np.add.at(sums, (day, slot), values)
        np.add.at(counts, (day, slot), 1)
        leap = (year[keep] % 4 == 0) & ((year[keep] % 100 != 0) | (year[keep] % 400 == 0))
        fill = ~leap & (day == DAYS - 2)  # day 365 of a year without day 366 stands in for it
        np.add.at(sums, (np.full(fill.sum(), DAYS - 1), slot[fill]), values[fill])
        np.add.at(counts, (np.full(fill.sum(), DAYS - 1), slot[fill]), 1)
    if not counts.any():
        raise StoreError(f"{store.root}/{split}: no time in the years {years}")
    return HourlyClimatology(_smooth(sums, counts, weights), hours, list(variables))


def wb2_climatology(
    ds: xr.Dataset,
    variables: list[str],
    lat: np.ndarray,
    lon: np.ndarray,
    source: str = "the climatology",
    units: Mapping[str, str] | None = None,
    assumed: Mapping[str, str] | None = None,
    stating: str = STATING,
) -> HourlyClimatology:
    """A WeatherBench 2 climatology (``dayofyear`` 1..366, ``hour``; :mod:`.wb2` names) of
    ``variables`` on the grid ``lat``, ``lon``: the same points reordered, another grid
    regridded conservatively, each field brought to the run's ``units`` (:mod:`.units`; fields
    without a ``units`` attribute need ``assumed`` units). Reads only those variables and levels,
    one at a time (pick the WB2 climatology of the store's resolution: a 0.25 degree one is 6 GB
    per field).

    Raises
    ------
    DataError
        When a variable, a level, a day of year or an axis is missing, naming it.
    InputError
        When a field's units are missing, unknown or not convertible to the run's.
    """
    fields = from_wb2(ds, variables, source)
    for dim in ("dayofyear", "hour", "lat", "lon"):
        if dim not in fields.dims:
            raise DataError(f"{source} has no {dim} axis (dims {dict(fields.sizes)}): not a WeatherBench 2 climatology")
    if fields.sizes["dayofyear"] != DAYS:
        raise DataError(f"{source}: {fields.sizes['dayofyear']} days of year, not {DAYS}")
    fields = fields.sortby(["dayofyear", "hour"])
    scales = [
        to_run_units(v, fields[v].attrs.get("units"), units, assumed or {}, source, stating) for v in variables
    ]  # every field's units checked before any is read
    ref = xr.Dataset(coords={"lat": lat, "lon": lon})
    stacked = np.empty((DAYS, fields.sizes["hour"], len(variables), len(lat), len(lon)), np.float32)
    for j, v in enumerate(variables):  # one variable in memory at a time, before regridding
        field = fields[v].transpose("dayofyear", "hour", "lat", "lon").load().to_dataset(name=v)
        try:
            field = on_grid_of(field, ref, source, "the store")
        except DataError:
            field = regrid(field, lat, lon, "conservative")
        stacked[:, :, j] = field[v].values * scales[j][0] + scales[j][1]
    return HourlyClimatology(stacked, fields.hour.values.astype(int), list(variables))


def day_and_hour(stamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Day of year (0-based: 1 January is 0) and hour of day of each time stamp."""
    stamps = np.asarray(stamps, "datetime64[h]")
    days = stamps.astype("datetime64[D]")
    return (days - stamps.astype("datetime64[Y]")).astype(int), (stamps - days).astype(int)


def _smooth(sums: np.ndarray, counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Windowed means over the day axis, wrapping around the year: ``sum_k w_k S[d+k] / sum_k w_k N[d+k]``."""
    half = weights.size // 2
    num, den = np.zeros_like(sums), np.zeros_like(counts)
    for k, w in zip(range(-half, half + 1), weights):
        if w:
            num += w * np.roll(sums, -k, axis=0)
            den += w * np.roll(counts, -k, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (num / den[:, :, None, None, None]).astype(np.float32)
