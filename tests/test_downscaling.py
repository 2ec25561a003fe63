# SPDX-License-Identifier: Apache-2.0
"""CorrDiff stages, generation, scores and the forecast -> downscale pipeline, on tiny models."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from era5_files import write_era5
from physicsnemo.core import Module
from test_downscaling_data import regional

from physicsnemo_climax.config import load_config
from physicsnemo_climax.data import PrepareConfig, prepare
from physicsnemo_climax.downscaling import generation, write_mini_file
from physicsnemo_climax.downscaling.datasets import split_holdout
from physicsnemo_climax.downscaling.pipeline import forecast_and_downscale
from physicsnemo_climax.downscaling.scores import score_file
from physicsnemo_climax.downscaling.training import train
from physicsnemo_climax.engine import checkpointing
from physicsnemo_climax.engine.checks import ConfigError
from physicsnemo_climax.engine.plan import MissingFeature
from physicsnemo_climax.forecasting import train as train_climax

TINY_CLIMAX = [
    "model=climax_regression",
    "model.climax.embed_dim=32",
    "model.climax.depth=1",
    "model.climax.num_heads=2",
    "model.climax.decoder_depth=1",
]


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mini")
    write_mini_file(
        folder / "mini.nc", folder / "stats.json", samples=12, shape=(32, 32), factor=4, invariant_shape=(48, 40)
    )
    return folder


def training(mini, run_dir, *overrides, name="config_training_hrrr_mini_regression"):
    return load_config(
        [
            f"dataset.data_path={mini / 'mini.nc'}",
            f"dataset.stats_path={mini / 'stats.json'}",
            f"run_dir={run_dir}",
            "model_size=tiny",
            "train.steps=4",
            "train.batch_size=2",
            "train.grad_accum=1",
            "train.num_workers=0",
            "train.progress=false",
            "train.ckpt_every=2",
            f"+validation.data_path={mini / 'mini.nc'}",
            "train.val_every=2",
            "train.val_batches=1",
            *overrides,
        ],
        name,
    )


def generation_config(mini, reg, res, out, *overrides):
    return load_config(
        [
            f"dataset.data_path={mini / 'mini.nc'}",
            f"dataset.stats_path={mini / 'stats.json'}",
            f"generation.io.reg_ckpt_filename={reg}",
            f"generation.io.res_ckpt_filename={res}",
            f"generation.io.output_filename={out}",
            "generation.num_ensembles=4",
            "generation.seed_batch_size=2",
            "generation.times=null",
            "generation.max_times=2",
            "generation.sampler.num_steps=3",
            *overrides,
        ],
        "config_generate_hrrr_mini",
    )


def losses(run_dir, key="train/loss"):
    rows = pd.read_csv(run_dir / "metrics.csv", names=["step", "key", "value"])
    return rows[rows.key == key].value.to_numpy()


@pytest.fixture(scope="module")
def stages(mini, tmp_path_factory):
    """Trained UNet regression, and diffusion on top of it."""
    root = tmp_path_factory.mktemp("stages")
    reg = train(training(mini, root / "reg"))
    res = train(
        training(
            mini, root / "res", f"model.regression_checkpoint_path={reg}", name="config_training_hrrr_mini_diffusion"
        )
    )
    return reg, res


def test_both_stages_train_validate_and_save(stages):
    reg, res = stages
    for run, cls in ((reg, "CorrDiffRegressionUNet"), (res, "EDMPrecondSuperResolution")):
        assert checkpointing.checkpoint_steps(run / "checkpoints") == [2, 4]
        assert type(Module.from_checkpoint(str(checkpointing.model_file(run / "checkpoints")))).__name__ == cls
        assert np.isfinite(losses(run)).all() and len(losses(run, "val/loss")) == 2
        assert (run / "domain.json").exists()


def test_validation_on_held_out_samples_keeps_the_best_checkpoint(mini, tmp_path):
    """Without validation data the last samples are held out (12 * 0.25 = 3), validated on every
    step, and the step of the lowest validation loss is kept in checkpoints/best, however many of
    the latest checkpoints are pruned."""
    cfg = training(mini, tmp_path / "reg", "train.val_every=1", "train.ckpt_every=1", "train.keep_checkpoints=1")
    cfg.validation, cfg.holdout = None, 0.25
    run = train(cfg)
    val = losses(run, "val/loss")
    assert len(val) == 4 and np.isfinite(val).all() and val.std() > 0
    best = run / "checkpoints" / "best"
    best_step = int(np.argmin(val)) + 1
    assert checkpointing.checkpoint_steps(best) == [best_step]
    assert checkpointing.checkpoint_steps(run / "checkpoints") == [4]
    recorded = checkpointing.saved_metadata(best, best_step)
    assert recorded["best_metric"] == "loss" and np.isclose(recorded["best_value"], val.min(), rtol=1e-6)
    net = Module.from_checkpoint(str(checkpointing.model_file(best)))
    assert type(net).__name__ == "CorrDiffRegressionUNet"
    if best_step == 4:  # the best is the last: the same weights as the latest checkpoint
        last = Module.from_checkpoint(str(checkpointing.model_file(run / "checkpoints")))
        assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), last.state_dict().values()))


def test_the_held_out_samples_are_the_last_ones_and_never_trained_on():
    dataset = list(range(20))
    train_part, held = split_holdout(dataset, 0.1, minimum=4)
    assert [train_part[i] for i in range(len(train_part))] == list(range(18))
    assert [held[i] for i in range(len(held))] == [18, 19]
    assert len(split_holdout(dataset, 0.01, minimum=4)[1]) == 1  # at least one sample
    with pytest.raises(ConfigError, match=r"holdout=0.9: holding out 18 of the dataset's 20 samples"):
        split_holdout(dataset, 0.9, minimum=4)
    with pytest.raises(ConfigError, match=r"holdout=1.5: give a fraction in \(0, 1\)"):
        split_holdout(dataset, 1.5, minimum=4)


def test_a_best_metric_the_validation_does_not_report_is_an_error_naming_it(mini, tmp_path):
    cfg = training(mini, tmp_path / "reg", "train.best_metric=crps")
    with pytest.raises(ConfigError, match=r"train.best_metric='crps': the validation reports \['loss'\]"):
        train(cfg)


def test_generation_file_shapes_coordinates_and_seeds(mini, stages, tmp_path):
    reg, res = stages
    path = generation.generate(generation_config(mini, reg, res, tmp_path / "a.nc"))
    root = xr.open_dataset(path)
    assert list(root.ensemble.values) == [0, 1, 2, 3]
    assert list(root.time.values) == list(pd.date_range("2020-01-01", periods=2, freq="h"))
    pred = xr.open_dataset(path, group="prediction")
    assert pred["10u"].dims == ("ensemble", "time", "y", "x") and pred["10u"].shape == (4, 2, 32, 32)
    assert np.isfinite(pred["10u"].values).all() and pred["10u"].std("ensemble").min() > 0
    truth = xr.open_dataset(path, group="truth")
    assert np.allclose(truth["10v"].values, xr.open_dataset(mini / "mini.nc", group="output")["10v"].values[:2])
    assert set(xr.open_dataset(path, group="input").data_vars) == {"10u", "10v", "2t", "tp", "elev_mean", "lsm_mean"}
    assert root.lat.dims == ("y", "x") and np.isnan(root.lat.values).all()  # CorrDiff-Mini has no coordinates
    # member k is drawn from seed k, however the members are batched
    other = generation.generate(generation_config(mini, reg, res, tmp_path / "b.nc", "generation.seed_batch_size=1"))
    assert np.allclose(xr.open_dataset(other, group="prediction")["10u"].values, pred["10u"].values, atol=1e-5)
    assert set(score_file(path).method) == {"corrdiff", "regression", "bilinear"}
    assert not list(tmp_path.glob(".*.tmp"))


def test_regression_only_mode_gives_identical_members(mini, stages, tmp_path):
    reg, _ = stages
    path = generation.generate(
        generation_config(mini, reg, "unused", tmp_path / "r.nc", "generation.inference_mode=regression")
    )
    pred = xr.open_dataset(path, group="prediction")["10u"].values
    assert np.array_equal(pred[0], pred[3])
    assert np.allclose(pred[0], xr.open_dataset(path, group="regression")["10u"].values)


def test_climax_is_a_regression_stage_by_config(mini, tmp_path):
    reg = train(training(mini, tmp_path / "reg", *TINY_CLIMAX))
    net = Module.from_checkpoint(str(checkpointing.model_file(reg / "checkpoints")))
    assert type(net).__name__ == "ClimaXRegression"
    assert net.input_channels == ["10u", "10v", "2t", "tp", "elev_mean", "lsm_mean"]
    res = train(
        training(
            mini,
            tmp_path / "res",
            f"model.regression_checkpoint_path={reg}",
            "model=patched_diffusion",
            "model.patch_shape_x=16",
            "model.patch_shape_y=16",
            "model.patch_num=2",
            name="config_training_hrrr_mini_diffusion",
        )
    )
    path = generation.generate(
        generation_config(
            mini,
            reg,
            res,
            tmp_path / "g.nc",
            "generation=patched",
            "generation.patch_shape_x=16",
            "generation.patch_shape_y=16",
            "generation.overlap_pix=4",
            "generation.boundary_pix=2",
            "generation.num_ensembles=2",
            "generation.max_times=1",
        )
    )
    assert np.isfinite(xr.open_dataset(path, group="prediction")["10v"].values).all()


def test_regression_beats_bilinear_on_a_learnable_toy(mini, tmp_path):
    # the fine detail is a function of the invariants, which bilinear interpolation cannot know
    reg = train(
        training(
            mini,
            tmp_path / "reg",
            "train.steps=150",
            "train.lr=3e-3",
            "train.batch_size=4",
            "train.ckpt_every=1000",
            "train.val_every=1000",
        )
    )
    path = generation.generate(
        generation_config(
            mini,
            reg,
            "unused",
            tmp_path / "r.nc",
            "generation.inference_mode=regression",
            "generation.max_times=12",
            "generation.num_ensembles=1",
            "generation.seed_batch_size=1",
        )
    )
    table = score_file(path).set_index(["method", "variable"])
    for v in ("10u", "10v"):
        assert table.rmse[("regression", v)] < 0.7 * table.rmse[("bilinear", v)]


# ------------------------------------------------------------ bad input
def test_diffusion_checks_its_regression_net_before_training(mini, tmp_path):
    with pytest.raises(FileNotFoundError, match="regression_checkpoint_path"):
        train(
            training(
                mini,
                tmp_path / "a",
                f"model.regression_checkpoint_path={tmp_path / 'none'}",
                name="config_training_hrrr_mini_diffusion",
            )
        )
    # a regression net for other outputs
    other = train(training(mini, tmp_path / "other", "dataset.output_variables=[10u]", "train.steps=1"))
    with pytest.raises(ValueError, match=r"regression_checkpoint_path=.*outputs \['10u', '10v'\]"):
        train(
            training(
                mini,
                tmp_path / "b",
                f"model.regression_checkpoint_path={other}",
                name="config_training_hrrr_mini_diffusion",
            )
        )
    # a regression net for fewer inputs
    fewer = train(training(mini, tmp_path / "fewer", "dataset.input_variables=[10u,10v]", "train.steps=1"))
    with pytest.raises(ValueError, match="input channels"):
        train(
            training(
                mini,
                tmp_path / "c",
                f"model.regression_checkpoint_path={fewer}",
                name="config_training_hrrr_mini_diffusion",
            )
        )
    assert not any((tmp_path / d / "checkpoints").exists() for d in "abc")


@pytest.mark.parametrize(
    "override, match",
    [
        ("train.batch_size=0", "train.batch_size"),
        ("train.loader=dali_gpu", "train.loader"),
        ("train.batch_size=64", "only 12 samples"),
        ("model.name=gan", "model.name"),
    ],
)
def test_config_errors_before_training(mini, tmp_path, override, match):
    with pytest.raises(ConfigError, match=match):
        train(training(mini, tmp_path / "run", override))
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="mixed precision is available on a GPU")
def test_mixed_precision_on_the_cpu_stops_with_the_doctors_explanation(mini, tmp_path):
    with pytest.raises(
        MissingFeature, match="train.precision='bf16': CorrDiff's PhysicsNeMo networks run mixed precision on CUDA only"
    ):
        train(training(mini, tmp_path / "run", "train.precision=bf16"))
    assert not (tmp_path / "run").exists()


def test_generation_bad_input_is_named(mini, stages, tmp_path):
    reg, res = stages
    with pytest.raises(ValueError, match="num_ensembles=3 is not divisible by generation.seed_batch_size=2"):
        generation.generate(generation_config(mini, reg, res, tmp_path / "x.nc", "generation.num_ensembles=3"))
    with pytest.raises(KeyError, match="1999"):
        generation.generate(generation_config(mini, reg, res, tmp_path / "x.nc", "generation.times=[1999-01-01]"))
    assert not (tmp_path / "x.nc").exists()


def test_streaming_equals_drawing_every_time_at_once_whatever_the_time_block(mini, stages, tmp_path):
    reg, res = stages
    one = generation.generate(generation_config(mini, reg, res, tmp_path / "one.nc", "generation.max_times=4"))
    three = generation.generate(
        generation_config(mini, reg, res, tmp_path / "three.nc", "generation.max_times=4", "generation.time_block=3")
    )  # blocks of 3 and 1 times
    for group in ("input", "regression", "prediction", "truth"):
        xr.testing.assert_identical(xr.open_dataset(one, group=group), xr.open_dataset(three, group=group))
    xr.testing.assert_identical(xr.open_dataset(one), xr.open_dataset(three))
    # the non-streaming way: all four times through `downscale` at once, held in memory
    cfg = generation_config(mini, reg, res, tmp_path / "unused.nc", "generation.max_times=4")
    dataset = generation.build_dataset(cfg.dataset)
    nets = generation.load_stages(cfg.generation, dataset.domain, torch.device("cpu"))
    x = torch.stack([dataset[i]["input"] for i in range(4)])
    mean, members = generation.downscale(
        *nets, x, generation.seed_batches(4, 2), generation.build_sampler(cfg.generation, dataset.domain.shape)
    )
    pred = xr.open_dataset(one, group="prediction")["10v"].values
    assert np.array_equal(pred, dataset.domain.denormalize_output(members).numpy()[:, :, 1].astype(np.float32))
    regression = xr.open_dataset(one, group="regression")["10u"].values
    assert np.array_equal(regression, dataset.domain.denormalize_output(mean).numpy()[:, 0].astype(np.float32))


def test_an_interrupted_run_leaves_no_file_and_its_partial_file_was_readable(mini, stages, tmp_path, monkeypatch):
    from physicsnemo_climax.downscaling.writer import GenerationWriter

    reg, res = stages
    original, seen = GenerationWriter._append, []

    def append(self, block):
        if self.written == 2:
            with xr.open_dataset(self.tmp, group="prediction") as partial:  # what a user looking in would see
                seen.append(partial["10u"].shape)
            raise KeyboardInterrupt  # the run stops at the third time
        original(self, block)

    monkeypatch.setattr(GenerationWriter, "_append", append)
    with pytest.raises(KeyboardInterrupt):
        generation.generate(generation_config(mini, reg, res, tmp_path / "out.nc", "generation.max_times=4"))
    assert seen == [(4, 2, 32, 32)]
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------ forecast -> downscale
def test_forecast_then_downscale_end_to_end(tmp_path, monkeypatch):
    # ClimaX on a global 8x16 grid predicting 2 m temperature 12 h ahead
    files = write_era5(tmp_path / "raw", years=(2000, 2001))
    store = prepare(
        PrepareConfig(
            files,
            ["2m_temperature", "geopotential_500", "land_sea_mask"],
            {"train": 2000, "val": 2001, "test": 2001},
            grid=(8, 16),
            shards_per_year=2,
        ),
        tmp_path / "store",
    )
    climax_run = train_climax(
        load_config(
            [
                f"data.root={store}",
                f"run_dir={tmp_path / 'climax'}",
                "task=finetune_global",
                "task.lead_hours=12",
                "model.embed_dim=32",
                "model.depth=1",
                "model.num_heads=4",
                "train.batch_size=8",
                "train.steps=2",
                "train.progress=false",
                "train.num_workers=0",
                "train.val_every=100",
            ]
        )
    )
    # CorrDiff on a regional box, 2 m temperature in, 2 m temperature and wind out
    fine, inv = regional(times=8)
    fine_cfg = tmp_path / "fine.nc"
    fine.to_netcdf(fine_cfg)
    inv.to_netcdf(tmp_path / "inv.nc")
    common = [
        f"dataset.fine={fine_cfg}",
        "dataset.factor=4",
        "dataset.input_variables=[2m_temperature]",
        "dataset.output_variables=[2m_temperature,10m_u_component_of_wind]",
        f"dataset.invariants={tmp_path / 'inv.nc'}",
        "dataset.invariant_variables=[orography]",
        "dataset=coarse_fine",
        "model_size=tiny",
        "train.steps=2",
        "train.batch_size=2",
        "train.grad_accum=1",
        "train.num_workers=0",
        "train.progress=false",
    ]
    reg = train(load_config(common + [f"run_dir={tmp_path / 'reg'}"], "config_training_hrrr_mini_regression"))
    res = train(
        load_config(
            common + [f"run_dir={tmp_path / 'res'}", f"model.regression_checkpoint_path={reg}"],
            "config_training_hrrr_mini_diffusion",
        )
    )
    gen = load_config(
        [
            f"generation.io.reg_ckpt_filename={reg}",
            f"generation.io.res_ckpt_filename={res}",
            "generation.num_ensembles=2",
            "generation.seed_batch_size=1",
            "generation.sampler.num_steps=2",
        ],
        "config_generate_hrrr_mini",
    ).generation
    raw = xr.open_dataset(files[0])
    ic = xr.Dataset(
        {"2m_temperature": raw.t2m.isel(time=[0, 1]), "geopotential_500": raw.z.sel(level=500).isel(time=[0, 1])}
    )
    ic = ic.rename(latitude="lat", longitude="lon").assign(
        land_sea_mask=xr.open_dataset(files[-1]).lsm.rename(latitude="lat", longitude="lon").squeeze(drop=True)
    )
    truth = regional(times=8)[0].assign_coords(time=pd.date_range(ic.time.values[0], periods=8, freq="6h"))
    truth = truth.rename(lat="y", lon="x")
    from physicsnemo_climax.downscaling import pipeline
    from physicsnemo_climax.engine.plan import resolve

    plans = []
    monkeypatch.setattr(pipeline, "resolve", lambda cfg: plans.append(resolve(cfg)) or plans[-1])
    path = forecast_and_downscale(climax_run, ic, ["12h", "24h"], gen, tmp_path / "ens.nc", truth=truth)
    root = xr.open_dataset(path)
    assert len(plans) == 1 and plans[0].precision == "fp32"  # the run plan of the generation section
    assert (root.attrs["device"], root.attrs["precision"], root.attrs["apex_group_norm"]) == ("cpu", "fp32", 0)
    t0 = pd.Timestamp(ic.time.values[0])
    assert list(root.time.values) == [t0 + pd.Timedelta(h, "h") for h in (12, 24, 18, 30)]
    assert list(root.lead_time.values) == list(pd.to_timedelta([12, 24, 12, 24], unit="h"))
    assert root.lat.shape == (16, 24) and np.allclose(root.lat.values[:, 0], fine.lat.values)
    pred = xr.open_dataset(path, group="prediction")["10m_u_component_of_wind"]
    assert pred.shape == (2, 4, 16, 24) and np.isfinite(pred.values).all()
    # the coarse input is ClimaX's 2 m temperature, interpolated onto the domain and upsampled
    assert xr.open_dataset(path, group="input")["2m_temperature"].values.std() > 0
    table = score_file(path)  # per lead: corrdiff and regression for both, bilinear for 2m_temperature
    assert len(table) == 2 * (2 * 3 - 1) and sorted(set(table.lead_hours)) == [12.0, 24.0]
    with pytest.raises(KeyError, match="not outputs of the ClimaX run"):
        forecast_and_downscale(
            climax_run, ic, ["12h"], gen, tmp_path / "x.nc", variable_map={"2m_temperature": "temperature_850"}
        )
    bad_block = load_config(
        [f"generation.io.reg_ckpt_filename={reg}", "generation.num_ensembles=2", "generation.seed_batch_size=1",
         "generation.time_block=0", "generation.inference_mode=regression"],
        "config_generate_hrrr_mini",
    ).generation  # fmt: skip
    with pytest.raises(ConfigError, match="generation.time_block=0"):  # before the forecast is made
        forecast_and_downscale(climax_run, ic, ["12h"], bad_block, tmp_path / "y.nc")
    assert not (tmp_path / "y.nc").exists()
    # a pair of nets per lead range: copies of the runs, told they were trained on the 24 h forecasts,
    # take 24 h; the runs on analyses take the rest
    runs = [Path(reg), Path(res)]
    copies = [shutil.copytree(run, tmp_path / f"{run.name}_24h") for run in runs]
    for run in copies:
        record = json.loads((run / "domain.json").read_text())
        (run / "domain.json").write_text(json.dumps({**record, "lead_hours": [24.0]}))
    drawn = []
    stream = pipeline.stream

    def spy(regression, diffusion, sampler, batches, blocks, *rest, **kwargs):
        drawn.append((regression, [h for _, b in blocks for h in (b["lead_time"] / np.timedelta64(1, "h")).tolist()]))
        return stream(regression, diffusion, sampler, batches, blocks, *rest, **kwargs)

    monkeypatch.setattr(pipeline, "stream", spy)
    by_lead = load_config(
        [
            f"generation.io.reg_ckpt_filename=[{reg},{copies[0]}]",
            f"generation.io.res_ckpt_filename=[{res},{copies[1]}]",
            "generation.num_ensembles=2",
            "generation.seed_batch_size=1",
            "generation.sampler.num_steps=2",
        ],
        "config_generate_hrrr_mini",
    ).generation
    two = forecast_and_downscale(climax_run, ic, ["12h", "24h"], by_lead, tmp_path / "two.nc", truth=truth)
    assert [leads for _, leads in drawn] == [[12.0], [24.0], [12.0], [24.0]]  # the forecast's order
    assert drawn[0][0] is drawn[2][0] and drawn[1][0] is drawn[3][0] and drawn[0][0] is not drawn[1][0]
    assert xr.open_dataset(two).attrs["nets_by_lead"] == (
        f"other leads (trained on analyses): {reg} + {res}; [24.0] h: {copies[0]} + {copies[1]}"
    )
    same = xr.open_dataset(two, group="prediction")["10m_u_component_of_wind"]
    np.testing.assert_allclose(same.values, pred.values, rtol=1e-5, atol=1e-5)  # the same nets, the same draws
    # the API guards its output as the command does: an existing file only with overwrite, never an input
    from physicsnemo_climax.errors import OutputError

    written = Path(path).read_bytes()
    with pytest.raises(OutputError, match="overwrite"):
        forecast_and_downscale(climax_run, ic, ["12h"], gen, path)
    assert Path(path).read_bytes() == written
    ic.to_netcdf(tmp_path / "ic.nc")
    with xr.open_dataset(tmp_path / "ic.nc") as opened, pytest.raises(OutputError, match="input"):
        forecast_and_downscale(climax_run, opened.load(), ["12h"], gen, tmp_path / "ic.nc", overwrite=True)


def test_cli_generate_writes_scores_and_pictures(mini, stages, tmp_path):
    from physicsnemo_climax.cli import main

    reg, res = stages
    main(
        [
            "downscale",
            "generate",
            f"dataset.data_path={mini / 'mini.nc'}",
            f"dataset.stats_path={mini / 'stats.json'}",
            f"generation.io.reg_ckpt_filename={reg}",
            f"generation.io.res_ckpt_filename={res}",
            f"generation.io.output_filename={tmp_path / 'ens.nc'}",
            "generation.num_ensembles=2",
            "generation.seed_batch_size=2",
            "generation.times=[2020-01-01T03:00]",
            "generation.sampler.num_steps=2",
            "--out-dir",
            str(tmp_path / "scores"),
            "--spread-ddof",
            "0",
        ]
    )
    assert {"scores.csv", "scores.json", "scores_by_time.csv", "maps.png", "spectra.png"} <= {
        p.name for p in (tmp_path / "scores").iterdir()
    }
    written = pd.read_csv(tmp_path / "scores" / "scores.csv")
    assert np.allclose(written.spread, score_file(tmp_path / "ens.nc", spread_ddof=0).spread)
    assert not np.allclose(written.spread[0], score_file(tmp_path / "ens.nc").spread[0])  # 2 members: 1 vs sqrt(2)
    assert xr.open_dataset(tmp_path / "ens.nc").time.values[0] == np.datetime64("2020-01-01T03:00")


@pytest.mark.slow
def test_two_process_generation_gathers_members_in_seed_order(mini, stages, tmp_path):
    import os
    import subprocess
    import sys

    reg, res = stages
    args = [
        f"dataset.data_path={mini / 'mini.nc'}",
        f"dataset.stats_path={mini / 'stats.json'}",
        f"generation.io.reg_ckpt_filename={reg}",
        f"generation.io.res_ckpt_filename={res}",
        "generation.num_ensembles=4",
        "generation.seed_batch_size=1",
        "generation.times=null",
        "generation.max_times=1",
        "generation.sampler.num_steps=2",
    ]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port=29541",
        "-m",
        "physicsnemo_climax.cli",
        "downscale",
        "generate",
        "--no-score",
        *args,
        f"generation.io.output_filename={tmp_path / 'two.nc'}",
    ]
    result = subprocess.run(
        cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    one = generation.generate(
        load_config(args + [f"generation.io.output_filename={tmp_path / 'one.nc'}"], "config_generate_hrrr_mini")
    )
    a = xr.open_dataset(tmp_path / "two.nc", group="prediction")["10u"].values
    assert np.allclose(a, xr.open_dataset(one, group="prediction")["10u"].values, atol=1e-5)


@pytest.mark.slow
def test_compiled_generation_matches_eager_on_the_cpu(mini, stages, tmp_path):
    from physicsnemo_climax.engine.environment import probe

    reg, res = stages
    args = ("generation.max_times=1", "generation.num_ensembles=2", "generation.sampler.num_steps=2")
    if not probe().ok("compile"):  # refused before anything runs, naming the key
        with pytest.raises(MissingFeature, match="generation.compile=True"):
            generation.generate(generation_config(mini, reg, res, tmp_path / "c.nc", "generation.compile=true", *args))
        return
    eager = generation.generate(generation_config(mini, reg, res, tmp_path / "e.nc", *args))
    compiled = generation.generate(
        generation_config(mini, reg, res, tmp_path / "c.nc", "generation.compile=true", *args)
    )
    a, b = (xr.open_dataset(p, group="prediction")["10u"].values for p in (eager, compiled))
    assert np.allclose(a, b, atol=1e-4) and not np.array_equal(a[0], a[1])


def test_generation_times_by_valid_time_or_by_the_datasets_sample_names():
    from physicsnemo_climax.downscaling.generation import select_times

    times = np.array(["2021-01-01T00", "2021-01-01T06", "2021-01-01T09"], "datetime64[ns]")
    names = ["2021010100f00", "2021010100f06", "2021010106f03"]  # gefs_hrrr: init time + lead
    assert select_times(times, ["2021010106f03", "2021-01-01T06"], None, names) == [2, 1]
    assert select_times(times, ["2021-01-01T09"], None) == [2]
    assert select_times(times, None, 2, names) == [0, 1]
    with pytest.raises(KeyError, match=r"2021010112f00.*sample names 2021010100f00"):
        select_times(times, ["2021010112f00"], None, names)
