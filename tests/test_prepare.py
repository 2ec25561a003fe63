# SPDX-License-Identifier: Apache-2.0
"""``prepare``: files -> store; statistics; both layouts load; bad input."""

import hashlib
import json

import numpy as np
import pytest
from era5_files import write_cmip6, write_era5

from physicsnemo_climax.data import PrepareConfig, ShardStore, StoreError, prepare
from physicsnemo_climax.data import preparation as prepare_module
from physicsnemo_climax.data.regrid import regrid_weights
from physicsnemo_climax.data.store import npz_member, write_npz
from physicsnemo_climax.files import sha256
from physicsnemo_climax.grid import regular_grid

VARS = ["2m_temperature", "geopotential_500", "temperature_850", "land_sea_mask", "lattitude"]


def config(inputs, **kw):
    args = dict(inputs=inputs, variables=VARS, splits={"train": 2000, "test": 2001}, grid=(4, 8), shards_per_year=3)
    args.update(kw)
    return PrepareConfig(**args)


@pytest.fixture(scope="module")
def era5(tmp_path_factory):
    return write_era5(tmp_path_factory.mktemp("era5"))


@pytest.fixture(scope="module")
def store(era5, tmp_path_factory):
    return prepare(config(era5), tmp_path_factory.mktemp("out") / "store")


def all_train(store_path, var):
    st = ShardStore(store_path)
    return np.concatenate([np.asarray(s.array(var))[:, 0] for s in st.shards("train")])


def test_layout_and_manifest(store):
    st = ShardStore(store)
    assert st.hours_per_step == 6 and st.variables() == VARS
    assert st.grid == (4, 8)
    assert np.allclose(st.lat, regular_grid((4, 8))[0])
    shards = st.shards("train")
    assert [s.path.name for s in shards] == ["2000_0.npz", "2000_1.npz", "2000_2.npz"]
    assert sum(s.steps for s in shards) == 366 * 4  # 2000 is a leap year, 6-hourly
    assert np.asarray(shards[0].array("geopotential_500")).shape == (shards[0].steps, 1, 4, 8)
    manifest = json.loads((store / "store.json").read_text())
    assert manifest["splits"] == {"train": [["2000-01-01", "2001-01-01"]], "test": [["2001-01-01", "2002-01-01"]]}
    assert not list(store.glob("*/.*"))  # no markers or temporaries left


def test_values_are_the_regridded_source(store, era5):
    import xarray as xr

    src = xr.open_dataset(era5[0])
    w_lat, w_lon = regrid_weights(src.latitude.values, src.longitude.values, *regular_grid((4, 8)))
    raw = src.z.sel(level=500).values[:5]
    want = np.einsum("ij,tjl,kl->tik", w_lat, raw, w_lon)
    got = np.asarray(ShardStore(store).shards("train")[0].array("geopotential_500"))[:5, 0]
    assert np.allclose(got, want, rtol=1e-6)
    lat_field = np.asarray(ShardStore(store).shards("test")[1].array("lattitude"))[0, 0]
    assert np.allclose(lat_field, regular_grid((4, 8))[0][:, None])


def test_statistics_equal_direct_numpy(store):
    st = ShardStore(store)
    names = ["2m_temperature", "geopotential_500", "land_sea_mask"]
    mean, std = st.statistics(names)
    for i, var in enumerate(names):
        values = all_train(store, var).astype(np.float64)
        assert mean[i] == pytest.approx(values.mean(), rel=1e-9)
        assert std[i] == pytest.approx(values.std(), rel=1e-7)


def test_climatology_equals_direct_time_mean(store):
    st = ShardStore(store)
    clim = st.climatology("test", ["temperature_850"])[0]
    values = np.concatenate([np.asarray(s.array("temperature_850"))[:, 0] for s in st.shards("test")])
    assert np.allclose(clim, values.astype(np.float64).mean(0), rtol=1e-6)


def test_day_of_year_climatology(era5, tmp_path):
    out = prepare(
        config(era5, variables=["2m_temperature"], day_of_year_climatology=True, splits={"train": "2000-2001"}),
        tmp_path / "s",
    )
    doy = np.load(out / "train" / "climatology_doy.npz")["2m_temperature"]
    assert doy.shape == (366, 1, 4, 8)
    values = np.concatenate([np.asarray(s.array("2m_temperature"))[:, 0] for s in ShardStore(out).shards("train")])
    # 1 January: the first 4 steps of 2000 and the first 4 of 2001 (2000 has 366 days)
    jan1 = np.concatenate([values[:4], values[366 * 4 : 366 * 4 + 4]])
    assert np.allclose(doy[0, 0], jan1.astype(np.float64).mean(0), rtol=1e-6)
    assert np.isfinite(doy[365]).all()  # 31 Dec 2000 (leap) is day 366


