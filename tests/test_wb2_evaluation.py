# SPDX-License-Identifier: Apache-2.0
"""WeatherBench 2's layout in and out: saved forecasts read back as an external
forecast score exactly as the model; missing times and leads are reported;
another grid is regridded; an ensemble is scored as one; a WB2 climatology Zarr
gives the climatology of the training years; ``climax forecast --format wb2``."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from test_recipes import config, store  # noqa: F401 -- the store fixture

from physicsnemo_climax.config import load_run_config
from physicsnemo_climax.data import ShardStore
from physicsnemo_climax.errors import DataError, InputError
from physicsnemo_climax.forecasting import evaluate
from physicsnemo_climax.tasks import train

SCORES = ["rmse", "bias", "mae", "acc"]
COMMON = [
    "eval.leads=[12,24]",
    "eval.max_samples=6",
    "eval.batch_size=4",
    "eval.regions=[global,tropics,northern-hemisphere]",
]


@pytest.fixture(scope="module")
def saved(store, tmp_path_factory):  # noqa: F811
    """A run, its scorecard and its forecasts saved in WB2's layout."""
    tmp = tmp_path_factory.mktemp("wb2")
    run = train(config(store, tmp / "run", "task=finetune_global", "task.lead_hours=12"))
    cfg = load_run_config(run, [*COMMON, "eval.save_forecasts=true"])
    table = evaluate(cfg)
    return run, table, Path(cfg.eval.out_dir) / "forecasts.zarr"


def scored(run, out, *overrides):
    cfg = load_run_config(run, [*COMMON, f"eval.out_dir={out}", *overrides])
    return evaluate(cfg), json.loads((Path(out) / "scorecard.json").read_text())


def test_saved_forecasts_are_in_wb2_layout_with_their_provenance(saved):
    run, _, path = saved
    ds = xr.open_zarr(path)
    assert set(ds.data_vars) == {"2m_temperature", "geopotential", "temperature"}
    assert ds.geopotential.dims == ("time", "prediction_timedelta", "level", "latitude", "longitude")
    # one level axis for all (WB2's): a variable not forecast at a level is NaN there
    assert ds.level.values.tolist() == [500, 850]
    assert ds.geopotential.sel(level=850).isnull().all() and ds.geopotential.sel(level=500).notnull().all()
    assert (np.diff(ds.latitude.values) > 0).all() and ds.longitude.values.min() >= 0
    assert ds.prediction_timedelta.values.tolist() == pd.to_timedelta(["12h", "24h"]).tolist()
    assert ds.sizes["time"] == 6 and ds.time.dtype.kind == "M"
    assert ds.geopotential.attrs == {"long_name": "Geopotential", "units": "m**2 s**-2"}
    assert ds.attrs["run_dir"] == str(Path(run).resolve()) and ds.attrs["checkpoint"].endswith(".mdlus")
    assert len(ds.attrs["checkpoint_sha256"]) == 64


def test_saved_forecasts_read_back_as_external_score_as_the_model(saved, tmp_path):
    run, _, path = saved
    table, card = scored(run, tmp_path / "eval", f"external.again={path}")
    model = table[table.method == "model"].set_index(["region", "variable", "lead_hours"])
    again = table[table.method == "again"].set_index(["region", "variable", "lead_hours"])
    # 3 regions and the land and sea parts of two of them (the store has land_sea_mask)
    assert len(again) == len(model) == 7 * 3 * 2 and "tropics_sea" in set(table.region)
    for score in SCORES:
        assert np.allclose(again[score], model.loc[again.index, score], rtol=1e-5, atol=1e-6), score
    assert (again.samples == 6).all() and card["external"]["again"]["missing"] == {}


def test_missing_times_and_leads_are_reported_and_the_rest_scored(saved, tmp_path):
    run, _, path = saved
    ds = xr.open_zarr(path).load()
    cut = ds.isel(time=slice(2, None)).sel(prediction_timedelta=[np.timedelta64(12, "h")])
    cut.to_zarr(tmp_path / "cut.zarr", zarr_format=2)
    table, card = scored(run, tmp_path / "eval", f"external.cut={tmp_path / 'cut.zarr'}")
    rows = table[(table.method == "cut") & (table.region == "global")]
    assert set(rows.lead_hours) == {12.0} and (rows.samples == 4).all()
    missing = card["external"]["cut"]["missing"]
    assert missing["12"]["missing"] == 2 and missing["24"]["missing"] == 6
    assert "missing 2 at 12 h, 6 at 24 h" in (tmp_path / "eval" / "summary.md").read_text()


