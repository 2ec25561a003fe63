# SPDX-License-Identifier: Apache-2.0
"""ERA5 as delivered: every CDS layout, GRIB, WeatherBench 2 and ARCO Zarr, local and over
fsspec URLs, prepared into equal stores; native and regional grids; bad input named."""

from __future__ import annotations

import functools
import http.server
import threading

import numpy as np
import pytest
import xarray as xr
from delivered_files import (
    ARCO_LAT,
    LAT,
    LON,
    TIMES,
    WB2_LAT,
    arco_dataset,
    cds_grib,
    cds_netcdf,
    cds_netcdf_old,
    fields,
    grib_message,
    packing_step,
    wb2_dataset,
    write_zarr,
)

from physicsnemo_climax.data import PrepareConfig, ShardStore, prepare, sources
from physicsnemo_climax.data.formats import open_parts
from physicsnemo_climax.data.preparation import parse_periods
from physicsnemo_climax.data.sources import Catalogue
from physicsnemo_climax.errors import DataError

VARIABLES = ["2m_temperature", "temperature_850", "temperature_500"]
SPLITS = {"train": "2000-01-01:2000-01-01", "val": "2000-01-02/2000-01-02"}


@pytest.fixture(autouse=True)
def grib_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIMAX_CACHE", str(tmp_path / "cache"))


def build(inputs, out, grid="native", **kw) -> ShardStore:
    config = PrepareConfig(
        inputs=[str(i) for i in inputs], variables=kw.pop("variables", VARIABLES), splits=SPLITS, grid=grid, **kw
    )
    return ShardStore(prepare(config, out))


def values(store: ShardStore, name: str) -> np.ndarray:
    """Every time of ``name`` in the store, train then val: ``[T, H, W]``."""
    return np.concatenate([np.asarray(s.array(name))[:, 0] for split in ("train", "val") for s in store.shards(split)])


def expected(name: str, lat=LAT, lon=LON) -> np.ndarray:
    f = fields(TIMES, lat, lon)
    a = f["t2m"] if name == "2m_temperature" else f["t"][:, {"850": 0, "500": 1}[name[-3:]]]
    return a


# ---------------------------------------------------------------- the CDS's layouts
def test_cds_netcdf_layouts_and_grib_prepare_to_the_same_store(tmp_path):
    """The 2024+ NetCDF, the older packed NetCDF with ERA5/ERA5T split by expver, and GRIB
    (two level types in one file), on their own regional grid: equal stores, south to north."""
    new = build([cds_netcdf(tmp_path / "new.nc")], tmp_path / "s_new")
    old = build([cds_netcdf_old(tmp_path / "old.nc")], tmp_path / "s_old")
    grib = build([cds_grib(tmp_path / "era5.grib")], tmp_path / "s_grib")
    assert np.array_equal(new.lat, LAT[::-1]) and np.array_equal(new.lon, LON)
    assert new.manifest["grid"] == [8, 16] and new.manifest["grid_kind"] == "native"
    for name in VARIABLES:
        want = expected(name)[:, ::-1]  # the store runs south to north
        assert np.array_equal(values(new, name), want)
        assert np.abs(values(old, name) - want).max() <= packing_step(expected(name)) * 1.01
        assert np.allclose(values(grib, name), want, atol=1e-3)  # 24-bit GRIB packing
    assert np.array_equal(grib.lat, new.lat) and np.array_equal(grib.lon, new.lon)


def test_grib_index_files_go_to_the_cache_never_beside_the_input(tmp_path):
    inputs = tmp_path / "read_only"
    inputs.mkdir()
    cds_grib(inputs / "era5.grib")
    inputs.chmod(0o555)
    try:
        store = build([inputs / "era5.grib"], tmp_path / "store")
    finally:
        inputs.chmod(0o755)
    assert [p.name for p in inputs.iterdir()] == ["era5.grib"]
    assert list((tmp_path / "cache" / "cfgrib").glob("*.idx"))
    assert values(store, "temperature_500").shape == (8, 8, 16)