@pytest.mark.parametrize("descending, lon180", [(True, False), (False, True), (True, True)])
def test_latitude_order_and_longitude_convention(tmp_path, store, descending, lon180):
    files = write_era5(tmp_path / "in", years=(2000,), descending=descending, lon180=lon180)
    out = prepare(config(files, splits={"train": 2000}), tmp_path / "s")
    a = np.asarray(ShardStore(out).shards("train")[1].array("geopotential_500"))
    b = np.asarray(ShardStore(store).shards("train")[1].array("geopotential_500"))
    assert np.allclose(a, b, rtol=1e-5, atol=1e-2)


def test_cmip6_names_and_pascal_levels(tmp_path):
    path = write_cmip6(tmp_path / "cmip")
    out = prepare(
        PrepareConfig([path], ["temperature_850", "temperature_500"], {"train": 2000}, grid=(4, 8), shards_per_year=1),
        tmp_path / "s",
    )
    assert ShardStore(out).shards("train")[0].steps == 31 * 4


def test_restart_after_interruption(era5, tmp_path, monkeypatch, store):
    out = tmp_path / "store"
    original = prepare_module.Preparer._year
    calls = []

    def failing(self, split, year, *args):
        calls.append(year)
        if year == 2001 and len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, split, year, *args)

    monkeypatch.setattr(prepare_module.Preparer, "_year", failing)
    with pytest.raises(KeyboardInterrupt):
        prepare(config(era5), out)
    assert not out.exists()
    with pytest.raises(StoreError, match="unfinished preparation"):
        ShardStore(out)
    # a restart with another configuration is refused, naming the difference
    with pytest.raises(StoreError, match="hours_per_step"):
        prepare(config(era5, hours_per_step=12), out)
    prepare(config(era5), out)  # resumes: 2000 reused from its marker
    for var in ("geopotential_500", "lattitude"):
        assert np.array_equal(all_train(out, var), all_train(store, var))
    a, b = ShardStore(out).statistics(VARS), ShardStore(store).statistics(VARS)
    assert np.allclose(a[0], b[0], rtol=1e-12) and np.allclose(a[1], b[1], rtol=1e-12)


def test_official_layout_loads(tmp_path):
    root = tmp_path / "official"
    (root / "train").mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = ["2m_temperature", "geopotential_500"]
    for i in range(2):
        np.savez(
            root / "train" / f"1979_{i}.npz", **{v: rng.normal(size=(10, 1, 4, 8)).astype(np.float32) for v in names}
        )
    np.savez(root / "train" / "climatology.npz", **{v: np.zeros((1, 4, 8)) for v in names})
    np.savez(root / "normalize_mean.npz", **{v: np.array([1.0]) for v in names})
    np.savez(root / "normalize_std.npz", **{v: np.array([2.0]) for v in names})
    np.save(root / "lat.npy", regular_grid((4, 8))[0])
    np.save(root / "lon.npy", regular_grid((4, 8))[1])
    st = ShardStore(root)
    assert st.hours_per_step == 1.0 and st.variables() == names
    assert [s.steps for s in st.shards("train")] == [10, 10]
    arr = st.shards("train")[1].array("geopotential_500")
    assert isinstance(arr, np.memmap)
    assert np.array_equal(arr, np.load(root / "train" / "1979_1.npz")["geopotential_500"])
    # compressed shards load too (read whole)
    np.savez_compressed(root / "train" / "1979_2.npz", **{v: np.ones((3, 1, 4, 8)) for v in names})
    assert np.array_equal(ShardStore(root).shards("train")[2].array("2m_temperature"), np.ones((3, 1, 4, 8)))


# ------------------------------------------------------------------ bad input
def test_missing_variable_and_level_are_named(era5, tmp_path):
    with pytest.raises(KeyError, match="specific_humidity_500"):
        prepare(config(era5, variables=["specific_humidity_500"]), tmp_path / "a")
    with pytest.raises(KeyError, match=r"era5_2000.nc.*no level 700"):
        prepare(config(era5, variables=["geopotential_700"]), tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "a.partial").exists()


