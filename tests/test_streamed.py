# SPDX-License-Identifier: Apache-2.0
"""Training straight from a Zarr store: the side folder, chunked reads over HTTP, the caches,
retries, and a run equal to one on the prepared copy."""

from __future__ import annotations

import functools
import http.server
import threading

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from delivered_files import write_zarr

from physicsnemo_climax.config import load_config, load_run_config
from physicsnemo_climax.data import ClimaXShardReader, PrepareConfig, ShardStore, prepare, sources
from physicsnemo_climax.data.loader import WINDOW, block_order, partition
from physicsnemo_climax.data.streamed import ChunkCache, StreamedStore, open_store, stream_folder
from physicsnemo_climax.engine.run_folder import read_run_record
from physicsnemo_climax.errors import ConfigError, DataError
from physicsnemo_climax.grid import regular_grid
from physicsnemo_climax.tasks import evaluate, train

LEVELS = [250, 500, 850]
VARIABLES = ["2m_temperature", "geopotential_500", "temperature_850", "temperature_250", "orography", "lattitude"]
SPLITS = {"train": "2000-01-01:2000-02-09", "val": "2000-02-10:2000-02-19", "test": "2000-02-20:2000-02-29"}
TIMES = pd.date_range("2000-01-01", "2000-02-29T18", freq="6h").values


