# SPDX-License-Identifier: Apache-2.0
"""CMIP6 files as ESGF delivers them, through ``climax data prepare``: CMOR names and units,
time-chunked files, the model calendars (recorded; 360_day refused, then dropped when asked)."""

import numpy as np
import pytest
from cmip6_files import PLEV, model_grid, stamps, values, write, write_set

from physicsnemo_climax.data import PrepareConfig, ShardStore, prepare
from physicsnemo_climax.errors import ConfigError, DataError

G = 9.80665
UPPER = ["temperature_850", "geopotential_500", "u_component_of_wind_250", "v_component_of_wind_850"]
VARIABLES = ["2m_temperature", *UPPER, "specific_humidity_700", "total_precipitation"]
CMOR = ["tas", "ta", "zg", "ua", "va", "hus", "pr"]


def config(folder, variables=VARIABLES, period="1979-01-01:1979-01-31", **kw):
    args = dict(grid="native", shards_per_year=2, splits={"train": period})
    return PrepareConfig([f"{folder}/*.nc"], variables, **(args | kw))


def stored(out, name):
    """Every training step of ``name`` in the store, ``[T, H, W]``, and the stamps of each."""
    store = ShardStore(out)
    data = np.concatenate([np.asarray(s.array(name))[:, 0] for s in store.shards("train")])
    return data, np.concatenate(store.shard_times("train"))


def source(var, dates, level=None):
    """The analytic source field of ``var`` at ``dates``, ``[T, H, W]`` (at ``level`` Pa)."""
    lat, lon, _, _ = model_grid()
    if level is None:
        return values(var, dates, lat, lon)
    return values(var, dates, lat, lon, PLEV)[:, list(PLEV).index(level)]


@pytest.fixture(scope="module")
def gregorian(tmp_path_factory):
    folder = tmp_path_factory.mktemp("esgf")
    write_set(folder, CMOR, start=(1979, 1, 1, 6), steps=40, files=2)  # two files per variable
    return folder


@pytest.fixture(scope="module")
def gregorian_store(gregorian, tmp_path_factory):
    return prepare(config(gregorian), tmp_path_factory.mktemp("out") / "store")


def test_cmor_names_and_units_become_climax_ones(gregorian_store):
    dates = stamps((1979, 1, 1, 6), 40)
    manifest = ShardStore(gregorian_store).manifest
    assert manifest["calendar"] == "proleptic_gregorian" and "calendar_dates_dropped" not in manifest
    assert manifest["units"]["geopotential_500"] == "m**2 s**-2" and manifest["units"]["total_precipitation"] == "m"
    expected = {
        "2m_temperature": source("tas", dates),
        "temperature_850": source("ta", dates, 85000.0),
        "geopotential_500": source("zg", dates, 50000.0) * np.float32(G),  # geopotential height (m) x g
        "u_component_of_wind_250": source("ua", dates, 25000.0),
        "v_component_of_wind_850": source("va", dates, 85000.0),
        "specific_humidity_700": source("hus", dates, 70000.0),
        "total_precipitation": source("pr", dates) * np.float32(3.6),  # kg m-2 s-1 x 3600 s / 1000 kg m-3
    }
    for name, want in expected.items():
        got, times = stored(gregorian_store, name)
        assert got.shape == (40, 12, 24), name
        for t, i, j in [(0, 0, 0), (17, 5, 11), (39, 11, 23)]:  # both files of each variable
            assert got[t, i, j] == pytest.approx(float(want[t, i, j]), rel=1e-6), (name, t, i, j)
    assert times[0] == np.datetime64("1979-01-01T06") and times[-1] == np.datetime64("1979-01-11T00")
    zg = stored(gregorian_store, "geopotential_500")[0][3, 2, 1]
    assert zg / G == pytest.approx(float(source("zg", dates, 50000.0)[3, 2, 1]), rel=1e-6)
    assert 4e4 < zg < 6e4  # m**2 s**-2 at 500 hPa, not metres