def test_an_external_forecast_on_a_finer_grid_is_regridded_conservatively(saved, tmp_path):
    run, _, path = saved
    ds = xr.open_zarr(path).load()
    dlat, dlon = np.diff(ds.latitude.values)[0] / 4, np.diff(ds.longitude.values)[0] / 4
    fine_lat = np.repeat(ds.latitude.values, 2) + np.tile([-dlat, dlat], ds.sizes["latitude"])
    fine_lon = np.repeat(ds.longitude.values, 2) + np.tile([-dlon, dlon], ds.sizes["longitude"])
    twice = {d: np.repeat(np.arange(ds.sizes[d]), 2) for d in ("latitude", "longitude")}
    fine = ds.isel(twice).assign_coords(latitude=fine_lat, longitude=fine_lon)  # each cell's value in 4 quarters
    fine.to_zarr(tmp_path / "fine.zarr", zarr_format=2)
    table, _ = scored(run, tmp_path / "eval", f"external.fine={tmp_path / 'fine.zarr'}")
    model = table[table.method == "model"].set_index(["region", "variable", "lead_hours"]).rmse
    regridded = table[table.method == "fine"].set_index(["region", "variable", "lead_hours"]).rmse
    assert np.allclose(regridded, model.loc[regridded.index], rtol=1e-5)


def test_an_external_ensemble_is_scored_as_an_ensemble(saved, tmp_path):
    run, _, path = saved
    ds = xr.open_zarr(path).load()
    ens = xr.concat([ds + 1.0, ds - 1.0], dim=pd.Index([1, 2], name="number"))
    ens.attrs = ds.attrs
    ens.to_zarr(tmp_path / "ens.zarr", zarr_format=2)
    table, _ = scored(run, tmp_path / "eval", f"external.ens={tmp_path / 'ens.zarr'}")
    key = ["region", "variable", "lead_hours"]
    model = table[table.method == "model"].set_index(key)
    ens = table[table.method == "ens"].set_index(key)
    assert np.allclose(ens.rmse, model.loc[ens.index].rmse, rtol=1e-5)  # its mean is the model
    assert np.allclose(ens.spread, np.sqrt(2.0), rtol=1e-5)  # members +-1: variance (ddof 1) 2
    assert (ens.crps > 0).all() and "crps" in (tmp_path / "eval" / "summary.md").read_text().lower()
    ranks = pd.read_csv(tmp_path / "eval" / "rank_histogram.csv")
    assert (tmp_path / "eval" / "rank_histogram.png").exists()
    assert np.allclose(ranks.groupby(["lead_hours", "region", "variable"]).frequency.sum(), 1.0)


def test_bad_external_forecasts_are_errors_naming_them(saved, tmp_path):
    run, _, path = saved
    ds = xr.open_zarr(path).load()
    holed = ds.copy(deep=True)
    holed["temperature"][1, 0, 1, 2, 3] = np.nan  # level 850 (500 holds the NaN of no forecast)
    holed.to_zarr(tmp_path / "holed.zarr", zarr_format=2)
    with pytest.raises(DataError, match="external.holed: temperature_850 has non-finite values"):
        scored(run, tmp_path / "a", f"external.holed={tmp_path / 'holed.zarr'}")
    ds["2m_temperature"].attrs["units"] = "m s**-1"  # degC would be converted (tests/test_faults_inputs.py)
    ds.to_zarr(tmp_path / "speed.zarr", zarr_format=2)
    with pytest.raises(InputError, match="2m_temperature is in m s.*cannot be converted to the run's K"):
        scored(run, tmp_path / "b", f"external.speed={tmp_path / 'speed.zarr'}")
    with pytest.raises(DataError, match="external.gone"):
        scored(run, tmp_path / "c", f"external.gone={tmp_path / 'nothing.zarr'}")