def write_forecast_grib(path, overlapping: bool):
    """Base times 06 and 18 UTC with steps 1..12 h (ERA5 accumulations: every valid time once),
    or steps 6 and 12 h from every 6 h base time (a forecast: valid times repeat)."""
    f = fields(TIMES)["t2m"]
    bases, steps = (TIMES[:4], (6, 12)) if overlapping else (TIMES[1::2][:2], tuple(range(1, 13)))
    with open(path, "wb") as out:
        for b in bases:
            for s in steps:
                grib_message(out, "2t", "heightAboveGround", 2, b, f[0] + s, step_hours=s)
    return path


def test_grib_accumulations_lie_along_valid_time_and_forecasts_need_a_step(tmp_path):
    acc = open_parts(write_forecast_grib(tmp_path / "acc.grib", overlapping=False))[0]
    stamps = acc.time.values
    assert stamps.size == 24 and np.all(np.diff(stamps) == np.timedelta64(1, "h"))
    assert float(acc.t2m.isel(time=0).mean()) == pytest.approx(float(fields(TIMES)["t2m"][0].mean()) + 1, abs=1e-3)

    forecast = write_forecast_grib(tmp_path / "fc.grib", overlapping=True)
    with pytest.raises(DataError, match=r"fc.grib: a forecast with steps \[6.0, 12.0\] h.*--grib-step 6"):
        open_parts(forecast)
    chosen = open_parts(forecast, grib_step=12)[0]
    assert np.array_equal(chosen.time.values, TIMES[:4] + np.timedelta64(12, "h"))


def test_grib_messages_on_two_grids_are_refused(tmp_path):
    path = tmp_path / "mixed.grib"
    with open(path, "wb") as out:
        grib_message(out, "2t", "heightAboveGround", 2, TIMES[0], fields()["t2m"][0])
        grib_message(out, "t", "isobaricInhPa", 500, TIMES[0], fields(lat=LAT[:4])["t"][0, 0][:4], lat=LAT[:4])
    with pytest.raises(DataError, match="mixed.grib: its GRIB messages are on different grids: lat"):
        Catalogue([str(path)])


# ---------------------------------------------------------------- Zarr over fsspec
@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Zarr stores in the WeatherBench 2 and ARCO layouts, as folders and over http://127.0.0.1."""
    root = tmp_path_factory.mktemp("zarr")
    write_zarr(wb2_dataset(), str(root / "wb2.zarr"))
    write_zarr(arco_dataset(), str(root / "arco.zarr"), time_chunk=1)
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.mark.parametrize("layout", ["wb2", "arco"])
def test_zarr_stores_read_locally_from_memory_and_over_http_give_one_store(tmp_path, served, layout):
    root, url = served
    dataset = {"wb2": wb2_dataset, "arco": arco_dataset}[layout]()
    write_zarr(dataset, f"memory://{layout}-{tmp_path.name}.zarr")
    extra = ["orography", "land_sea_mask"] if layout == "wb2" else []
    kw = dict(variables=VARIABLES + extra, grid=(4, 8))
    local = build([root / f"{layout}.zarr"], tmp_path / "local", **kw)
    memory = build([f"memory://{layout}-{tmp_path.name}.zarr"], tmp_path / "memory", **kw)
    http_ = build([f"{url}/{layout}.zarr"], tmp_path / "http", **kw)
    for name in VARIABLES + extra:
        assert np.array_equal(values(memory, name), values(local, name))
        assert np.array_equal(values(http_, name), values(local, name))
    lat = WB2_LAT if layout == "wb2" else ARCO_LAT
    direct = build([root / f"{layout}.zarr"], tmp_path / "native", variables=VARIABLES)
    assert np.array_equal(
        values(direct, "temperature_500"), expected("temperature_500", lat, direct.lon)[:, np.argsort(lat)]
    )
    if layout == "wb2":  # surface geopotential / g is the orography, in metres
        z = dataset.geopotential_at_surface.transpose("latitude", "longitude").values
        native = build([root / "wb2.zarr"], tmp_path / "wb2_native", variables=["orography", "2m_temperature"])
        assert np.allclose(values(native, "orography")[0], z / 9.80665, rtol=1e-6)
        assert native.manifest["units"]["orography"] == "m"


def test_a_store_that_cannot_be_reached_is_one_line_naming_it(tmp_path):
    with pytest.raises(DataError, match=r"^http://127.0.0.1:9/era5.zarr: cannot be opened as Zarr") as err:
        Catalogue(["http://127.0.0.1:9/era5.zarr"])
    assert "\n" not in str(err.value)


