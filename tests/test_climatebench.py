# SPDX-License-Identifier: Apache-2.0
"""ClimateBench: files, windows, NRMSEs, the model, pretrained transfer and the recipe."""

import json

import numpy as np
import pytest
import torch
import xarray as xr
from climatebench_files import write_climatebench
from physicsnemo.core import ModelRegistry, Module

from physicsnemo_climax.climate_projection import ClimaXClimateBench, evaluate
from physicsnemo_climax.climate_projection.data import ClimateBenchDataset, input_statistics, read_scenario
from physicsnemo_climax.climate_projection.scores import nrmse as climatebench_nrmse
from physicsnemo_climax.climate_projection.scores import pattern_scaling
from physicsnemo_climax.config import load_config, load_run_config
from physicsnemo_climax.engine.checks import ConfigError
from physicsnemo_climax.forecasting import Run
from physicsnemo_climax.grid import regular_grid
from physicsnemo_climax.models import ClimaX
from physicsnemo_climax.tasks import train

GRID = regular_grid((8, 16))


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return write_climatebench(tmp_path_factory.mktemp("climatebench"))


def test_reader_averages_members_converts_precipitation_and_regrids(bench):
    s = read_scenario(bench, "ssp245", GRID)
    raw_in, raw_out = xr.open_dataset(bench / "inputs_ssp245.nc"), xr.open_dataset(bench / "outputs_ssp245.nc")
    assert list(s.years) == list(range(2015, 2045)) and s.inputs.shape == (30, 4, 8, 16)
    assert np.allclose(s.inputs[:, 0], raw_in.CO2.values[:, None, None])  # global CO2 broadcast
    native = read_scenario(bench, "ssp245")  # on its own grid: members averaged, pr in mm/day
    assert np.allclose(native.outputs["pr"], raw_out.pr.mean("member").values * 86400, rtol=1e-5)
    assert np.allclose(native.outputs["tas"], raw_out.tas.mean("member").values, atol=1e-5)


def test_reader_errors_name_file_and_item(bench, tmp_path):
    with pytest.raises(FileNotFoundError, match="inputs_ssp999.nc"):
        read_scenario(bench, "ssp999")
    xr.open_dataset(bench / "inputs_ssp245.nc").drop_vars("BC").to_netcdf(tmp_path / "inputs_x.nc")
    xr.open_dataset(bench / "outputs_ssp245.nc").to_netcdf(tmp_path / "outputs_x.nc")
    with pytest.raises(KeyError, match=r"inputs_x.nc: no variable \['BC'\]"):
        read_scenario(tmp_path, "x")
    xr.open_dataset(bench / "inputs_ssp245.nc").isel(time=slice(1, None)).to_netcdf(tmp_path / "inputs_y.nc")
    xr.open_dataset(bench / "outputs_ssp245.nc").to_netcdf(tmp_path / "outputs_y.nc")
    with pytest.raises(ValueError, match="2016..2044.*2015..2044"):
        read_scenario(tmp_path, "y")


def test_ssp_windows_take_their_history_from_historical(bench):
    hist, ssp = read_scenario(bench, "historical", GRID), read_scenario(bench, "ssp126", GRID)
    stats = input_statistics([hist, ssp])
    data = ClimateBenchDataset([ssp], ["tas", "pr"], 10, stats, hist)
    assert len(data) == 30  # every SSP year has a 10-year history
    item = data[0]
    assert item["year"] == 2015 and item["x"].shape == (10, 4, 8, 16) and item["y"].shape == (2, 8, 16)
    mean, std = (a[:, None, None] for a in stats)
    assert np.allclose(item["x"][-1].numpy(), (ssp.inputs[0] - mean) / std, atol=1e-5)
    assert np.allclose(item["x"][0].numpy(), (hist.inputs[-9] - mean) / std, atol=1e-5)  # 2006
    assert len(ClimateBenchDataset([hist], ["tas"], 10, stats)) == 40 - 9
    with pytest.raises(ValueError, match="50-year history"):
        ClimateBenchDataset([hist], ["tas"], 50, stats)


def test_nrmse_equals_a_direct_computation():
    rng = np.random.default_rng(0)
    lat = np.linspace(-80, 80, 6)
    truth, pred = rng.normal(2, 1, (21, 6, 12)), rng.normal(2, 1, (21, 6, 12))
    w = np.cos(np.deg2rad(lat))
    gm = lambda f: np.average(np.average(f, axis=-1), axis=-1, weights=w)  # noqa: E731
    norm = abs(gm(truth.mean(0)))
    spatial = np.sqrt(gm((truth.mean(0) - pred.mean(0)) ** 2)) / norm
    glob = np.sqrt(np.mean([(gm(truth[t]) - gm(pred[t])) ** 2 for t in range(21)])) / norm
    got = climatebench_nrmse(pred, truth, lat)
    assert got["nrmse_spatial"] == pytest.approx(spatial) and got["nrmse_global"] == pytest.approx(glob)
    assert got["nrmse_total"] == pytest.approx(spatial + 5 * glob)