def test_a_wb2_climatology_zarr_gives_the_same_climatology_as_computing_it(saved, store, tmp_path):  # noqa: F811
    from physicsnemo_climax.data.climatology import hourly_climatology

    run, table, _ = saved
    st = ShardStore(store)
    variables = ["2m_temperature", "geopotential_500", "temperature_850"]
    clim = hourly_climatology(st, variables, "train")
    by_level = {"2m_temperature": (None, 0), "geopotential": (500, 1), "temperature": (850, 2)}
    ds = xr.Dataset(
        {
            name: (("dayofyear", "hour", "latitude", "longitude"), clim.fields[:, :, j])
            if level is None
            else (
                ("dayofyear", "hour", "level", "latitude", "longitude"),
                np.stack(
                    [
                        clim.fields[:, :, j] if lv == level else np.full_like(clim.fields[:, :, j], np.nan)
                        for lv in (500, 850)
                    ],
                    axis=2,
                ),
            )
            for name, (level, j) in by_level.items()
        },
        coords={
            "dayofyear": np.arange(1, 367),
            "hour": clim.hours,
            "level": [500, 850],
            "latitude": st.lat,
            "longitude": st.lon,
        },
    )
    for name, units in (("2m_temperature", "K"), ("geopotential", "m**2 s**-2"), ("temperature", "K")):
        ds[name].attrs["units"] = units  # as WeatherBench 2's climatologies carry them
    ds.to_zarr(tmp_path / "clim.zarr", zarr_format=2)
    mine, card = scored(run, tmp_path / "eval", f"eval.climatology={tmp_path / 'clim.zarr'}")
    key = ["region", "variable", "lead_hours", "method"]
    assert np.allclose(mine.set_index(key).rmse, table.set_index(key).loc[mine.set_index(key).index].rmse, rtol=1e-5)
    assert card["climatology"] == f"wb2_zarr: {tmp_path / 'clim.zarr'}"


def test_cli_forecast_in_wb2_layout(saved, store, tmp_path):  # noqa: F811
    from physicsnemo_climax.cli import main

    run, _, _ = saved
    st = ShardStore(store)
    shard = st.shards("test")[0]
    ic = xr.Dataset(
        {
            v: (("lat", "lon"), np.asarray(shard.array(v))[0, 0], {"units": st.manifest["units"][v]})
            for v in ["2m_temperature", "geopotential_500", "temperature_850", "land_sea_mask"]
        },
        coords={"lat": st.lat, "lon": st.lon, "time": np.datetime64("2001-01-01T00")},
    )
    ic.to_netcdf(tmp_path / "ic.nc")
    out = tmp_path / "fc.zarr"
    for again in ([], ["--overwrite"]):  # the second write replaces the first
        main(
            [
                "forecast",
                "--run",
                str(run),
                "--input",
                str(tmp_path / "ic.nc"),
                "--lead",
                "12h",
                "24h",
                "--output",
                str(out),
                "--format",
                "wb2",
                *again,
            ]
        )
    ds = xr.open_zarr(out)
    assert ds.temperature.dims == ("time", "prediction_timedelta", "level", "latitude", "longitude")
    assert ds.attrs["checkpoint"].endswith(".mdlus") and not list(tmp_path.glob(".*"))


def test_user_boxes_are_scored_and_misspelt_sections_refused(saved, tmp_path):
    from physicsnemo_climax.errors import ConfigError

    run, table, _ = saved
    mine, card = scored(run, tmp_path / "eval", "eval.regions=[tropics]", "eval.boxes.band=[-20,20,0,360]")
    # the box covers the tropics' points: the same scores
    key = ["variable", "lead_hours", "method"]
    band = mine[mine.region == "band"].set_index(key).rmse
    tropics = table[table.region == "tropics"].set_index(key).rmse
    assert np.allclose(band, tropics.loc[band.index], rtol=1e-6) and "band" in card["regions"]
    with pytest.raises(ConfigError, match="did you mean"):
        load_run_config(run, ["eval.boxs.band=[-20,20,0,360]"])


def test_train_mean_climatology_is_the_training_time_mean(saved, store, tmp_path):  # noqa: F811
    """``eval.climatology=train_mean``: the climatology forecast is the training split's time
    mean, scored by hand against the verifying fields of the scorecard's initial times."""
    run, _, _ = saved
    table, card = scored(run, tmp_path / "eval", "eval.climatology=train_mean", "eval.variables=[geopotential_500]")
    st = ShardStore(store)
    clim = np.concatenate([np.asarray(s.array("geopotential_500"))[:, 0] for s in st.shards("train")]).mean(0)
    test = st.shards("test")
    pairs = [(s, t) for s, shard in enumerate(test) for t in range(shard.steps - 4)]  # 24 h = 4 steps ahead
    pick = [pairs[i] for i in np.unique(np.linspace(0, len(pairs) - 1, 6).round().astype(int))]
    truth = [np.asarray(test[s].array("geopotential_500"))[t + 4, 0] for s, t in pick]
    from test_recipes import area_weights, wb2_rmse

    want = wb2_rmse([clim - y for y in truth], area_weights(st.lat))
    got = table.query("method == 'climatology' and region == 'global' and lead_hours == 24").rmse.item()
    assert got == pytest.approx(want, rel=1e-4)
    assert card["climatology"] == "train_mean"
