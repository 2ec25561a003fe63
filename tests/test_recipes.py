# SPDX-License-Identifier: Apache-2.0
"""The training engine, evaluation and forecast API on a tiny synthetic store."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from era5_files import write_era5
from physicsnemo.core import Module

from physicsnemo_climax.config import load_config, load_run_config
from physicsnemo_climax.data import PrepareConfig, ShardStore, prepare
from physicsnemo_climax.engine import checkpointing
from physicsnemo_climax.engine.checks import ConfigError
from physicsnemo_climax.engine.environment import apex
from physicsnemo_climax.engine.plan import MissingFeature
from physicsnemo_climax.forecasting import Run, evaluate, forecast, training
from physicsnemo_climax.models import ClimaX
from physicsnemo_climax.tasks import train

VARS = ["2m_temperature", "geopotential_500", "temperature_850", "land_sea_mask"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    files = write_era5(tmp_path_factory.mktemp("raw"), years=(2000, 2001))
    return prepare(
        PrepareConfig(files, VARS, {"train": 2000, "val": 2001, "test": 2001}, grid=(8, 16), shards_per_year=2),
        tmp_path_factory.mktemp("s") / "store",
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
            "train.steps=6",
            "train.warmup_steps=2",
            "train.val_every=3",
            "train.ckpt_every=3",
            "train.progress=false",
            "train.num_workers=0",
            *overrides,
        ]
    )


def area_weights(lat, rows=slice(None)):
    """WeatherBench 2's weights ``[h, 1]``: cell areas (edges half way between latitudes, +-90 at
    the ends) of the whole axis, cut to ``rows``."""
    s = np.sort(lat)
    area = np.diff(np.sin(np.deg2rad(np.r_[-90.0, (s[1:] + s[:-1]) / 2, 90.0])))[np.argsort(np.argsort(lat))]
    return area[rows][:, None]


def wb2_rmse(errors, w):
    """Square root of the time mean of the area-weighted mean squared ``errors`` (``[h, w]`` each)."""
    return float(np.sqrt(np.mean([(e**2 * w).sum() / (w.sum() * e.shape[1]) for e in errors])))


def losses(run_dir):
    rows = pd.read_csv(Path(run_dir) / "metrics.csv", names=["step", "key", "value"])
    return rows[rows.key == "train/loss"].value.to_numpy()


@pytest.mark.parametrize("task", ["pretrain", "finetune_global", "finetune_regional", "finetune_rollout"])
def test_each_task_runs(store, tmp_path, task):
    run = train(
        config(
            store,
            tmp_path / task,
            f"task={task}",
            "task.lead_hours=12" if task != "pretrain" else "task.lead_range=[6,24]",
        )
    )
    assert checkpointing.checkpoint_steps(run / "checkpoints") == [3, 6]
    info = json.loads((run / "run.json").read_text())
    assert info["out_variables"] == ["2m_temperature", "geopotential_500", "temperature_850"]
    assert np.isfinite(losses(run)).all()


def test_pretrain_on_two_sources_with_different_variables(store, tmp_path):
    cfg = config(
        store,
        tmp_path / "run",
        "task=pretrain",
        "task.lead_range=[6,24]",
        "data.variables=[2m_temperature,land_sea_mask]",
        "data.out_variables=[2m_temperature]",
        f"+data.extra_sources=[{{root: {store}, variables: [geopotential_500, temperature_850]}}]",
    )
    run = train(cfg)
    model = Module.from_checkpoint(str(checkpointing.model_file(run / "checkpoints")))
    assert model.variables == ["2m_temperature", "land_sea_mask", "geopotential_500", "temperature_850"]


def test_loss_decreases_on_learnable_toy(store, tmp_path):
    run = train(
        config(
            store,
            tmp_path / "run",
            "task=finetune_global",
            "task.lead_hours=6",
            "train.steps=80",
            "train.lr=2e-3",
            "train.log_every=1",
            "train.val_every=1000",
            "train.ckpt_every=1000",
            "model.embed_dim=64",
        )
    )
    history = losses(run)
    assert history[-10:].mean() < 0.5 * history[:5].mean()


def train_killed_during(cfg, loss_call: int, monkeypatch) -> None:
    """Train ``cfg`` until its ``loss_call``-th loss evaluation, where a Ctrl-C stops it."""
    original, calls = training.forecast_loss, []

    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == loss_call:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(training, "forecast_loss", dying)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    monkeypatch.setattr(training, "forecast_loss", original)


def test_kill_and_resume_gives_the_same_weights(store, tmp_path, monkeypatch):
    common = [
        "task=finetune_global",
        "task.lead_hours=6",
        "train.steps=8",
        "train.ckpt_every=2",
        "model.drop_rate=0.1",
        "train.num_workers=2",
        "train.val_every=100",
    ]
    straight = train(config(store, tmp_path / "a", *common))

    train_killed_during(config(store, tmp_path / "b", *common), 6, monkeypatch)  # after the checkpoint of step 4
    assert checkpointing.checkpoint_steps(tmp_path / "b" / "checkpoints")[-1] == 4
    resumed = train(config(store, tmp_path / "b", *common))
    a = Module.from_checkpoint(str(checkpointing.model_file(straight / "checkpoints"))).state_dict()
    b = Module.from_checkpoint(str(checkpointing.model_file(resumed / "checkpoints"))).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_evaluate_scorecard_and_plots(store, tmp_path):
    run = train(config(store, tmp_path / "run", "task=quickstart", "task.lead_range=[6,24]"))
    cfg = load_run_config(run, ["eval.leads=[6,24,48]", "eval.max_samples=12", "eval.batch_size=5"])
    table = evaluate(cfg)
    assert set(table.method) == {"model", "persistence", "climatology"}
    assert set(table.lead_hours) == {6.0, 24.0, 48.0}
    assert set(table.variable) == {"2m_temperature", "geopotential_500", "temperature_850"}
    out = Path(cfg.eval.out_dir)
    assert {"scorecard.csv", "scorecard.json", "scores.png", "case.png"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "scorecard.json").read_text())["modes"]["48.0"].startswith("rollout")
    # persistence at 6 h equals a direct computation on the store
    st = ShardStore(store)
    table = table[table.region == "global"]
    persistence = table[
        (table.method == "persistence") & (table.lead_hours == 6.0) & (table.variable == "2m_temperature")
    ].rmse.item()
    assert persistence == pytest.approx(_persistence_rmse(st, 12, 48 // 6, "2m_temperature"), rel=1e-5)


def _persistence_rmse(st, samples, horizon_steps, var):
    """WeatherBench 2's RMSE of 6 h persistence over the evaluation's initial times."""
    from physicsnemo_climax.forecasting.evaluation import initial_conditions

    inits = initial_conditions(st, "test", horizon_steps, samples)
    shards = st.shards("test")
    errors = []
    for s, t in inits:
        arr = np.asarray(shards[s].array(var)).astype(np.float64)
        errors.append(arr[t, 0] - arr[t + 1, 0])
    return wb2_rmse(errors, area_weights(st.lat))


def test_forecast_api_coordinates_units_and_rollout(store, tmp_path):
    run_dir = train(config(store, tmp_path / "run", "task=finetune_global", "task.lead_hours=12"))
    run = Run.load(run_dir)
    shard = ShardStore(store).shards("test")[0]
    lat, lon = ShardStore(store).lat, ShardStore(store).lon
    units = ShardStore(store).manifest["units"]  # an initial condition carries its units
    ic = xr.Dataset(
        {v: (("time", "lat", "lon"), np.asarray(shard.array(v))[:2, 0], {"units": units[v]}) for v in VARS},
        coords={"time": pd.date_range("2001-01-01", periods=2, freq="6h"), "lat": lat, "lon": lon},
    )
    out = forecast(run, ic, lead_times=["12h", "36h"])
    assert out["geopotential_500"].dims == ("time", "lead_time", "lat", "lon")
    assert out["geopotential_500"].shape == (2, 2, 8, 16)
    assert out["geopotential_500"].attrs["units"] == "m**2 s**-2"
    assert list(out.lead_time.values) == list(pd.to_timedelta([12, 36], unit="h"))
    assert out.valid_time.values[1, 1] == np.datetime64("2001-01-01T06") + np.timedelta64(36, "h")
    # 36 h from a 12 h model is three chained steps: equal to feeding it back by hand
    state = ic
    for _ in range(3):
        step = forecast(run, state, ["12h"]).isel(lead_time=0).drop_vars(["lead_time", "valid_time"])
        state = step.assign(land_sea_mask=ic.land_sea_mask)
    for v in ["geopotential_500", "temperature_850"]:
        assert np.allclose(state[v].values, out[v].values[:, 1], rtol=1e-5)
    with pytest.raises(ValueError, match="multiple of the run's 12"):
        forecast(run, ic, ["18h"])
    with pytest.raises(KeyError, match="temperature_850"):
        forecast(run, ic.drop_vars("temperature_850"), ["12h"])
    coarse = ic.isel(lat=slice(0, None, 2), lon=slice(0, None, 2))
    with pytest.raises(ValueError, match="grid"):
        forecast(run, coarse, ["12h"])
    assert forecast(run, coarse, ["12h"], regrid_method="bilinear")["geopotential_500"].shape == (2, 1, 8, 16)


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "override, match",
    [
        ("data.variables=[2m_temperature,rain]", "rain"),
        ("task.lead_hours=9", "lead_hours=9"),
        ("task.region=[80,89,0,10]", "task.region"),
        ("train.batch_size=0", "train.batch_size=0"),
        ("data.out_variables=[snow]", "snow"),
        ("task.rollout_steps=2", "global only"),
    ],
)
def test_config_errors_before_training(store, tmp_path, override, match):
    task = "task=finetune_regional" if "rollout" in override else "task=finetune_global"
    with pytest.raises((ConfigError, KeyError), match=match):
        train(config(store, tmp_path / "run", task, override))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_nan_loss_stops_and_keeps_last_good_checkpoint(store, tmp_path, monkeypatch):
    original, calls = training.forecast_loss, []

    def poisoned(*args, **kwargs):
        calls.append(1)
        loss = original(*args, **kwargs)
        return loss * float("nan") if len(calls) == 5 else loss

    monkeypatch.setattr(training, "forecast_loss", poisoned)
    with pytest.raises(FloatingPointError, match="at step 5.*step 3"):
        train(config(store, tmp_path / "run", "task=finetune_global", "train.val_every=100"))
    assert checkpointing.checkpoint_steps(tmp_path / "run" / "checkpoints") == [3]


def test_incompatible_checkpoint_lists_keys(store, tmp_path):
    run = train(config(store, tmp_path / "run", "task=finetune_global"))
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(ValueError, match=r"model.embed_dim: 32 -> 48; train.steps: 6 -> 9"):
        train(config(store, tmp_path / "run", "task=finetune_global", "model.embed_dim=48", "train.steps=9"))
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before  # the run is untouched
    model = ClimaX(variables=VARS, img_size=(8, 16), embed_dim=48, depth=1, num_heads=4)
    with pytest.raises(ValueError, match="does not fit"):  # the checkpoint itself is checked too
        checkpointing.load(run / "checkpoints", model)


def test_init_from_mdlus_transfers_weights(store, tmp_path):
    first = train(config(store, tmp_path / "a", "task=finetune_global"))
    source = checkpointing.model_file(first / "checkpoints")
    second = train(
        config(
            store,
            tmp_path / "b",
            "task=finetune_global",
            f"init={source}",
            "data.variables=[geopotential_500,2m_temperature]",
            "train.steps=1",
        )
    )
    a = Module.from_checkpoint(str(source))
    b = Module.from_checkpoint(str(checkpointing.model_file(second / "checkpoints", 1)))
    # one step of AdamW moves every weight by about lr; the init is the starting point
    assert torch.allclose(a.blocks[0].attn.qkv.weight, b.blocks[0].attn.qkv.weight, atol=2e-3)
    i, j = b.variables.index("2m_temperature"), a.variables.index("2m_temperature")
    assert torch.allclose(b.token_embeds[i].proj.weight, a.token_embeds[j].proj.weight, atol=2e-3)


def _torchrun(store, run_dir, fsdp, port):
    script = Path(__file__).with_name("ddp_train.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={port}",
        str(script),
        str(store),
        str(run_dir),
        str(fsdp).lower(),
    ]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return [torch.load(run_dir / f"params_rank{r}.pt") for r in range(2)]


@pytest.mark.slow
def test_two_process_torchrun_ddp_and_fsdp(store, tmp_path):
    ddp = _torchrun(store, tmp_path / "ddp", False, 29531)
    assert torch.equal(ddp[0], ddp[1])  # DDP keeps every rank's parameters identical
    assert checkpointing.checkpoint_steps(tmp_path / "ddp" / "checkpoints") == [3, 6]
    fsdp = _torchrun(store, tmp_path / "fsdp", True, 29532)
    assert checkpointing.checkpoint_steps(tmp_path / "fsdp" / "checkpoints") == [3, 6]
    # sharded training reaches the replicated result, up to reduction order
    assert torch.allclose(fsdp[0], ddp[0], atol=1e-5)
    saved = Module.from_checkpoint(str(checkpointing.model_file(tmp_path / "fsdp" / "checkpoints")))
    assert torch.allclose(torch.cat([p.detach().flatten() for p in saved.parameters()]), fsdp[0])


def _climatology_rmse_6h(st, samples, reference):
    """WeatherBench 2's RMSE of ``reference(valid time) -> [H, W]`` against the test split's
    geopotential_500 6 h after the evaluation's initial times."""
    from physicsnemo_climax.forecasting.evaluation import initial_conditions

    times = st.shard_times("test")
    errors = []
    for s, t in initial_conditions(st, "test", 1, samples):
        truth = np.asarray(st.shards("test")[s].array("geopotential_500"))[t + 1, 0]
        errors.append(reference(times[s][t + 1]) - truth)
    return wb2_rmse(errors, area_weights(st.lat))