def test_a_factor_for_a_converted_cmip6_field_is_refused(gregorian, tmp_path):
    with pytest.raises(ConfigError, match=r"--scale geopotential=9.80665 .*zg.*leave the factor out"):
        prepare(config(gregorian, ["geopotential_500"], scales={"geopotential": G}), tmp_path / "s")
    assert not (tmp_path / "s").exists() and not (tmp_path / "s.partial").exists()


def test_noleap_is_taken_by_calendar_date_and_its_missing_29_february_skipped(tmp_path):
    dates = stamps((1980, 2, 27, 0), 16, calendar="noleap")  # 27 Feb .. 2 Mar 1980, no 29 Feb
    for var in ("tas", "zg"):
        write(tmp_path / "in", var, dates)
    out = prepare(config(tmp_path / "in", ["2m_temperature"], "1980-02-01:1980-03-31"), tmp_path / "s")
    manifest = ShardStore(out).manifest
    assert manifest["calendar"] == "noleap"
    assert manifest["missing_times"] == {"train": [f"1980-02-29T{h:02d}" for h in (0, 6, 12, 18)]}
    got, times = stored(out, "2m_temperature")
    march = times.tolist().index(np.datetime64("1980-03-01T00"))
    assert march == 8 and np.allclose(got[march], source("tas", dates)[8], rtol=1e-6)
    assert times[-1] == np.datetime64("1980-03-02T18")


def test_360_day_is_refused_naming_file_date_and_option_then_dropped_when_asked(tmp_path):
    dates = stamps((1979, 1, 29, 0), 4 * 33, calendar="360_day")  # 29 Jan .. 1 Mar: 30 Jan, 29/30 Feb
    path = write(tmp_path / "in", "tas", dates)
    with pytest.raises(DataError) as err:
        prepare(config(tmp_path / "in", ["2m_temperature"], "1979"), tmp_path / "s")
    assert all(s in str(err.value) for s in (path, "1979-02-29 00:00:00", "360_day", "--calendar-dates drop"))
    assert not (tmp_path / "s").exists() and not (tmp_path / "s.partial").exists()

    out = prepare(config(tmp_path / "in", ["2m_temperature"], "1979", calendar_dates="drop"), tmp_path / "s")
    manifest = ShardStore(out).manifest
    assert manifest["calendar"] == "360_day" and manifest["calendar_dates_dropped"] == 8  # 29, 30 Feb x 4 steps
    assert manifest["missing_times"]["train"] == [f"1979-01-31T{h:02d}" for h in (0, 6, 12, 18)]
    got, times = stored(out, "2m_temperature")
    assert got.shape[0] == 4 * 33 - 8
    kept = [k for k, d in enumerate(dates) if not (d.month == 2 and d.day > 28)]
    assert [str(t)[:13] for t in times] == [dates[k].strftime("%Y-%m-%dT%H") for k in kept]
    assert np.allclose(got, source("tas", dates)[kept], rtol=1e-6)


def test_sources_of_different_calendars_are_refused(tmp_path):
    write(tmp_path / "in", "tas", stamps((1979, 1, 1, 0), 4, calendar="noleap"))
    write(tmp_path / "in", "ta", stamps((1979, 1, 1, 0), 4, calendar="360_day"))
    with pytest.raises(
        DataError, match="uses the (noleap|360_day) calendar but .* calendar; prepare them apart"
    ) as err:
        prepare(config(tmp_path / "in", ["2m_temperature"]), tmp_path / "s")
    assert "/tas_" in str(err.value) and "/ta_" in str(err.value)


def test_cli_prepares_a_regional_grid_of_360_day_files_with_dropped_dates(tmp_path, capsys):
    from physicsnemo_climax.cli import main

    dates = stamps((1979, 2, 27, 0), 20, calendar="360_day")  # 27 Feb .. 1 Mar
    write(tmp_path / "in", "tas", dates)
    write(tmp_path / "in", "zg", dates)
    out = tmp_path / "s"
    argv = ["data", "prepare", str(tmp_path / "in" / "*.nc"), "--out", str(out), "--train", "1979"]
    argv += ["--variables", "2m_temperature,geopotential_500", "--grid", "15", "--region", "30", "60", "-15", "30"]
    main([*argv, "--calendar-dates", "drop", "--shards-per-year", "1"])
    assert f"wrote {out} (360_day calendar, 8 dates dropped)" in capsys.readouterr().out
    manifest = ShardStore(out).manifest
    assert manifest["calendar"] == "360_day" and manifest["calendar_dates_dropped"] == 8
    assert (manifest["grid_kind"], manifest["spacing"], manifest["region"]) == ("regular", 15.0, [30, 60, -15, 30])
    assert np.allclose(ShardStore(out).lat, [37.5, 52.5]) and np.allclose(ShardStore(out).lon, [-15, 0, 15, 30])
    times = ShardStore(out).shard_times("train")[0]
    assert times.size == 12 and times[8] == np.datetime64("1979-03-01T00")  # 28 Feb, then 1 Mar


