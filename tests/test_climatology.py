# SPDX-License-Identifier: Apache-2.0
"""WeatherBench 2's climatology (day of year x hour of day, 61-day triangular window),
against a direct computation that stacks the years day by day."""

from __future__ import annotations

import numpy as np
import pytest
from era5_files import write_era5

from physicsnemo_climax.data import PrepareConfig, ShardStore, prepare
from physicsnemo_climax.data.climatology import hourly_climatology, window_weights
from physicsnemo_climax.data.store import StoreError


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    files = write_era5(tmp_path_factory.mktemp("raw"), years=(2000, 2001), h=4, w=8)  # a leap year, then not
    return ShardStore(
        prepare(
            PrepareConfig(
                files,
                ["2m_temperature", "temperature_850"],
                {"train": "2000-2001", "test": 2001},
                grid=(4, 8),
                shards_per_year=3,
            ),
            tmp_path_factory.mktemp("s") / "store",
        )
    )


def direct(store: ShardStore, variable: str, window: int, day: int, hour: int) -> np.ndarray:
    """Each year laid out on 366 days (day 366 of a common year = its day 365), then the
    weighted mean over the window's days and the years, skipping nothing else."""
    per_year = {}
    for shard, stamps in zip(store.shards("train"), store.shard_times("train")):
        values = np.asarray(shard.array(variable))[:, 0].astype(np.float64)
        for stamp, field in zip(stamps, values):
            t = stamp.astype("datetime64[h]").astype(object)
            if t.hour != hour:
                continue
            grid = per_year.setdefault(t.year, np.full((366, *store.grid), np.nan))
            grid[t.timetuple().tm_yday - 1] = field
    for grid in per_year.values():
        if np.isnan(grid[365]).all():
            grid[365] = grid[364]
    half = window // 2
    num, den = 0.0, 0.0
    for k in range(-half, half + 1):
        w = 1 - abs(k) / half if half else 1.0
        for grid in per_year.values():
            field = grid[(day + k) % 366]
            if not np.isnan(field).any():
                num, den = num + w * field, den + w
    return num / den


@pytest.mark.parametrize("day, hour", [(0, 0), (59, 6), (180, 12), (364, 18), (365, 0)])
def test_the_climatology_is_the_windowed_mean_over_the_years(store, day, hour):
    clim = hourly_climatology(store, ["2m_temperature", "temperature_850"], window=61)
    assert clim.fields.shape == (366, 4, 2, 4, 8) and clim.hours.tolist() == [0, 6, 12, 18]
    for v, name in enumerate(clim.variables):
        assert np.allclose(clim.fields[day, hour // 6, v], direct(store, name, 61, day, hour), rtol=1e-6)


def test_window_one_is_the_plain_mean_and_years_restrict(store):
    one = hourly_climatology(store, ["2m_temperature"], window=1)
    assert np.allclose(one.fields[40, 2, 0], direct(store, "2m_temperature", 1, 40, 12), rtol=1e-6)
    only_2001 = hourly_climatology(store, ["2m_temperature"], years=(2001, 2001), window=1)
    shard = store.shards("train")[3]  # 2001's first shard, from 1 January 00 UTC
    assert store.shard_times("train")[3][0] == np.datetime64("2001-01-01T00")
    assert np.allclose(only_2001.fields[0, 0, 0], np.asarray(shard.array("2m_temperature"))[0, 0], rtol=1e-6)
    with pytest.raises(StoreError, match="no time in the years"):
        hourly_climatology(store, ["2m_temperature"], years=(1990, 1991))


def test_at_picks_day_and_hour(store):
    clim = hourly_climatology(store, ["2m_temperature"], window=5)
    stamps = np.array(["2005-03-01T18", "2004-03-01T06"], "datetime64[h]")  # day 60 common, day 61 leap
    assert np.array_equal(clim.at(stamps), clim.fields[[59, 60], [3, 1]])
    with pytest.raises(ValueError, match="holds hours"):
        clim.at(np.array(["2005-03-01T03"], "datetime64[h]"))


def test_window_weights_are_triangular_and_odd():
    assert np.allclose(window_weights(5), [0, 0.5, 1, 0.5, 0])
    with pytest.raises(ValueError, match="odd number of days"):
        window_weights(60)
