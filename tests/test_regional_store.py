# SPDX-License-Identifier: Apache-2.0
"""A store on a regional grid of its own (a CDS box crossing 0 deg), end to end: training,
evaluation, the forecast API and CLI, Earth2Studio, and ``init=`` from a global run."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from era5_files import smooth, write_era5

from physicsnemo_climax.config import load_config, load_run_config
from physicsnemo_climax.data import PrepareConfig, ShardStore, prepare
from physicsnemo_climax.engine import checkpointing
from physicsnemo_climax.forecasting import Run, evaluate, forecast
from physicsnemo_climax.tasks import train

VARS = ["2m_temperature", "temperature_850", "land_sea_mask"]
BOX_LAT = np.arange(57.5, 39.9, -2.5)  # 8 rows, north to south as the CDS delivers them
BOX_LON = np.arange(-10.0, 30.0, 2.5)  # 16 columns across the prime meridian


def cds_year(folder, year: int):
    """One year of 6-hourly fields in the CDS's 2024+ NetCDF layout on the box."""
    times = pd.date_range(f"{year}-01-01", f"{year}-12-31 18:00", freq="6h").values
    t = np.stack([smooth(times, BOX_LAT, BOX_LON, 4, 10.0, 260.0)], 1)
    lsm = (np.cos(np.deg2rad(BOX_LON))[None, :] * np.ones((8, 1)) > 0.99).astype(np.float32)
    ds = xr.Dataset(
        {
            "t2m": (("valid_time", "latitude", "longitude"), smooth(times, BOX_LAT, BOX_LON, 1, 12.0, 280.0)),
            "t": (("valid_time", "pressure_level", "latitude", "longitude"), t),
            "lsm": (("latitude", "longitude"), lsm),
        },
        coords={"valid_time": times, "pressure_level": [850.0], "latitude": BOX_LAT, "longitude": BOX_LON, "number": 0},
    )
    path = folder / f"era5_box_{year}.nc"
    ds.to_netcdf(path)
    return str(path)


@pytest.fixture(scope="module")
def box_store(tmp_path_factory):
    raw = tmp_path_factory.mktemp("cds")
    files = [cds_year(raw, y) for y in (2000, 2001)]
    return prepare(
        PrepareConfig(files, VARS, {"train": 2000, "val": 2001, "test": 2001}, grid="native", shards_per_year=2),
        tmp_path_factory.mktemp("s") / "box",
    )


def config(store, run_dir, *overrides):
    return load_config(
        [
            f"data.root={store}",
            f"run_dir={run_dir}",
            "model.embed_dim=32",
            "model.depth=1",
            "model.num_heads=4",
            "train.batch_size=8",
            "train.steps=4",
            "train.warmup_steps=1",
            "train.val_every=4",
            "train.ckpt_every=4",
            "train.progress=false",
            "train.num_workers=0",
            "task=finetune_global",
            "task.lead_hours=12",
            *overrides,
        ]
    )


def test_the_box_store_keeps_its_grid(box_store):
    store = ShardStore(box_store)
    assert np.array_equal(store.lat, BOX_LAT[::-1]) and np.array_equal(store.lon, BOX_LON)
    assert store.grid == (8, 16) and store.manifest["grid_kind"] == "native"


def test_a_regional_store_end_to_end(box_store, tmp_path, capsys):
    run_dir = train(config(box_store, tmp_path / "run"))
    run = Run.load(run_dir)
    assert list(run.model.img_size) == [8, 16]
    assert np.allclose(run.model.lat, BOX_LAT[::-1]) and np.allclose(run.model.lon, BOX_LON)
    info = json.loads((run_dir / "run.json").read_text())
    assert info["lat"] == BOX_LAT[::-1].tolist()

    table = evaluate(load_run_config(run_dir, ["eval.leads=[12,24]", "eval.max_samples=4", "eval.batch_size=4"]))
    assert set(table.method) == {"model", "persistence", "climatology"} and np.isfinite(table.rmse).all()
    # the box is scored as the run's region, never as "global"; only regions it overlaps are listed
    assert "run_region" in set(table.region) and "global" not in set(table.region)
    skipped = json.loads((run_dir / "eval" / "scorecard.json").read_text())["skipped_regions"]
    assert "global" in skipped and "tropics" not in skipped and "ausnz" not in skipped

    store = ShardStore(box_store)
    shard = store.shards("test")[0]
    ic = xr.Dataset(
        {v: (("lat", "lon"), np.asarray(shard.array(v))[0, 0]) for v in VARS},
        coords={"lat": store.lat, "lon": store.lon, "time": np.datetime64("2001-01-01T00")},
    )
    out = forecast(run, ic, ["12h", "24h"], assume_units="run")  # the store's files (and this IC) carry no units
    assert out["temperature_850"].shape == (1, 2, 8, 16)
    assert np.array_equal(out.lon.values, BOX_LON)

    from physicsnemo_climax.cli import main

    ic.to_netcdf(tmp_path / "ic.nc")
    main(
        [
            "forecast",
            "--checkpoint",
            str(run_dir),
            "--input",
            str(tmp_path / "ic.nc"),
            "--lead",
            "12h",
            "--output",
            str(tmp_path / "out.nc"),
            "--assume-units",
            "run",
        ]
    )
    with xr.open_dataset(tmp_path / "out.nc") as written:
        assert np.allclose(written["2m_temperature"].values, out["2m_temperature"].values[:, :1], rtol=1e-6)

    from physicsnemo_climax.earth2studio import ClimaXPrognostic

    px = ClimaXPrognostic.from_run(run_dir)
    coords = px.input_coords()
    assert np.array_equal(coords["lat"], store.lat) and np.array_equal(coords["lon"], BOX_LON)
    coords["batch"] = np.array([0])
    dynamic = np.stack([ic[v].values for v in px.dynamic])
    x = __import__("torch").as_tensor(dynamic[None, None])
    stepped, after = px(x, coords)
    assert stepped.shape == x.shape and after["lead_time"][0] == np.timedelta64(12, "h")
    assert np.allclose(stepped[0, 0].numpy(), np.stack([out[v].values[0, 0] for v in px.dynamic]), rtol=1e-5)


def test_init_from_a_global_run_resamples_the_positional_embedding(box_store, tmp_path, caplog):
    files = write_era5(tmp_path / "global_raw", years=(2000, 2001), h=16, w=32)
    global_store = prepare(
        PrepareConfig(
            files, ["2m_temperature", "temperature_850"], {"train": 2000, "val": 2001}, grid=(16, 32), shards_per_year=2
        ),
        tmp_path / "global",
    )
    source = train(config(global_store, tmp_path / "global_run", "train.steps=2"))
    weights = checkpointing.model_file(source / "checkpoints")
    with caplog.at_level(logging.INFO):
        regional = train(config(box_store, tmp_path / "regional", f"init={weights}", "train.steps=1"))
    assert any("resampling pos_embed" in r.message and "(8, 16) to (4, 8)" in r.message for r in caplog.records)
    assert list(Run.load(regional).model.pos_embed.shape) == [1, 32, 32]