def test_day_of_year_climatology_baseline(store, tmp_path):
    import shutil

    from physicsnemo_climax.data.preparation import compute_statistics

    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    compute_statistics(copy, day_of_year=True)
    run = train(config(copy, tmp_path / "run", "task=finetune_global", "task.lead_hours=6"))
    cfg = load_run_config(
        run,
        ["eval.leads=[6]", "eval.max_samples=7", "eval.climatology=day_of_year", "eval.variables=[geopotential_500]"],
    )
    table = evaluate(cfg).query("region == 'global'").set_index("method")
    st = ShardStore(copy)
    doy = np.load(copy / "test" / "climatology_doy.npz")["geopotential_500"][:, 0].astype(np.float64)
    times = st.shard_times("test")
    day = lambda stamp: int((stamp - stamp.astype("datetime64[Y]")) // np.timedelta64(1, "D"))  # noqa: E731
    want = _climatology_rmse_6h(st, 7, lambda stamp: doy[day(stamp)])
    assert table.loc["climatology"].rmse == pytest.approx(want, rel=1e-5)
    # the store's time stamps: 2001 test split, 6-hourly from 1 January
    assert times[0][0] == np.datetime64("2001-01-01T00") and times[1][0] - times[0][-1] == np.timedelta64(6, "h")


def test_wb2_climatology_baseline_uses_the_training_years(store, tmp_path):
    from physicsnemo_climax.data.climatology import hourly_climatology

    run = train(config(store, tmp_path / "run", "task=finetune_global", "task.lead_hours=6"))
    cfg = load_run_config(
        run,
        [
            "eval.leads=[6]",
            "eval.max_samples=7",
            "eval.climatology=wb2",
            "eval.climatology_window=5",
            "eval.variables=[geopotential_500]",
        ],
    )
    table = evaluate(cfg).query("region == 'global'").set_index("method")
    st = ShardStore(store)
    clim = hourly_climatology(st, ["geopotential_500"], "train", None, 5)  # 2000 only: not the scored 2001
    want = _climatology_rmse_6h(st, 7, lambda stamp: clim.at(np.array([stamp]))[0, 0].astype(np.float64))
    assert table.loc["climatology"].rmse == pytest.approx(want, rel=1e-5)
    assert json.loads((Path(cfg.eval.out_dir) / "scorecard.json").read_text())["climatology"] == "wb2"


def test_cli_evaluate_and_forecast(store, tmp_path, capsys):
    from physicsnemo_climax.cli import main

    run = train(config(store, tmp_path / "run", "task=finetune_global", "task.lead_hours=12"))
    main(["evaluate", f"run_dir={run}", "eval.leads=[12,24]", "eval.max_samples=4"])
    printed = capsys.readouterr().out
    assert "persistence" in printed and "12h" in printed and "24h" in printed
    shard = ShardStore(store).shards("test")[0]
    ic = xr.Dataset(
        {
            v: (("lat", "lon"), np.asarray(shard.array(v))[0, 0], {"units": ShardStore(store).manifest["units"][v]})
            for v in VARS
        },
        coords={"lat": ShardStore(store).lat, "lon": ShardStore(store).lon, "time": np.datetime64("2001-01-01T00")},
    )
    ic.to_netcdf(tmp_path / "ic.nc")
    main(
        [
            "forecast",
            "--checkpoint",
            str(run),
            "--input",
            str(tmp_path / "ic.nc"),
            "--lead",
            "12h",
            "2D",
            "--output",
            str(tmp_path / "out.nc"),
        ]
    )
    out = xr.open_dataset(tmp_path / "out.nc")
    assert out["temperature_850"].shape == (1, 2, 8, 16)
    assert list(out.lead_time.values) == list(pd.to_timedelta(["12h", "48h"]))


def test_dali_loader_trains_like_the_threads_loader(store, tmp_path):
    pytest.importorskip("nvidia.dali")
    common = (
        "task=finetune_global",
        "task.lead_hours=12",
        "train.steps=4",
        "train.log_every=1",
        "train.val_every=100",
        "train.ckpt_every=4",
    )
    threads = train(config(store, tmp_path / "threads", *common))
    dali = train(config(store, tmp_path / "dali", *common, "train.loader=dali_cpu", "train.num_workers=1"))
    assert len(losses(dali)) == 4
    np.testing.assert_allclose(losses(dali), losses(threads), rtol=1e-4)


@pytest.mark.skipif(apex("apex_adam").ok, reason="apex is present")
def test_a_config_demanding_apex_stops_before_anything_is_built(store, tmp_path, caplog):
    with pytest.raises(MissingFeature, match="train.fused='apex': NVIDIA apex fused kernels are missing"):
        train(config(store, tmp_path / "run", "task=finetune_global", "train.fused=apex"))
    assert not (tmp_path / "run").exists()
    run = train(
        config(
            store,
            tmp_path / "run",
            "task=finetune_global",
            "task.lead_hours=12",
            "train.fused=apex",
            "train.fallback=true",
            "train.steps=2",
            "train.val_every=100",
            "train.ckpt_every=2",
        )
    )
    assert "falling back to 'torch'" in caplog.text
    assert yaml_value(run / "config.yaml", "train", "fused") == "torch"  # the run records what ran


def yaml_value(path, *keys):
    from omegaconf import OmegaConf

    node = OmegaConf.load(path)
    for key in keys:
        node = node[key]
    return node


@pytest.mark.slow
def test_torch_compile_option(store, tmp_path):
    run = train(
        config(
            store,
            tmp_path / "run",
            "task=finetune_global",
            "train.compile=true",
            "train.steps=2",
            "train.val_every=100",
            "train.ckpt_every=2",
        )
    )
    assert np.isfinite(losses(run)).all() and checkpointing.checkpoint_steps(run / "checkpoints") == [2]


def test_regional_run_is_scored_on_its_region(store, tmp_path):
    run = train(config(store, tmp_path / "run", "task=finetune_regional", "task.lead_hours=12"))
    cfg = load_run_config(run, ["eval.leads=[12]", "eval.max_samples=4"])
    table = evaluate(cfg)
    assert (Path(cfg.eval.out_dir) / "case.png").exists()
    # the run's own region is scored; WeatherBench 2's regions reaching beyond it are not
    assert "run_region" in set(table.region) and "global" not in set(table.region)
    table = table[table.region == "run_region"]
    assert len(table) == 9
    # persistence on the region (NorthAmerica: 2 x 4 cells of this 8 x 16 grid) by hand
    from physicsnemo_climax.forecasting.evaluation import initial_conditions

    st = ShardStore(store)
    errors = []
    for s, t in initial_conditions(st, "test", 2, 4):
        arr = np.asarray(st.shards("test")[s].array("temperature_850"))[:, 0, 4:6, 10:14].astype(np.float64)
        errors.append(arr[t] - arr[t + 2])
    got = table[(table.method == "persistence") & (table.variable == "temperature_850")].rmse.item()
    assert got == pytest.approx(wb2_rmse(errors, area_weights(st.lat, slice(4, 6))), rel=1e-5)
    cfg = load_run_config(run, ["eval.leads=[24]", "eval.max_samples=4"])
    with pytest.raises(ValueError, match="direct leads only"):
        evaluate(cfg)


def test_regional_run_forecasts_its_region_and_records_its_plan(store, tmp_path):
    from physicsnemo_climax.earth2studio import ClimaXPrognostic

    run_dir = train(config(store, tmp_path / "run", "task=finetune_regional", "task.lead_hours=12"))
    info = json.loads((run_dir / "run.json").read_text())
    assert info["region"] == "NorthAmerica"
    assert (info["plan"]["precision"], info["plan"]["fused"], info["plan"]["loader"]) == ("fp32", "torch", "threads")
    run, st = Run.load(run_dir), ShardStore(store)
    shard = st.shards("test")[0]
    ic = xr.Dataset(
        {
            v: (("time", "lat", "lon"), np.asarray(shard.array(v))[:2, 0], {"units": st.manifest["units"][v]})
            for v in VARS
        },
        coords={"time": pd.date_range("2001-01-01", periods=2, freq="6h"), "lat": st.lat, "lon": st.lon},
    )
    out = forecast(run, ic, ["12h"])
    assert np.allclose(out.lat, st.lat[4:6]) and np.allclose(out.lon, st.lon[10:14])  # NorthAmerica's cells
    mean, std = (torch.as_tensor(a, dtype=torch.float32)[:, None, None] for a in run.stats(run.info.variables))
    x = (torch.as_tensor(np.stack([ic[v].values for v in run.info.variables], 1)) - mean) / std
    j = run.info.out_variables.index("temperature_850")
    with torch.no_grad():
        direct = run.model(x, torch.full((2,), 12.0), run.info.variables, ["temperature_850"], region="NorthAmerica")
    m, s = (a[j] for a in run.stats(run.info.out_variables))
    assert np.allclose(out.temperature_850.values[:, 0], direct[:, 0].numpy() * s + m, rtol=1e-5)
    with pytest.raises(ValueError, match="direct leads only"):
        forecast(run, ic, ["24h"])
    with pytest.raises(ValueError, match="regional run .*NorthAmerica"):
        ClimaXPrognostic.from_run(run_dir)