def test_grids_differing_between_files(tmp_path):
    a = write_era5(tmp_path / "a", years=(2000,))
    b = write_era5(tmp_path / "b", years=(2001,), h=6, w=12)
    with pytest.raises(ValueError, match="grids differ"):
        prepare(config([a[0], b[0]]), tmp_path / "s")


def test_nan_is_an_error_naming_variable_and_time_unless_filled(tmp_path):
    files = write_era5(tmp_path / "in", years=(2000,), nan_at=(2000, 7))
    with pytest.raises(ValueError, match=r"NaN in variable 2m_temperature at time 2000-01-02T18"):
        prepare(config(files, splits={"train": 2000}), tmp_path / "s")
    out = prepare(config(files, splits={"train": 2000}, nan_policy="fill"), tmp_path / "t")
    assert np.isfinite(all_train(out, "2m_temperature")).all()


def test_corrupt_and_truncated_shards_are_named(store, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(store, copy)
    shard = copy / "train" / "2000_1.npz"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(StoreError, match="2000_1.npz"):
        ShardStore(copy).shards("train")
    shard.write_bytes(b"not a zip at all")
    with pytest.raises(StoreError, match="2000_1.npz"):
        ShardStore(copy).shards("train")


def test_missing_statistics_and_other_variables(store, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(store, copy)
    (copy / "normalize_std.npz").unlink()
    with pytest.raises(StoreError, match="climax data prepare"):
        ShardStore(copy).statistics(["2m_temperature"])
    with pytest.raises(StoreError, match=r"\['specific_humidity_850'\] are not in the store"):
        ShardStore(store).check_variables(["2m_temperature", "specific_humidity_850"])


def test_bad_config():
    with pytest.raises(ValueError, match="train"):
        PrepareConfig(["x"], ["a"], {"test": 2000})
    with pytest.raises(ValueError, match="nan_policy"):
        PrepareConfig(["x"], ["a"], {"train": 2000}, nan_policy="ignore")
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        prepare(PrepareConfig(["/nothing_here/*.nc"], ["a"], {"train": 2000}), "/tmp/never")


def test_compute_statistics_reproduces_prepare(store, tmp_path):
    import shutil

    from physicsnemo_climax.data.preparation import compute_statistics

    copy = tmp_path / "copy"
    shutil.copytree(store, copy)
    for f in [copy / "normalize_mean.npz", copy / "normalize_std.npz", copy / "test" / "climatology.npz"]:
        f.unlink()
    compute_statistics(copy)
    for name in ["normalize_mean.npz", "normalize_std.npz", "test/climatology.npz", "train/climatology.npz"]:
        a, b = np.load(copy / name), np.load(store / name)
        for v in VARS:
            assert np.allclose(a[v], b[v], rtol=1e-10), (name, v)


def test_cli_prepare_and_stats(era5, tmp_path, capsys):
    from physicsnemo_climax.cli import main

    out = tmp_path / "cli_store"
    main(
        [
            "data",
            "prepare",
            *era5,
            "--out",
            str(out),
            "--variables",
            "2m_temperature,geopotential_500",
            "--train",
            "2000",
            "--test",
            "2001",
            "--grid",
            "4",
            "8",
            "--shards-per-year",
            "2",
            "--day-of-year",
        ]
    )
    assert ShardStore(out).variables() == ["2m_temperature", "geopotential_500"]
    assert (out / "test" / "climatology_doy.npz").exists()
    before = np.load(out / "normalize_std.npz")["geopotential_500"].copy()
    doy = np.load(out / "test" / "climatology_doy.npz")["2m_temperature"].copy()
    (out / "normalize_std.npz").unlink()
    (out / "test" / "climatology_doy.npz").unlink()
    main(["data", "stats", str(out), "--day-of-year"])
    assert np.allclose(np.load(out / "normalize_std.npz")["geopotential_500"], before, rtol=1e-10)
    again = np.load(out / "test" / "climatology_doy.npz")["2m_temperature"]
    assert np.allclose(again, doy, rtol=1e-6, equal_nan=True)
    assert "wrote statistics" in capsys.readouterr().out


def test_date_range_splits_within_a_year(era5, tmp_path):
    from physicsnemo_climax.data.preparation import parse_periods

    assert parse_periods("2000-11-01:2001-01-31") == [["2000-11-01", "2001-01-01"], ["2001-01-01", "2001-02-01"]]
    assert parse_periods([1999, "2000-2001"])[0] == ["1999-01-01", "2000-01-01"]
    out = prepare(
        config(
            era5,
            variables=["2m_temperature"],
            shards_per_year=1,
            day_of_year_climatology=True,
            splits={"train": "2000-01-01:2000-09-30", "test": "2000-10-01:2000-12-31"},
        ),
        tmp_path / "s",
    )
    st = ShardStore(out)
    assert st.shards("train")[0].steps == 274 * 4 and st.shards("test")[0].steps == 92 * 4
    doy = np.load(out / "test" / "climatology_doy.npz")["2m_temperature"]
    assert np.isnan(doy[0]).all() and np.isfinite(doy[274]).all()  # 1 Oct 2000 is day 275
    from physicsnemo_climax.data.preparation import compute_statistics

    (out / "test" / "climatology_doy.npz").unlink()
    compute_statistics(out, day_of_year=True)
    again = np.load(out / "test" / "climatology_doy.npz")["2m_temperature"]
    assert np.allclose(again, doy, equal_nan=True, rtol=1e-6)
    with pytest.raises(ValueError, match="one period per calendar year"):
        config(era5, splits={"train": ["2000-01-01:2000-02-01", "2000-03-01:2000-04-01"]})


# ---------------------------------------------------------------- shards hashed as they are written
def savez_and_write_npz(tmp_path, arrays, monkeypatch):
    """The bytes of ``np.savez`` and of :func:`write_npz` for ``arrays`` (zip times fixed), and
    the digest write_npz returned."""
    import time
    import types
    import zipfile

    fixed = time.time()
    monkeypatch.setattr(zipfile, "time", types.SimpleNamespace(time=lambda: fixed, localtime=time.localtime))
    np.savez(tmp_path / "savez.npz", **arrays)
    digest = write_npz(tmp_path / "written.npz", arrays)
    return (tmp_path / "savez.npz").read_bytes(), (tmp_path / "written.npz").read_bytes(), digest


ARRAYS = {
    "field": np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 1, 3, 4),
    "scalar": np.float64(3.5),
    "empty": np.zeros((0, 2)),
    "strided": np.arange(24.0).reshape(4, 6)[:, ::2],
    "fortran": np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3)),
}