def test_pattern_scaling_is_exact_on_a_linear_world(bench):
    train = [read_scenario(bench, n, GRID) for n in ("ssp126", "ssp585", "historical")]
    test = read_scenario(bench, "ssp245", GRID)
    for s in train + [test]:  # make tas exactly linear in CO2 and CH4
        s.outputs["tas"] = 0.3 + 2e-3 * s.inputs[:, 0] - 4 * s.inputs[:, 2]
    assert np.allclose(pattern_scaling(train, test, "tas"), test.outputs["tas"], atol=1e-4)


def test_model_shapes_freezing_and_exact_encoder_transfer(tmp_path):
    source = ClimaX(
        variables=["2m_temperature", "CO2"], img_size=(8, 16), patch_size=2, embed_dim=32, depth=2, num_heads=4
    )
    source.save(str(tmp_path / "climax.mdlus"))
    args = dict(
        img_size=(8, 16), patch_size=2, embed_dim=32, depth=2, num_heads=4, history=3, out_variables=["tas", "pr"]
    )
    model = ClimaXClimateBench.from_pretrained(str(tmp_path / "climax.mdlus"), freeze=True, **args)
    theirs, mine = source.state_dict(), model.state_dict()
    for key in theirs:
        if key.startswith(("blocks.", "norm.", "var_agg.", "var_query", "pos_embed", "lead_time_embed.")):
            assert torch.equal(theirs[key], mine[key]), key
    assert torch.equal(mine["token_embeds.0.proj.weight"], theirs["token_embeds.1.proj.weight"])  # CO2 by name
    trainable = {n for n, p in model.named_parameters() if p.requires_grad and n.startswith("blocks.")}
    assert trainable and all("norm" in n for n in trainable)
    assert model(torch.randn(2, 3, 4, 8, 16), ["CO2", "SO2", "CH4", "BC"]).shape == (2, 2, 8, 16)
    with pytest.raises(ValueError, match="T <= 3"):
        model(torch.randn(1, 4, 4, 8, 16), ["CO2", "SO2", "CH4", "BC"])
    assert ModelRegistry().factory("ClimaXClimateBench") is ClimaXClimateBench  # entry point
    model.save(str(tmp_path / "cb.mdlus"))
    again = Module.from_checkpoint(str(tmp_path / "cb.mdlus"))
    assert again.history == 3 and torch.equal(again.head.weight, model.head.weight)


def config(bench, run_dir, *overrides):
    return load_config(
        [
            f"data.root={bench}",
            f"run_dir={run_dir}",
            "task=climatebench",
            "data=climatebench",
            "model.img_size=[8,16]",
            "model.patch_size=2",
            "model.embed_dim=64",
            "model.depth=2",
            "model.num_heads=4",
            "task.history=3",
            "train.batch_size=16",
            "train.steps=300",
            "train.lr=2e-3",
            "train.warmup_steps=20",
            "train.val_every=100",
            "train.ckpt_every=300",
            "train.progress=false",
            "train.num_workers=0",
            "train.weight_decay=0",
            *overrides,
        ]
    )


def test_training_beats_pattern_scaling_and_scores_do_not_depend_on_batch_size(bench, tmp_path):
    run = train(config(bench, tmp_path / "run", "task.targets=[tas]", "task.eval_years=[2030,2044]"))
    record = json.loads((run / "run.json").read_text())
    assert record["task"] == "climatebench" and record["plan"]["loader"] == "threads"
    with pytest.raises(ValueError, match="climatebench run, not a ClimaX forecasting run"):
        Run.load(run)
    cfg = load_run_config(run, ["eval.batch_size=1"])
    table = evaluate(cfg).set_index(["method", "target"])
    again = evaluate(load_run_config(run, ["eval.batch_size=15", "eval.overwrite=true"])).set_index(
        ["method", "target"]
    )
    assert np.allclose(table.nrmse_total, again.nrmse_total, rtol=1e-5)
    assert table.nrmse_total[("climax", "tas")] < table.nrmse_total[("pattern_scaling", "tas")]
    assert {"climatebench.csv", "climatebench.json", "climatebench_maps.png"} <= {
        p.name for p in (run / "eval").iterdir()
    }
    from physicsnemo_climax.cli import main

    (run / "eval" / "climatebench.csv").unlink()
    main(["evaluate", f"run_dir={run}", "eval.overwrite=true"])  # `climax evaluate` knows the task
    assert (run / "eval" / "climatebench.csv").exists()


@pytest.mark.parametrize(
    "override, match",
    [
        ("task.train_scenarios=[ssp999]", "inputs_ssp999.nc"),
        ("task.history=0", "task.history"),
        ("task.history=200", "task.history=200"),
        ("task.targets=[snow]", "snow"),
        ("model.residual=true", "model.residual=true: ClimateBench"),
        ("model.overlapping_head=true", "model.overlapping_head=true: ClimateBench"),
    ],
)
def test_bad_config_is_named_before_training(bench, tmp_path, override, match):
    with pytest.raises((ConfigError, KeyError), match=match):
        train(config(bench, tmp_path / "run", override))
    assert not (tmp_path / "run" / "checkpoints").exists()
