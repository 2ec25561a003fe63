# SPDX-License-Identifier: Apache-2.0
"""Lead-time-aware and Student-t CorrDiff training, on forecasts as coarse inputs.

The nets trained here are saved in upstream's file layout: PhysicsNeMo's own loader
(``Module.from_checkpoint``, what upstream's generation calls) reads them back as upstream's
classes, and this package's generation from them equals upstream's legacy generation.
"""

import functools
import json
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from forecast_files import FACTOR, LEADS, SHAPE, dataset_overrides, train_stage, write_forecasts
from physicsnemo.core import Module
from physicsnemo.diffusion.multi_diffusion import GridPatching2D
from physicsnemo.diffusion.noise_schedulers import StudentTEDMNoiseScheduler

from physicsnemo_climax.config import load_config
from physicsnemo_climax.data.wb2 import to_wb2
from physicsnemo_climax.downscaling import generation, models, scores, training, write_mini_file
from physicsnemo_climax.downscaling.datasets import build_dataset
from physicsnemo_climax.downscaling.domain import Domain
from physicsnemo_climax.downscaling.forecast_data import lead_time_labels
from physicsnemo_climax.downscaling.upstream_keys import translate
from physicsnemo_climax.engine import checkpointing
from physicsnemo_climax.engine.plan import RunPlan
from physicsnemo_climax.errors import CheckpointMismatch, ConfigError, DataError, UnknownName

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from physicsnemo.diffusion.generate import diffusion_step, regression_step
    from physicsnemo.diffusion.samplers import stochastic_sampler


@pytest.fixture(scope="module")
def forecasts(tmp_path_factory):
    return write_forecasts(tmp_path_factory.mktemp("forecasts"))


def test_forecast_samples_pair_each_forecast_with_the_analysis_at_its_valid_time(forecasts):
    cfg = load_config(dataset_overrides(forecasts, "[72,6]"), "config_training_hrrr_mini_regression")
    data = build_dataset(cfg.dataset)
    fc, an = xr.open_dataset(forecasts / "forecasts.nc"), xr.open_dataset(forecasts / "analyses.nc")
    assert data.leads == [72.0, 6.0] and len(data) == 12 * 2  # every valid time is in the analyses
    for k in (0, 1, 5, 23):
        hours = data.sample_lead_hours[k]
        init = pd.Timestamp(data.times[k]) - pd.Timedelta(hours=hours)
        assert data.sample_names[k] == f"{init:%Y-%m-%dT%H}+{hours:03.0f}h"
        expected = fc["u"].sel(time=init, lead_time=pd.Timedelta(hours=hours)).values
        np.testing.assert_array_equal(data.coarse_fields(k)[0], expected)
        np.testing.assert_array_equal(data.fine_fields(k)[1], an["v"].sel(time=data.times[k]).values)
        assert int(data[k]["lead_time_label"]) == [72.0, 6.0].index(hours)
    with pytest.raises(UnknownName, match=r"dataset.leads \[24.0\]: the forecasts have leads \[6.0, 72.0, 168.0\]"):
        build_dataset(load_config(dataset_overrides(forecasts, "[24]"), "config_training_hrrr_mini_regression").dataset)


def test_forecasts_in_weatherbench2_layout_are_read_in_the_analyses_orientation(forecasts, tmp_path):
    """A WB2 forecast Zarr (latitudes south to north, prediction_timedelta) paired with analyses stored
    north to south: each forecast is read flipped to the analyses' order."""
    fc = xr.open_dataset(forecasts / "forecasts.nc")
    to_wb2(fc).to_zarr(tmp_path / "forecasts.zarr")
    an = xr.open_dataset(forecasts / "analyses.nc").isel(lat=slice(None, None, -1))
    an.to_netcdf(tmp_path / "analyses_north_first.nc")
    cfg = load_config(
        [
            "dataset=forecast_coarse_fine",
            f"dataset.fine={tmp_path / 'analyses_north_first.nc'}",
            f"dataset.coarse={tmp_path / 'forecasts.zarr'}",
            "dataset.output_variables=[u,v]",
        ],
        "config_training_hrrr_mini_regression",
    )
    data = build_dataset(cfg.dataset)
    assert data.leads == LEADS and len(data) == 12 * 3
    hours = data.sample_lead_hours[4]
    init = pd.Timestamp(data.times[4]) - pd.Timedelta(hours=hours)
    expected = fc["v"].sel(time=init, lead_time=pd.Timedelta(hours=hours)).values[::-1]
    np.testing.assert_array_equal(data.coarse_fields(4)[1], expected)
    np.testing.assert_array_equal(data.fine_fields(4)[1], an["v"].sel(time=data.times[4]).values)