def test_write_npz_writes_np_savez_bytes_and_their_sha256(tmp_path, monkeypatch):
    savez, written, digest = savez_and_write_npz(tmp_path, ARRAYS, monkeypatch)
    assert written == savez
    assert digest == sha256(tmp_path / "written.npz") == hashlib.sha256(written).hexdigest()
    with np.load(tmp_path / "written.npz") as loaded:
        assert all(np.array_equal(loaded[k], v) for k, v in ARRAYS.items())
    member = npz_member(tmp_path / "written.npz", "field", shape=(2, 1, 3, 4))  # the store's reader: memory-mapped
    assert np.array_equal(member, ARRAYS["field"])


def test_write_npz_with_zip64_records_hashes_them_too(tmp_path, monkeypatch):
    import zipfile

    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 64)  # sizes and offsets past it: zip64 fields and end records
    savez, written, digest = savez_and_write_npz(tmp_path, ARRAYS, monkeypatch)
    assert b"PK\x06\x06" in written  # the zip64 end of central directory
    assert written == savez and digest == hashlib.sha256(written).hexdigest()


def test_write_npz_refuses_objects_and_rewrites_of_hashed_bytes(tmp_path):
    import io
    from concurrent.futures import ThreadPoolExecutor

    from physicsnemo_climax.data.store import _HashedOutput

    with pytest.raises(StoreError, match="objects.npz: member x holds Python objects"):
        write_npz(tmp_path / "objects.npz", {"x": np.array([{}, None])})
    with ThreadPoolExecutor(1) as hasher:
        out = _HashedOutput(io.BytesIO(), hasher)
        out.write(b"header")
        out.seek(0)
        out.write(b"HEAD")  # not hashed yet: rewritten
        out.seek(0, 2)
        out.hash_written()
        assert out.hexdigest() == hashlib.sha256(b"HEADer").hexdigest()
        out.seek(0)
        with pytest.raises(RuntimeError, match="already hashed"):
            out.write(b"h")


def test_prepared_checksums_are_the_shards_sha256(store):
    manifest = json.loads((store / "store.json").read_text())
    shards = sorted(p.relative_to(store).as_posix() for p in store.glob("*/[0-9]*.npz"))
    assert sorted(manifest["checksums"]) == shards
    assert all(manifest["checksums"][name] == sha256(store / name) for name in shards)
