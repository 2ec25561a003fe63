# SPDX-License-Identifier: Apache-2.0
"""Lead-time-aware and Student-t CorrDiff training, on forecasts as coarse inputs.

The nets trained here are saved in upstream's file layout: PhysicsNeMo's own loader
(``Module.from_checkpoint``, what upstream's generation calls) reads them back as upstream's
classes, and this package's generation from them equals upstream's legacy generation.
"""

import functools
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from physicsnemo.core import Module
from physicsnemo.diffusion.multi_diffusion import GridPatching2D
from physicsnemo.diffusion.noise_schedulers import StudentTEDMNoiseScheduler

from physicsnemo_climax.config import load_config
from physicsnemo_climax.data.wb2 import to_wb2
from physicsnemo_climax.downscaling import generation, training, write_mini_file
from physicsnemo_climax.downscaling.datasets import build_dataset
from physicsnemo_climax.downscaling.domain import Domain
from physicsnemo_climax.downscaling.pipeline import lead_time_labels
from physicsnemo_climax.downscaling.upstream_keys import translate
from physicsnemo_climax.engine import checkpointing
from physicsnemo_climax.errors import ConfigError, UnknownName

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from physicsnemo.diffusion.generate import diffusion_step, regression_step
    from physicsnemo.diffusion.samplers import stochastic_sampler

LEADS = [6.0, 72.0, 168.0]
SHAPE, FACTOR = (32, 32), 4


@pytest.fixture(scope="module")
def forecasts(tmp_path_factory):
    """Analyses (fine, 6-hourly, 15 days) and forecasts of them (coarse: the analysis block mean at
    the valid time plus an error growing with the lead), with coordinates."""
    root = tmp_path_factory.mktemp("forecasts")
    rng = np.random.default_rng(0)
    times = pd.date_range("2000-01-01", periods=60, freq="6h")
    lat, lon = np.linspace(-30, 30, SHAPE[0]), np.linspace(0, 90, SHAPE[1])
    yy, xx = np.meshgrid(np.arange(SHAPE[0]), np.arange(SHAPE[1]), indexing="ij")
    phase = np.arange(len(times))[:, None, None] / 6.0
    fields = {
        "u": 5 * np.sin(xx / 4 + phase) + rng.normal(0, 1, (len(times), *SHAPE)),
        "v": 3 * np.cos(yy / 5 - phase) + rng.normal(0, 1, (len(times), *SHAPE)),
    }
    dims = ("time", "lat", "lon")
    analyses = xr.Dataset(
        {k: (dims, v.astype("float32"), {"units": "m s-1"}) for k, v in fields.items()},
        coords={"time": times, "lat": lat, "lon": lon},
    )
    inits = times[:24:2]
    coarse = {}
    for k, v in fields.items():
        blocks = v.reshape(len(times), SHAPE[0] // FACTOR, FACTOR, SHAPE[1] // FACTOR, FACTOR).mean((2, 4))
        out = np.empty((len(inits), len(LEADS), *blocks.shape[1:]), "float32")
        for i, init in enumerate(inits):
            for j, hours in enumerate(LEADS):
                valid = times.get_loc(init + pd.Timedelta(hours=hours))
                out[i, j] = blocks[valid] + rng.normal(0, 0.02 * hours, blocks.shape[1:])
        coarse[k] = (("time", "lead_time", "lat", "lon"), out, {"units": "m s-1"})
    forecast = xr.Dataset(
        coarse,
        coords={
            "time": inits,
            "lead_time": pd.to_timedelta(LEADS, unit="h"),
            "lat": lat.reshape(-1, FACTOR).mean(1),
            "lon": lon.reshape(-1, FACTOR).mean(1),
        },
    )
    analyses.to_netcdf(root / "analyses.nc")
    forecast.to_netcdf(root / "forecasts.nc")
    return root


def dataset_overrides(root, leads="[6,72,168]"):
    return [
        "dataset=forecast_coarse_fine",
        f"dataset.fine={root / 'analyses.nc'}",
        f"dataset.coarse={root / 'forecasts.nc'}",
        "dataset.output_variables=[u,v]",
        f"dataset.leads={leads}",
    ]


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


def train_stage(forecasts, run_dir, model, *overrides, name="config_training_hrrr_mini_regression"):
    cfg = load_config(
        [
            *dataset_overrides(forecasts),
            f"model={model}",
            f"run_dir={run_dir}",
            "model_size=tiny",
            "model.model_args.lead_time_steps=3",
            "train.steps=3",
            "train.batch_size=4",
            "train.grad_accum=1",
            "train.num_workers=0",
            "train.progress=false",
            "train.ckpt_every=3",
            "train.val_every=3",
            "train.val_batches=1",
            *overrides,
        ],
        name,
    )
    return training.train(cfg)


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