def test_a_remote_store_without_the_variable_or_level_names_it(served):
    root, url = served
    cat = Catalogue([f"{url}/wb2.zarr"])
    with pytest.raises(KeyError, match=r"wb2.zarr: variable 'temperature' has no level 700 hPa"):
        cat.locate("temperature_700")
    with pytest.raises(KeyError, match=r"variable specific_humidity_500 .* is in none of \['http://"):
        cat.locate("specific_humidity_500")


def test_reads_follow_the_source_chunks_and_fetch_each_once(served, monkeypatch):
    root, _ = served
    cat = Catalogue([str(root / "wb2.zarr")])  # time chunks of 3: [0-2] [3-5] [6-7]
    reads = []
    real = sources.read_values
    monkeypatch.setattr(sources, "read_values", lambda da, *args: reads.append(da.time.size) or real(da, *args))
    first = cat.read("2m_temperature", TIMES[1:3])
    second = cat.read("2m_temperature", TIMES[2:5])  # chunk [0-2] again (kept), then [3-5]
    assert reads == [3, 3]
    assert np.array_equal(
        np.concatenate([first, second[1:]]), expected("2m_temperature", WB2_LAT, np.arange(16) * 22.5)[1:5]
    )


def test_levels_read_together_come_laid_out_level_by_level(served):
    """``read_levels`` of a store laid out ``time, level, longitude, latitude`` (WB2): each level
    picked and laid out ``[T, lat, lon]`` as one contiguous block, a chunk kept between calls too."""
    root, _ = served
    cat = Catalogue([str(root / "wb2.zarr")])  # time chunks of 3: [0-2] [3-5] [6-7]
    names = ["temperature_500", "temperature_850"]
    first = cat.read_levels(names, TIMES[1:3])
    second = cat.read_levels(names, TIMES[2:5])  # chunk [0-2] again (kept, its levels picked), then [3-5]
    for k, name in enumerate(names):
        want = expected(name, WB2_LAT, np.arange(16) * 22.5)
        assert np.array_equal(first[:, k], want[1:3]) and np.array_equal(second[:, k], want[2:5])
        assert first[:, k].flags.c_contiguous and second[:, k].flags.c_contiguous


def test_remote_reads_are_retried_local_ones_are_not(served, monkeypatch):
    root, url = served
    monkeypatch.setattr(sources, "BACKOFF_S", 0.0)
    real, failures = sources.read_values, []

    def flaky(da, path, name, *args):
        if len(failures) < 2:
            failures.append(path)
            raise DataError(f"{path}: cannot read variable {name} (connection reset)")
        return real(da, path, name, *args)

    monkeypatch.setattr(sources, "read_values", flaky)
    remote = Catalogue([f"{url}/wb2.zarr"]).read("2m_temperature", TIMES[:2])
    assert len(failures) == 2 and remote.shape == (2, 8, 16)
    failures.clear()
    with pytest.raises(DataError, match="connection reset"):
        Catalogue([str(root / "wb2.zarr")]).read("2m_temperature", TIMES[:2])
    assert len(failures) == 1


# ---------------------------------------------------------------- native and regional grids
@pytest.mark.parametrize("box, first, last", [([40, 55, -10, 20], -10.0, 20.0), ([40, 55, 170, -170], 170.0, 190.0)])
def test_native_regions_crossing_0_or_180_stay_in_one_piece(tmp_path, box, first, last):
    lat, lon = np.arange(60, 30, -2.5), np.arange(0, 360, 2.5)
    times = TIMES[:8]
    ds = xr.Dataset(
        {"t2m": (("time", "latitude", "longitude"), fields(times, lat, lon)["t2m"])},
        coords={"time": times, "latitude": lat, "longitude": lon},
    )
    ds.to_netcdf(tmp_path / "global.nc")
    store = build([tmp_path / "global.nc"], tmp_path / "store", variables=["2m_temperature"], region=box)
    assert store.lon[0] == first and store.lon[-1] == last and np.all(np.diff(store.lon) == 2.5)
    assert store.lat[0] == 40 and store.lat[-1] == 55
    want = fields(times, store.lat, store.lon)["t2m"]  # the analytic field at the kept points
    assert np.allclose(values(store, "2m_temperature"), want, atol=1e-4)