def by_level(ds, level):
    """Each variable of ``ds`` on a ``level`` axis holding ``level`` alone, as ERA5 files hold
    variables on pressure levels."""
    return ds.expand_dims(level=[level], axis=ds["u"].dims.index("lat"))


def naive_area_mean(field, lat, factor):
    """``[..., H, W] -> [..., H/f, W/f]`` block by block, each cell weighted by cos(latitude)."""
    h, w = field.shape[-2] // factor, field.shape[-1] // factor
    out = np.empty((*field.shape[:-2], h, w))
    for i in range(h):
        rows = slice(i * factor, (i + 1) * factor)
        weights = np.cos(np.deg2rad(lat[rows]))[:, None]
        for j in range(w):
            block = field[..., rows, j * factor : (j + 1) * factor]
            out[..., i, j] = (block * weights).sum((-2, -1)) / (weights.sum() * factor)
    return out


def test_forecasts_on_the_fine_grid_are_coarsened_and_analyses_read_by_level_from_per_variable_files(
    forecasts, tmp_path
):
    """Forecasts given on the fine grid (a global model's output there) are coarsened by the factor,
    as the analyses are for a run trained on them; analyses stored one folder per variable, in two
    periods each, with variables on a level axis, are read by their names on that level."""
    an = xr.open_dataset(forecasts / "analyses.nc")
    for name in ("u", "v"):
        for k, period in enumerate((slice(0, 30), slice(30, None))):
            (tmp_path / name).mkdir(exist_ok=True)
            by_level(an[[name]].rename({name: "u"}), 850).rename({"u": name}).isel(time=period).to_netcdf(
                tmp_path / name / f"{name}_{k}.nc"
            )
    inits = an.time.values[:8:2]
    fine_forecast = xr.concat(
        [an.sel(time=inits + np.timedelta64(hours, "h")).assign_coords(time=inits) * 1.1 for hours in (6, 72)],
        dim=pd.Index(pd.to_timedelta([6, 72], "h"), name="lead_time"),
    ).transpose("time", "lead_time", "lat", "lon")
    by_level(fine_forecast, 850).to_netcdf(tmp_path / "forecast_fine.nc")
    common = [
        f"dataset.fine={tmp_path}/*/*.nc",
        "dataset.output_variables=[u_850,v_850]",
        f"dataset.factor={FACTOR}",
    ]
    data = build_dataset(
        load_config(
            ["dataset=forecast_coarse_fine", f"dataset.coarse={tmp_path / 'forecast_fine.nc'}", *common],
            "config_training_hrrr_mini_regression",
        ).dataset
    )
    assert len(data) == 8 and data.coarse_lat.shape == (SHAPE[0] // FACTOR,)
    for k in (0, 3, 7):
        valid = pd.Timestamp(data.times[k])
        init = valid - pd.Timedelta(hours=data.sample_lead_hours[k])
        stored = fine_forecast["v"].sel(time=init, lead_time=valid - init).values
        np.testing.assert_allclose(data.coarse_fields(k)[1], naive_area_mean(stored, an.lat.values, FACTOR), rtol=1e-5)
        np.testing.assert_array_equal(data.fine_fields(k)[0], an["u"].sel(time=valid).values)
    analyses = build_dataset(
        load_config(["dataset=coarse_fine", *common], "config_training_hrrr_mini_regression").dataset
    )
    assert len(analyses) == 60  # both periods of both variables
    np.testing.assert_allclose(
        analyses.coarse_fields(41)[0], naive_area_mean(an["u"].values[41], an.lat.values, FACTOR), rtol=1e-5
    )
    an.isel(time=slice(0, 50)).u.to_netcdf(tmp_path / "u" / "u_short.nc")  # u now has other times than v
    (tmp_path / "u" / "u_1.nc").unlink()
    with pytest.raises(DataError, match=r"the files of different variables do not share their times"):
        build_dataset(load_config(["dataset=coarse_fine", *common], "config_training_hrrr_mini_regression").dataset)


def test_cosine_lead_codes_are_the_dct_basis_over_the_leads():
    codes = models.cosine_lead_codes(3, 4)
    half, flat = np.sqrt(3) / 2, np.sqrt(0.5)  # cos(pi / 6), and the constant channel's 1 / sqrt(2)
    expected = [[flat, half, 0.5, 0], [flat, 0, -1, 0], [flat, -half, 0.5, 0]]
    np.testing.assert_allclose(codes.numpy(), expected, atol=1e-7)
    square = models.cosine_lead_codes(5, 5).double()
    gram = square @ square.T  # orthogonal codes: distinct leads never look alike to a linear layer
    np.testing.assert_allclose(gram - torch.diag(torch.diagonal(gram)), 0, atol=1e-6)


@pytest.mark.parametrize("how", ["cosine", "random"])
def test_a_new_lead_time_aware_net_starts_from_the_asked_embedding(forecasts, how):
    """``cosine``: every grid point of lead ``l`` holds lead ``l``'s code, in both stages;
    ``random``: upstream's independent normal values per point."""
    common = [*dataset_overrides(forecasts), "model_size=tiny"]
    domain = build_dataset(load_config(common, "config_training_hrrr_mini_regression").dataset).domain
    stages = [
        ("config_training_hrrr_mini_regression", "lt_aware_regression", models.build_regression),
        ("config_training_hrrr_mini_diffusion", "lt_aware_patched_diffusion", models.build_diffusion),
    ]
    for name, model, build in stages:
        overrides = [f"model={model}", "model.model_args.lead_time_steps=3", f"model.lead_time_init={how}"]
        cfg = load_config([*common, *overrides], name)
        embedding = build(cfg, domain, RunPlan()).model.lt_embd.detach()  # (steps, channels, H, W)
        steps, channels = embedding.shape[:2]
        if how == "cosine":
            codes = models.cosine_lead_codes(steps, channels)[:, :, None, None]
            torch.testing.assert_close(embedding, codes.expand_as(embedding))
        else:
            assert 0.9 < float(embedding.std()) < 1.1 and float(embedding.std(dim=(2, 3)).min()) > 0.8


def test_an_unknown_lead_time_init_is_refused_naming_the_key(forecasts):
    overrides = [*dataset_overrides(forecasts), "model=lt_aware_regression", "model.lead_time_init=uniform"]
    cfg = load_config([*overrides, "model_size=tiny"], "config_training_hrrr_mini_regression")
    domain = build_dataset(cfg.dataset).domain
    with pytest.raises(ConfigError, match=r"model.lead_time_init='uniform': choose one of \['random', 'cosine'\]"):
        models.build_regression(cfg, domain, RunPlan())


@pytest.fixture(scope="module")
def lead_time_runs(forecasts, tmp_path_factory):
    root = tmp_path_factory.mktemp("lt_runs")
    reg = train_stage(forecasts, root / "reg", "lt_aware_regression")
    res = train_stage(
        forecasts,
        root / "res",
        "lt_aware_patched_diffusion",
        f"model.regression_checkpoint_path={reg}",
        "model.patch_shape_x=16",
        "model.patch_shape_y=16",
        "model.patch_num=2",
        name="config_training_hrrr_mini_diffusion",
    )
    return reg, res


@pytest.mark.slow
def test_lead_time_aware_stages_train_and_generate_as_upstream_does(forecasts, lead_time_runs):
    """Both stages train with the forecasts' lead-time labels; the files load with PhysicsNeMo's own
    loader as upstream's lead-time-aware classes, and generation here equals upstream's."""
    reg_run, res_run = lead_time_runs
    files = [checkpointing.model_file(run / "checkpoints") for run in lead_time_runs]
    reg, res = (Module.from_checkpoint(str(f)).eval() for f in files)  # upstream's generate.py loads so
    assert type(reg).__name__ == "CorrDiffRegressionUNet" and type(res).__name__ == "EDMPrecondSuperResolution"
    assert type(reg.model).__name__ == type(res.model).__name__ == "SongUNetPosLtEmbd"
    assert reg.model.lead_time_steps == res.model.lead_time_steps == 3
    for run in lead_time_runs:
        rows = pd.read_csv(run / "metrics.csv", names=["step", "key", "value"])
        assert np.isfinite(rows[rows.key == "val/loss"].value).all()  # validated on the held-out samples
    data = build_dataset(load_config(dataset_overrides(forecasts), "config_training_hrrr_mini_regression").dataset)
    x = torch.stack([data[i]["input"] for i in (0, 2)])
    labels = torch.tensor([int(data[i]["lead_time_label"]) for i in (0, 2)])
    assert labels.tolist() == [0, 2]
    gen = load_config(
        [
            "generation=patched",
            "generation.patch_shape_x=16",
            "generation.patch_shape_y=16",
            "generation.overlap_pix=4",
            "generation.boundary_pix=2",
            "generation.num_ensembles=2",
            "generation.seed_batch_size=2",
            "generation.sampler.num_steps=4",
        ],
        "config_generate_hrrr_mini",
    ).generation
    mean, members = generation.downscale(
        reg, res, x, generation.seed_batches(2, 2), generation.build_sampler(gen, SHAPE), True, lead_time_label=labels
    )
    patching = GridPatching2D(SHAPE, (16, 16), 4, 2)
    sampler = functools.partial(stochastic_sampler, num_steps=4, patching=patching)
    for t in range(2):
        label = labels[t : t + 1]
        with torch.no_grad():
            up_mean = regression_step(reg, x[t : t + 1], (2, 2, *SHAPE), lead_time_label=label)
            up = diffusion_step(
                res, sampler, SHAPE, 2, [torch.tensor([0, 1])], x[t : t + 1].expand(2, -1, -1, -1), 0,
                torch.device("cpu"), mean_hr=up_mean[:1], lead_time_label=label.expand(2),
            )  # fmt: skip
        torch.testing.assert_close(mean[t], up_mean[0].float(), rtol=1e-6, atol=1e-6)
        expected = up_mean[:1].float() + up.float()
        assert float((members[:, t] - expected).norm() / expected.norm()) < 1e-5


@pytest.mark.slow
def test_generation_from_forecasts_labels_by_the_trained_leads_and_is_scored_per_lead(
    forecasts, lead_time_runs, tmp_path, monkeypatch
):
    """Generating from forecasts at leads [168, 6] with nets trained on [6, 72, 168]: each sample
    gets its lead's label in training (2 and 0, not its position here), the file records the leads,
    and its scores come per lead."""
    reg_run, res_run = lead_time_runs
    told = []
    downscale = generation.downscale

    def spy(regression, diffusion, x, batches, sampler, hr_mean, rank, world, labels):
        told.append(labels.tolist())
        return downscale(regression, diffusion, x, batches, sampler, hr_mean, rank, world, labels)

    monkeypatch.setattr(generation, "downscale", spy)
    out = tmp_path / "gen.nc"
    cfg = load_config(
        [
            *dataset_overrides(forecasts, "[168,6]"),
            f"generation.io.reg_ckpt_filename={reg_run}",
            f"generation.io.res_ckpt_filename={res_run}",
            f"generation.io.output_filename={out}",
            "generation=patched",
            "generation.patch_shape_x=16",
            "generation.patch_shape_y=16",
            "generation.sampler.num_steps=2",
            "generation.times=null",
            "generation.max_times=4",
            "generation.time_block=4",
        ],
        "config_generate_hrrr_mini",
    )
    generation.generate(cfg)
    data = build_dataset(cfg.dataset)
    hours = data.sample_lead_hours[:4]
    assert told == [[LEADS.index(h) for h in hours]]  # the trained positions, e.g. 168 h -> 2
    root = xr.open_dataset(out)
    np.testing.assert_array_equal(root.lead_time.values / np.timedelta64(1, "h"), hours)
    table = scores.score_file(out)
    assert sorted(set(table.lead_hours)) == [6.0, 168.0]
    assert len(table) == 2 * 2 * 3  # (corrdiff, regression, bilinear) x (u, v) x two leads


def test_a_lead_time_aware_net_on_data_without_lead_times_is_an_error(tmp_path):
    write_mini_file(
        tmp_path / "m.nc", tmp_path / "s.json", samples=6, shape=(32, 32), factor=4, invariant_shape=(48, 48)
    )
    cfg = load_config(
        [
            f"dataset.data_path={tmp_path / 'm.nc'}",
            f"dataset.stats_path={tmp_path / 's.json'}",
            "model=lt_aware_regression",
            f"run_dir={tmp_path / 'run'}",
            "model_size=tiny",
            "train.steps=1",
            "train.batch_size=2",
            "train.num_workers=0",
            "train.progress=false",
        ],
        "config_training_hrrr_mini_regression",
    )
    with pytest.raises(ValueError, match=r"a lead-time-aware net \(9 lead-time steps\), but the input has no lead"):
        training.train(cfg)


# ----------------------------------------------------------------------------- starting from a trained net


@pytest.fixture(scope="module")
def runs_without_lead_times(forecasts, tmp_path_factory):
    """Both stages trained without lead times, on the whole domain (as on analyses)."""
    root = tmp_path_factory.mktemp("plain_runs")
    reg = train_stage(forecasts, root / "reg", "regression")
    res = train_stage(
        forecasts, root / "res", "patched_diffusion", f"model.regression_checkpoint_path={reg}",
        *WHOLE_DOMAIN, name="config_training_hrrr_mini_diffusion",
    )  # fmt: skip
    return reg, res


WHOLE_DOMAIN = ["model.patch_shape_x=32", "model.patch_shape_y=32"]


def started_stage(forecasts, tmp_path, stage, source, *overrides):
    """The lead-time-aware ``stage`` net a run with ``model.init=source`` starts training from."""
    name = f"config_training_hrrr_mini_{stage}"
    model = "lt_aware_regression" if stage == "regression" else "lt_aware_patched_diffusion"
    common = [*dataset_overrides(forecasts), f"model={model}", "model.model_args.lead_time_steps=3"]
    cfg = load_config([*common, "model_size=tiny", f"model.init={source}", f"run_dir={tmp_path}", *overrides], name)
    data = build_dataset(cfg.dataset)
    if stage == "regression":
        return training.regression_stage(cfg, data.domain, RunPlan())[0], data
    return training.diffusion_stage(cfg, data.domain, RunPlan(), "cpu", data[0])[0], data


def test_a_lead_time_aware_regression_started_from_one_without_gives_its_outputs_at_every_lead(
    forecasts, runs_without_lead_times, tmp_path
):
    source_run = runs_without_lead_times[0]
    net, data = started_stage(forecasts, tmp_path, "regression", source_run)
    source = Module.from_checkpoint(str(checkpointing.model_file(source_run / "checkpoints"))).eval()
    x = torch.stack([data[i]["input"] for i in range(3)])
    zeros = torch.zeros(3, 2, *SHAPE)
    with torch.no_grad():
        expected = source(zeros, x)
        for label in range(3):
            got = net.eval()(zeros, x, lead_time_label=torch.full((3,), label))
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    first, before = net.model.enc["32x32_conv"].weight, source.model.enc["32x32_conv"].weight
    lead = net.model.lead_time_channels  # the last input channels: [inputs, grid, lead time]
    assert first.shape[1] == before.shape[1] + lead
    assert torch.count_nonzero(first[:, -lead:]) == 0
    torch.testing.assert_close(first[:, :-lead], before)


@pytest.mark.slow
def test_a_lead_time_aware_diffusion_stage_started_from_one_without_denoises_as_it_does(
    forecasts, runs_without_lead_times, tmp_path
):
    reg_run, res_run = runs_without_lead_times
    net, data = started_stage(
        forecasts, tmp_path, "diffusion", res_run, f"model.regression_checkpoint_path={reg_run}", *WHOLE_DOMAIN
    )
    source = Module.from_checkpoint(str(checkpointing.model_file(res_run / "checkpoints"))).eval()
    generator = torch.Generator().manual_seed(0)
    noisy = torch.randn(2, 2, *SHAPE, generator=generator)
    condition = torch.randn(2, 4, *SHAPE, generator=generator)  # [mean, input]
    sigma = torch.tensor([0.5, 3.0]).reshape(-1, 1, 1, 1)
    with torch.no_grad():
        expected = source(noisy, condition, sigma)
        for label in range(3):
            got = net.eval()(noisy, condition, sigma, lead_time_label=torch.full((2,), label))
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_a_start_from_a_net_that_does_not_fit_is_refused_naming_model_init(
    forecasts, runs_without_lead_times, tmp_path
):
    other = tmp_path / "other"
    shutil.copytree(runs_without_lead_times[0], other)
    domain = json.loads((other / "domain.json").read_text())
    domain["output_variables"] = ["v", "u"]
    (other / "domain.json").write_text(json.dumps(domain))
    with pytest.raises(CheckpointMismatch, match=r"model.init=.*other: trained with output_variables \['v', 'u'\]"):
        started_stage(forecasts, tmp_path / "a", "regression", other)
    best = other / "checkpoints" / "best"  # the run's best checkpoint reads the run's domain.json
    assert best.is_dir()
    with pytest.raises(CheckpointMismatch, match=r"model.init=.*best: trained with output_variables \['v', 'u'\]"):
        started_stage(forecasts, tmp_path / "a2", "regression", best)
    aware = tmp_path / "aware.mdlus"  # a lead-time-aware net saved alone, into a net without lead times
    started_stage(forecasts, tmp_path / "b", "regression", runs_without_lead_times[0])[0].save(str(aware))
    cfg = load_config(
        [*dataset_overrides(forecasts), "model_size=tiny", f"model.init={aware}"],
        "config_training_hrrr_mini_regression",
    )
    with pytest.raises(CheckpointMismatch, match=r"model.init=.*aware.mdlus: weights this net does not have"):
        training.regression_stage(cfg, build_dataset(cfg.dataset).domain, RunPlan())


def test_a_run_resuming_from_its_checkpoints_does_not_read_model_init_again(
    forecasts, runs_without_lead_times, tmp_path
):
    source = shutil.copytree(runs_without_lead_times[0], tmp_path / "source")
    run = train_stage(forecasts, tmp_path / "run", "lt_aware_regression", f"model.init={source}")
    trained = (run / "metrics.csv").read_text()
    shutil.rmtree(source)  # moved away after the run began
    assert train_stage(forecasts, run, "lt_aware_regression", f"model.init={source}") == run
    assert (run / "metrics.csv").read_text() == trained  # resumed at its last step: nothing retrained
    with pytest.raises(FileNotFoundError, match="source"):  # a new run still starts from it
        train_stage(forecasts, tmp_path / "new", "lt_aware_regression", f"model.init={source}")


# ----------------------------------------------------------------------------- Student-t


def test_the_student_t_loss_is_t_edm_s_weighted_denoising_error():
    """The loss computed directly: sigma ~ exp(N(P_mean, P_std)), Student-t noise with one chi-square
    scale per sample, the net at sigma (it scales it by sqrt(nu / (nu - 2)) itself) and EDM's weight
    at the scaled sigma."""
    torch.manual_seed(0)
    nu, p_mean, p_std, sd = 5, -1.2, 1.2, 0.5
    target, img_lr = torch.randn(3, 2, 8, 8), torch.randn(3, 4, 8, 8)
    seen = []

    def net(x, condition, sigma, embedding_selector=None):
        seen.append(sigma.clone())
        sigma *= np.sqrt(nu / (nu - 2))  # as tEDMPrecondSuperRes does, in place
        return 0.9 * x + 0.1 * condition[:, :2] * sigma

    def regression(x, img_lr):
        return img_lr[:, :2] * 0.5

    scheduler = StudentTEDMNoiseScheduler(nu=nu, P_mean=p_mean, P_std=p_std, sigma_data=sd)
    torch.manual_seed(7)
    loss = training.residual_loss(net, regression, scheduler, target, img_lr, False)
    torch.manual_seed(7)
    sigma = (torch.randn(3) * p_std + p_mean).exp()
    normal = torch.randn(3, 2, 8, 8)
    kappa = torch.distributions.Chi2(torch.tensor(float(nu))).sample((3, 1, 1, 1)) / nu
    residual = target - regression(None, img_lr)
    x = residual + sigma.view(-1, 1, 1, 1) * normal / kappa.sqrt()
    scaled = sigma.view(-1, 1, 1, 1) * np.sqrt(nu / (nu - 2))
    denoised = 0.9 * x + 0.1 * img_lr[:, :2] * scaled
    weight = (scaled**2 + sd**2) / (scaled * sd) ** 2
    torch.testing.assert_close(loss, (weight * (denoised - residual) ** 2).mean(), rtol=1e-5, atol=0)
    torch.testing.assert_close(seen[0].reshape(-1), sigma)  # the net was handed the unscaled level


@pytest.mark.slow
def test_a_student_t_stage_trains_and_generates_from_its_student_t_noise(tmp_path):
    write_mini_file(
        tmp_path / "m.nc", tmp_path / "s.json", samples=10, shape=(32, 32), factor=4, invariant_shape=(48, 48)
    )
    common = [
        f"dataset.data_path={tmp_path / 'm.nc'}",
        f"dataset.stats_path={tmp_path / 's.json'}",
        "model_size=tiny",
        "train.steps=2",
        "train.batch_size=4",
        "train.num_workers=0",
        "train.progress=false",
        "train.ckpt_every=2",
        "train.val_every=2",
        "train.val_batches=1",
    ]
    reg = training.train(load_config([*common, f"run_dir={tmp_path / 'reg'}"], "config_training_hrrr_mini_regression"))
    res = training.train(
        load_config(
            [
                *common,
                f"run_dir={tmp_path / 'res'}",
                f"model.regression_checkpoint_path={reg}",
                *translate(["++training.hp.distribution=student_t", "++training.hp.student_t_nu=6"]),  # upstream's
            ],
            "config_training_hrrr_mini_diffusion",
        )
    )
    net = Module.from_checkpoint(str(checkpointing.model_file(res / "checkpoints"))).eval()
    assert type(net).__name__ == "tEDMPrecondSuperRes" and net.nu == 6
    with pytest.raises(ConfigError, match=r"model.student_t_nu=2: Student-t training needs an integer above 2"):
        training.train(
            load_config(
                [*common, f"run_dir={tmp_path / 'bad'}", f"model.regression_checkpoint_path={reg}",
                 "model.distribution=student_t", "model.student_t_nu=2"],
                "config_training_hrrr_mini_diffusion",
            )
        )  # fmt: skip
    assert not (tmp_path / "bad" / "checkpoints").exists()


def test_a_run_on_forecasts_records_its_leads_and_a_forecast_gets_its_lead_s_label(forecasts, tmp_path):
    """The leads (label order) go to domain.json with the run; forecast -> downscale gives each
    forecast lead its label, and refuses a lead the run was not trained on before any work."""
    data = build_dataset(
        load_config(dataset_overrides(forecasts, "[168,6]"), "config_training_hrrr_mini_regression").dataset
    )
    data.domain.save(tmp_path)
    domain = Domain.load(tmp_path)
    assert domain.lead_hours == [168.0, 6.0]
    assert lead_time_labels(domain, [6, 168, 6]).tolist() == [1, 0, 1]
    with pytest.raises(ConfigError, match=r"lead \[72.0\] h: the CorrDiff run was trained on forecasts at leads"):
        lead_time_labels(domain, [6, 72])
    domain.lead_hours = None
    assert lead_time_labels(domain, [6, 72]) is None  # a run on analyses: no labels