def wb2_zarr(target: str, lat_descending: bool = False) -> str:
    """Fields on the 8 x 16 global grid in WeatherBench 2's layout (``time, longitude, latitude``,
    levels inside each chunk, chunks of 10 steps) or, with ``lat_descending``, latitudes north to south."""
    lat, lon = regular_grid((8, 16))
    lat = lat[::-1] if lat_descending else lat
    rng = np.random.default_rng(0)
    t = np.arange(TIMES.size)[:, None, None]
    wave = np.sin(np.deg2rad(lon))[:, None] * np.cos(np.deg2rad(lat))[None, :]
    surface = 280 + 10 * np.sin(t / 9.0) * wave + rng.normal(0, 0.5, (TIMES.size, 16, 8))
    upper = np.stack([200 + 30 * k + 5 * np.cos(t / (7.0 + k)) * wave for k in range(3)], 1)
    ds = xr.Dataset(
        {
            "2m_temperature": (("time", "longitude", "latitude"), surface.astype(np.float32)),
            "temperature": (("time", "level", "longitude", "latitude"), upper.astype(np.float32)),
            "geopotential": (("time", "level", "longitude", "latitude"), (upper * 90).astype(np.float32)),
            "geopotential_at_surface": (("longitude", "latitude"), (1000 * wave**2).astype(np.float32)),
        },
        coords={"time": TIMES, "level": LEVELS, "latitude": lat, "longitude": lon},
    )
    for name in ds.data_vars:
        ds[name].attrs["units"] = "K" if "temperature" in name else "m**2 s**-2"
    return write_zarr(ds, target, time_chunk=10)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The store as a folder and over http://127.0.0.1, with a prepared copy of it."""
    root = tmp_path_factory.mktemp("served")
    wb2_zarr(str(root / "era5.zarr"))
    wb2_zarr(str(root / "north_first.zarr"), lat_descending=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIMAX_CACHE", str(tmp_path / "cache"))


def config(source: str, stream: bool, **kw) -> PrepareConfig:
    return PrepareConfig(
        inputs=[source], variables=VARIABLES, splits=SPLITS, grid="native", stream=stream, shards_per_year=1, **kw
    )


def prepared_pair(source: str, tmp_path) -> tuple[ShardStore, StreamedStore]:
    copy = ShardStore(prepare(config(source, False), tmp_path / "copy"))
    side = prepare(config(source, True), stream_folder(source))
    return copy, open_store(source if "://" in source else side)


# ---------------------------------------------------------------- the side folder
def test_a_side_folder_holds_the_statistics_and_no_shards(served, tmp_path):
    root, url = served
    copy, streamed = prepared_pair(f"{url}/era5.zarr", tmp_path)
    assert isinstance(streamed, StreamedStore) and streamed.root == stream_folder(f"{url}/era5.zarr")
    assert not list(streamed.root.rglob("*_0.npz"))  # no copy of the fields
    for name in VARIABLES:
        assert np.array_equal(streamed.statistics([name])[0], copy.statistics([name])[0])
        assert np.array_equal(streamed.climatology("val", [name]), copy.climatology("val", [name]))
    for split in ("train", "val", "test"):
        assert [s.steps for s in streamed.shards(split)] == [s.steps for s in copy.shards(split)]
        for a, b in zip(streamed.shard_times(split), copy.shard_times(split)):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("layout", ["era5.zarr", "north_first.zarr"])
def test_every_field_reads_as_the_prepared_copy_has_it(served, tmp_path, layout):
    root, url = served
    copy, streamed = prepared_pair(f"{url}/{layout}", tmp_path)
    for split in ("train", "test"):
        for a, b in zip(streamed.shards(split), copy.shards(split)):
            for name in VARIABLES:
                assert np.array_equal(np.asarray(a.array(name)), np.asarray(b.array(name))), (split, name)
            picks = np.array([7, 3, 3, 0])  # gathers, slices and single steps as the readers index
            assert np.array_equal(a.array("temperature_850")[picks, 0], b.array("temperature_850")[picks, 0])
            assert np.array_equal(a.array("geopotential_500")[2:9], b.array("geopotential_500")[2:9])
            assert np.array_equal(a.read(VARIABLES, 5), b.read(VARIABLES, 5))


def test_a_zarr_url_without_its_side_folder_names_the_command(served, monkeypatch):
    root, url = served
    monkeypatch.chdir(root)  # a folder named relatively or absolutely has one side folder
    assert stream_folder("era5.zarr") == stream_folder(root / "era5.zarr") != stream_folder(f"{url}/era5.zarr")
    with pytest.raises(DataError, match=r"era5.zarr: a Zarr store is read where it is .*--stream"):
        open_store(f"{url}/era5.zarr")


def test_streaming_refuses_a_regridded_or_filled_source(served, tmp_path):
    root, _ = served
    with pytest.raises(ConfigError, match=r"--stream .*not the store's: .*--grid native"):
        prepare(
            PrepareConfig([str(root / "era5.zarr")], VARIABLES[:2], SPLITS, grid=(4, 8), stream=True), tmp_path / "a"
        )
    with pytest.raises(ConfigError, match="--nan-policy fill"):
        prepare(config(str(root / "era5.zarr"), True, nan_policy="fill"), tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


# ---------------------------------------------------------------- reading
def test_a_batch_fetches_each_chunk_once_and_a_second_epoch_reads_from_disk(served, tmp_path, monkeypatch):
    _, url = served
    source = f"{url}/era5.zarr"
    prepared_pair(source, tmp_path)
    requests = []
    real = sources.read_values
    monkeypatch.setattr(
        "physicsnemo_climax.data.streamed.read_values",
        lambda da, path, what, *a: requests.append(what) or real(da, path, what, *a),
    )
    reader = ClimaXShardReader(source, "train", variables=VARIABLES, lead_hours=6, chunk_cache_gb=1)
    batch = reader.read_batch(np.arange(0, 12))  # steps 0..12: chunks 0 and 1, both levels of temperature at once
    chunks = [
        f"{v} chunk {c} (time steps {10 * c}..{10 * c + 9})" for v in ("2m_temperature", "temperature") for c in (0, 1)
    ]
    chunks += [f"geopotential chunk {c} (time steps {10 * c}..{10 * c + 9})" for c in (0, 1)]
    assert sorted(requests) == sorted(chunks + ["orography"])  # the constant once, each chunk once
    folder = stream_folder(source) / "chunks" / reader.store.fingerprint[:12]
    on_disk = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.npy"))
    names = ("2m_temperature", "geopotential_500", "temperature_850", "temperature_250")
    assert on_disk == sorted(f"{n}/{c}.npy" for n in names for c in (0, 1))
    requests.clear()
    monkeypatch.setattr("physicsnemo_climax.data.streamed._READERS", {})  # a new process: memory cache empty
    again = ClimaXShardReader(source, "train", variables=VARIABLES, lead_hours=6, chunk_cache_gb=1)
    assert np.array_equal(again.read_batch(np.arange(0, 12))["x"], batch["x"]) and requests == ["orography"]


def test_the_disk_cache_stays_within_its_size_and_removes_only_its_files(tmp_path):
    folder = tmp_path / "chunks"
    (folder / "t2m").mkdir(parents=True)
    mine = np.zeros((10, 8, 16), np.float32)  # 5 120 bytes + the .npy header
    cache = ChunkCache(memory_bytes=0, folder=folder, disk_bytes=3 * (mine.nbytes + 128))
    for c in range(5):
        cache.put(("t2m", c), mine + c)
    assert sorted(p.name for p in (folder / "t2m").iterdir()) == ["2.npy", "3.npy", "4.npy"]
    assert cache.get(("t2m", 0)) is None and np.array_equal(cache.get(("t2m", 4)), mine + 4)


def test_a_failing_request_is_retried_then_named_by_url_and_chunk(served, tmp_path, monkeypatch):
    _, url = served
    source = f"{url}/era5.zarr"
    prepared_pair(source, tmp_path)
    monkeypatch.setattr(sources, "BACKOFF_S", 0.0)
    real, failures = sources.read_values, []

    def flaky(da, path, what, *args):
        if len(failures) < 2 or "chunk 3" in what:
            failures.append(what)
            raise DataError(f"{path}: cannot read variable {what} (connection reset)")
        return real(da, path, what, *args)

    monkeypatch.setattr("physicsnemo_climax.data.streamed.read_values", flaky)
    reader = ClimaXShardReader(source, "train", variables=["2m_temperature"], lead_hours=6)
    assert reader.read_batch([0])["x"].shape == (1, 1, 8, 16) and len(failures) == 2
    with pytest.raises(
        DataError, match=rf"{source}: cannot read variable 2m_temperature chunk 3 \(time steps 30..39\)"
    ):
        reader.read_batch([31])


def test_a_block_shuffle_keeps_each_sample_once_and_mixes_only_nearby_blocks():
    rng = np.random.default_rng(0)
    order = block_order(103, 10, rng)
    assert sorted(order.tolist()) == list(range(103))
    position = np.argsort(order)  # where each sample went
    for b in range(11):  # a block's samples stay within one window of WINDOW blocks
        spread = position[b * 10 : b * 10 + 10]
        assert spread.max() - spread.min() < 10 * WINDOW
    assert not np.array_equal(order, np.arange(103))
    again = partition(103, 0, 1, seed=3, epoch=1, block=10)
    assert np.array_equal(again, partition(103, 0, 1, seed=3, epoch=1, block=10))  # from (seed, epoch) alone
    assert not np.array_equal(again, partition(103, 0, 1, seed=3, epoch=2, block=10))


def test_a_streamed_store_shuffles_by_its_chunk_and_a_copy_sample_by_sample(served, tmp_path):
    _, url = served
    copy, streamed = prepared_pair(f"{url}/era5.zarr", tmp_path)
    assert streamed.chunk_steps == 10 and copy.chunk_steps == 1
    assert ClimaXShardReader(f"{url}/era5.zarr", "train", lead_hours=6).shuffle_block == 10
    assert ClimaXShardReader(copy.root, "train", lead_hours=6).shuffle_block == 1
    assert ClimaXShardReader(copy.root, "train", lead_hours=6, shuffle_block=5).shuffle_block == 5


# ---------------------------------------------------------------- training and what follows
def train_config(root, run_dir, *overrides):
    return load_config(
        [
            f"data.root={root}",
            f"run_dir={run_dir}",
            "task=quickstart",
            "task.lead_range=[6,24]",
            "model.embed_dim=32",
            "model.depth=1",
            "model.num_heads=4",
            "train.batch_size=8",
            "train.steps=8",
            "train.warmup_steps=2",
            "train.val_every=4",
            "train.ckpt_every=4",
            "train.log_every=1",
            "train.progress=false",
            "train.num_workers=2",
            *overrides,
        ]
    )


def losses(run_dir) -> pd.DataFrame:
    rows = pd.read_csv(run_dir / "metrics.csv", names=["step", "key", "value"])
    return rows[rows.key.isin(["train/loss", "val/loss"])].reset_index(drop=True)


def test_training_from_the_served_store_equals_training_from_its_copy_and_evaluates(served, tmp_path):
    _, url = served
    source = f"{url}/era5.zarr"
    copy, streamed = prepared_pair(source, tmp_path)
    # the same chunk-friendly order for both (a streamed store's default, "auto", is its chunk)
    local = train(train_config(copy.root, tmp_path / "run_copy", "data.shuffle_block=10"))
    remote = train(train_config(source, tmp_path / "run_remote", "data.chunk_cache_gb=0.1"))
    a, b = losses(local), losses(remote)
    assert len(a) == 10 and a.key.tolist() == b.key.tolist()  # 8 steps, 2 validations
    assert np.allclose(a.value, b.value, rtol=1e-6, atol=0)
    assert read_run_record(remote).data_root == str(streamed.root.resolve())  # the side folder, as a store
    tables = [
        evaluate(load_run_config(run, ["eval.leads=[6,24]", "eval.max_samples=6", "eval.batch_size=3"]))
        for run in (local, remote)
    ]
    assert np.allclose(tables[0].rmse.to_numpy(), tables[1].rmse.to_numpy(), rtol=1e-5)