def test_a_region_beyond_the_grid_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"region \[30.0, 50.0, 0.0, 10.0\] reaches beyond the grid"):
        build([cds_netcdf(tmp_path / "box.nc")], tmp_path / "store", region=[30, 50, 0, 10])
    assert not (tmp_path / "store").exists() and not (tmp_path / "store.partial").exists()
    with pytest.raises(ValueError, match="crops the native grid"):
        PrepareConfig(inputs=["x"], variables=VARIABLES, splits=SPLITS, grid=(32, 64), region=[0, 10, 0, 10])


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "text",
    ["2019-3-01:2019-03-24", "2019/2020", "2019-03-01..2019-03-24", "19-20", "2019-03-24:2019-03-01", "2020-2019"],
)
def test_period_typos_show_the_accepted_forms(text):
    with pytest.raises(ValueError, match=rf"period '{text}': .*write it as one of: 2016 \(a year\)"):
        parse_periods(text)


def test_period_forms():
    assert (
        parse_periods("2019-03-01/2019-03-24")
        == parse_periods("2019-03-01:2019-03-24")
        == [["2019-03-01", "2019-03-25"]]
    )
    assert parse_periods("2019-12-31/2020-01-01") == [["2019-12-31", "2020-01-01"], ["2020-01-01", "2020-01-02"]]
    assert parse_periods(["1990-1991", 1995]) == [
        ["1990-01-01", "1991-01-01"],
        ["1991-01-01", "1992-01-01"],
        ["1995-01-01", "1996-01-01"],
    ]


def test_mixed_time_steps_across_files_name_both(tmp_path):
    hourly = xr.Dataset(
        {"t2m": (("time", "lat", "lon"), np.zeros((4, 2, 2), np.float32))},
        coords={"time": TIMES[0] + np.arange(4) * np.timedelta64(1, "h"), "lat": [0, 1], "lon": [0, 1]},
    )
    six = hourly.assign_coords(time=TIMES[4:8])
    hourly.to_netcdf(tmp_path / "a.nc")
    six.to_netcdf(tmp_path / "b.nc")
    with pytest.raises(DataError, match=r"a.nc steps every 1 h but .*b.nc every 6 h; mixed time steps"):
        Catalogue([str(tmp_path / "a.nc"), str(tmp_path / "b.nc")]).times("2m_temperature")


def test_an_ensemble_is_refused_a_single_member_is_not(tmp_path):
    ds = xr.Dataset(
        {"t2m": (("number", "time", "latitude", "longitude"), np.zeros((2, 2, 2, 2), np.float32))},
        coords={"number": [0, 1], "time": TIMES[:2], "latitude": [0, 1], "longitude": [0, 1]},
    )
    ds.to_netcdf(tmp_path / "ens.nc")
    ds.isel(number=[0]).to_netcdf(tmp_path / "one.nc")
    with pytest.raises(DataError, match="ens.nc: an ensemble with 2 members"):
        open_parts(tmp_path / "ens.nc")
    assert open_parts(tmp_path / "one.nc")[0].t2m.dims == ("time", "lat", "lon")


@pytest.mark.parametrize(
    "args, says",
    [
        (["--train", "2019-03-01/2019-3-24"], "period '2019-03-01/2019-3-24': not a year"),
        (["--train", "2000", "--grid", "64"], "--grid 64: give H W"),
        (["--train", "2000", "--storage-option", "anon"], "--storage-option 'anon': write KEY=VALUE"),
    ],
)
def test_the_cli_says_what_is_wrong_in_one_line(tmp_path, capsys, args, says):
    from physicsnemo_climax.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "data",
                "prepare",
                str(cds_netcdf(tmp_path / "a.nc")),
                "--out",
                str(tmp_path / "s"),
                "--variables",
                "2m_temperature",
                *args,
            ]
        )
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and says in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()


def test_the_cli_prepares_an_unreachable_url_as_one_line(tmp_path, capsys):
    from physicsnemo_climax.cli import main

    with pytest.raises(SystemExit):
        main(
            [
                "data",
                "prepare",
                "http://127.0.0.1:9/wb2.zarr",
                "--out",
                str(tmp_path / "s"),
                "--variables",
                "2m_temperature",
                "--train",
                "2000",
            ]
        )
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("climax data: error: http://127.0.0.1:9/wb2.zarr: cannot be opened as Zarr")