def test_a_cmor_field_without_units_is_in_the_units_cmip6_prescribes(tmp_path):
    import xarray as xr

    dates = stamps((1979, 1, 1, 0), 4)
    path = write(tmp_path / "raw", "zg", dates)
    with xr.open_dataset(path) as ds:
        bare = ds.load()
    del bare.zg.attrs["units"]
    bare.to_netcdf(tmp_path / "zg_bare.nc")
    out = prepare(config(tmp_path, ["geopotential_500"], "1979"), tmp_path / "s")
    assert ShardStore(out).manifest["units"]["geopotential_500"] == "m**2 s**-2"
    assert np.allclose(stored(out, "geopotential_500")[0], source("zg", dates, 50000.0) * G, rtol=1e-6)


def test_other_cmor_units_convert_or_are_refused_by_name():
    from physicsnemo_climax.data.cmip6 import to_climax_units
    from physicsnemo_climax.errors import InputError

    assert to_climax_units("land_sea_mask", "sftlf", "%", "f.nc", {}) == (pytest.approx(0.01), 0.0, "(0 - 1)")
    assert to_climax_units("geopotential_500", "zg", "km", "f.nc", {})[0] == pytest.approx(9806.65)
    with pytest.raises(InputError, match="f.nc: total_precipitation is in mm day-1.*cannot be converted"):
        to_climax_units("total_precipitation", "pr", "mm day-1", "f.nc", {})


def test_standard_and_proleptic_gregorian_sources_are_one_calendar(tmp_path):
    dates = stamps((1979, 1, 1, 0), 4, calendar="standard")
    write(tmp_path / "in", "tas", dates)  # decoded to numpy times; the file says "standard"
    write(tmp_path / "in", "ta", stamps((1979, 1, 1, 0), 4))  # proleptic_gregorian, read first
    out = prepare(config(tmp_path / "in", ["2m_temperature", "temperature_850"], "1979"), tmp_path / "s")
    assert ShardStore(out).manifest["calendar"] == "proleptic_gregorian"
    assert np.allclose(stored(out, "2m_temperature")[0], source("tas", dates), rtol=1e-6)


def test_one_level_as_a_variable_of_its_own_zg500(tmp_path):
    dates = stamps((1979, 1, 1, 0), 8)
    path = write(tmp_path / "in", "zg", dates, alone=500)  # 6hrPlevPt's zg500, plev a scalar
    write(tmp_path / "in", "ta", dates)
    assert "zg500_6hrPlevPt" in path
    variables = ["geopotential_500", "temperature_850", "temperature_500"]
    out = prepare(config(tmp_path / "in", variables, "1979"), tmp_path / "s")
    assert ShardStore(out).manifest["units"]["geopotential_500"] == "m**2 s**-2"
    assert np.allclose(stored(out, "geopotential_500")[0], source("zg", dates, 50000.0) * G, rtol=1e-6)
    assert np.allclose(stored(out, "temperature_500")[0], source("ta", dates, 50000.0), rtol=1e-6)


def test_a_model_year_numpy_cannot_hold_is_refused_naming_it(tmp_path):
    write(tmp_path / "in", "tas", stamps((1, 1, 1, 0), 4, calendar="noleap"))  # a piControl's year 1
    with pytest.raises(DataError, match=r"tas_.*: the time 0001-01-01 00:00:00 is outside 1678..2262"):
        prepare(config(tmp_path / "in", ["2m_temperature"], "1979"), tmp_path / "s")
