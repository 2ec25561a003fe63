# SPDX-License-Identifier: Apache-2.0
"""The stochastic ClimaX (``model.noise_dim``) and CRPS training (``train.loss=crps``)."""

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

from physicsnemo_climax.cli import main
from physicsnemo_climax.config import load_config, load_run_config
from physicsnemo_climax.data import PrepareConfig, prepare
from physicsnemo_climax.data.loader import Batch
from physicsnemo_climax.engine import checkpointing
from physicsnemo_climax.engine.checks import ConfigError
from physicsnemo_climax.errors import InputError
from physicsnemo_climax.forecasting import Run, forecast
from physicsnemo_climax.forecasting.core import Start, lead_forecasts, member_starts
from physicsnemo_climax.forecasting.ensembles import EnsembleSpec, model_noise, noise_generator
from physicsnemo_climax.forecasting.training import Loss, forecast_loss, loss_of, member_predictions
from physicsnemo_climax.metrics import latitude_weights, weighted_crps_loss
from physicsnemo_climax.models import ClimaX
from physicsnemo_climax.models.pretrained import load_weights, read_weights
from physicsnemo_climax.tasks import evaluate, train

VARS = ["t2m", "z500"]


def tiny(noise_dim=0, seed=0, **kw):
    torch.manual_seed(seed)
    args = dict(variables=VARS, img_size=(8, 16), embed_dim=32, depth=2, num_heads=4, drop_path=0.0, drop_rate=0.0)
    return ClimaX(**{**args, **kw}, noise_dim=noise_dim).eval()


# ------------------------------------------------------------------ the loss
def direct_crps(members, target, lat, alpha):
    """The almost-fair CRPS the slow way: every pair of members, in float64."""
    m = members.shape[0]
    x, y = members.double(), target.double()
    skill = sum((x[i] - y).abs() for i in range(m)) / m
    pairs = sum((x[i] - x[j]).abs() for i in range(m) for j in range(m))
    fair, own = skill - pairs / (2 * m * (m - 1)), skill - pairs / (2 * m * m)
    w = latitude_weights(lat).double()[:, None]
    return float(((alpha * fair + (1 - alpha) * own) * w).mean())


@pytest.mark.parametrize("alpha", [1.0, 0.95, 0.0])
@pytest.mark.parametrize("m", [2, 5])
def test_crps_loss_is_the_direct_computation(alpha, m):
    g = torch.Generator().manual_seed(m)
    members, target = torch.randn(m, 3, 2, 6, 8, generator=g), torch.randn(3, 2, 6, 8, generator=g)
    lat = torch.linspace(-75, 75, 6)
    assert weighted_crps_loss(members, target, lat, alpha).item() == pytest.approx(
        direct_crps(members, target, lat, alpha), rel=1e-5
    )


def test_crps_loss_two_members_the_almost_fair_form():
    """AIFS-CRPS's form: pairs of distinct members, the spread discounted by (1 - (1 - alpha) / M)."""
    members, target, lat = torch.tensor([[[[1.0]]], [[[3.0]]]]), torch.tensor([[[0.0]]]), torch.zeros(1)
    # E|X - y| = 2, sum over distinct pairs |x_i - x_j| = 4
    expected = 2.0 - (1 - 0.05 / 2) * 4 / (2 * 2 * 1)
    assert weighted_crps_loss(members, target, lat, 0.95).item() == pytest.approx(expected)
    with pytest.raises(InputError, match="at least 2 members"):
        weighted_crps_loss(members[:1], target, lat)


def test_loss_of_members_is_the_crps_of_each_step_averaged():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(2, 2, 3, 8, 16, generator=g)  # a rollout of 2 steps
    preds = [torch.randn(4, 3, 3, 8, 16, generator=g)[:, :2] for _ in range(2)]

    class Batch:
        pass

    batch = Batch()
    batch.y = y
    region = tiny().resolve_region(None)
    got = loss_of(preds, batch, region, Loss("crps", 4, 0.95)).item()
    want = np.mean([direct_crps(p, y[:, s], region.lat, 0.95) for s, p in enumerate(preds)])
    assert got == pytest.approx(want, rel=1e-5)


# ------------------------------------------------------------------ the model
def test_a_deterministic_model_takes_no_noise_and_draws_none():
    model = tiny()
    assert not model.stochastic and not any("noise" in k for k in model.state_dict())
    x, lead = torch.randn(2, 2, 8, 16), torch.full((2,), 6.0)
    with pytest.raises(InputError, match="deterministic"):
        model(x, lead, VARS, noise=torch.zeros(2, 32, 4))
    state = torch.random.get_rng_state()
    model(x, lead, VARS)
    assert torch.equal(state, torch.random.get_rng_state())  # the option off draws nothing


def test_deterministic_weights_in_a_stochastic_model_give_the_same_forecast_whatever_the_noise(tmp_path):
    plain = tiny()
    plain.save(str(tmp_path / "plain.mdlus"))
    stochastic = ClimaX.from_pretrained(str(tmp_path / "plain.mdlus"), **stochastic_args()).eval()
    assert all(not p.any() for n, p in stochastic.named_parameters() if n.startswith("noise_proj"))
    x, lead = torch.randn(3, 2, 8, 16), torch.full((3,), 24.0)
    with torch.no_grad():
        expected = plain(x, lead, VARS)
        assert torch.equal(stochastic(x, lead, VARS), expected)
        assert torch.equal(stochastic(x, lead, VARS, noise=3 * stochastic.draw_noise(3)), expected)
        assert torch.equal(
            stochastic(x, lead, VARS, region=(-30, 30, 0, 180)), plain(x, lead, VARS, region=(-30, 30, 0, 180))
        )


def stochastic_args():
    return dict(
        variables=VARS, img_size=(8, 16), embed_dim=32, depth=2, num_heads=4, drop_path=0.0, drop_rate=0.0, noise_dim=4
    )


def test_a_stochastic_model_loads_back_into_a_deterministic_one_and_saves_as_stochastic(tmp_path):
    model = tiny(noise_dim=4)
    with torch.no_grad():
        for p in model.noise_proj.parameters():
            p.normal_()
    model.save(str(tmp_path / "s.mdlus"))
    again = Module.from_checkpoint(str(tmp_path / "s.mdlus")).eval()
    assert again.noise_dim == 4 and again.stochastic
    x, lead, noise = torch.randn(2, 2, 8, 16), torch.full((2,), 6.0), model.draw_noise(2)
    with torch.no_grad():
        assert torch.equal(again(x, lead, VARS, noise=noise), model(x, lead, VARS, noise=noise))
    plain = tiny()
    load_weights(plain, read_weights(tmp_path / "s.mdlus"))  # the noise maps dropped, the rest loaded
    with torch.no_grad():
        zero = torch.zeros(model.noise_shape(2))
        assert torch.equal(plain(x, lead, VARS), model(x, lead, VARS, noise=zero))


def test_noise_changes_the_forecast_once_trained_and_is_checked():
    model = tiny(noise_dim=4)
    with torch.no_grad():
        for p in model.noise_proj.parameters():
            p.normal_(std=0.1)
    x, lead = torch.randn(2, 2, 8, 16), torch.full((2,), 6.0)
    with torch.no_grad():
        a, b = model(x, lead, VARS), model(x, lead, VARS)
        assert not torch.allclose(a, b)  # drawn afresh at every call
        n = model.draw_noise(2, torch.Generator().manual_seed(1))
        assert torch.equal(model(x, lead, VARS, noise=n), model(x, lead, VARS, noise=n.clone()))
    with pytest.raises(InputError, match=r"noise must be \[B, patches, noise_dim\]"):
        model(x, lead, VARS, noise=torch.zeros(2, 31, 4))
    with pytest.raises(ConfigError, match="model.noise_dim"):
        tiny(noise_dim=-1)


# ------------------------------------------------------------------ members at forecast time
class FakeRun:
    """What the forecast core reads of a run."""

    def __init__(self, model):
        from physicsnemo_climax.engine.run_info import RunInfo

        self.model, self.region, self.forcings = model, None, None
        self.info = RunInfo(
            task="t",
            variables=tuple(VARS),
            out_variables=tuple(VARS),
            model_variables=tuple(VARS),
            statistics={},
            units={},
            lat=tuple(model.lat.tolist()),
            lon=tuple(model.lon.tolist()),
            hours_per_step=6.0,
            lead_hours=6.0,
            max_lead_hours=6.0,
            lead_range=None,
            lead_step=6.0,
        )


def trained_noise_model():
    model = tiny(noise_dim=4)
    with torch.no_grad():
        for p in model.noise_proj.parameters():
            p.normal_(std=0.1)
    return model


def members_at(run, x, members, seed, lead=18.0):
    spec = EnsembleSpec(members=members, perturbation="model", seed=seed)
    with torch.no_grad():
        (_, pred), *_ = lead_forecasts(run, member_starts(run, x, None, spec), VARS, [lead], members)
    return pred


def test_model_members_are_reproducible_independent_of_the_count_and_differ():
    run, x = FakeRun(trained_noise_model()), torch.randn(2, 2, 8, 16)
    three, five = members_at(run, x, 3, seed=7), members_at(run, x, 5, seed=7)
    assert three.shape == (3, 2, 2, 8, 16)
    assert torch.equal(three, five[:3])  # member k is member k whatever the ensemble size
    assert torch.equal(members_at(run, x, 3, seed=7), three)  # and the same again
    assert not torch.equal(members_at(run, x, 3, seed=8), three)
    for i in range(5):
        for j in range(i):
            assert not torch.allclose(five[i], five[j])
    # one member of a stochastic run is member 0 of the ensemble of that seed
    spec = EnsembleSpec(members=1, perturbation="model", seed=7)
    with torch.no_grad():
        (_, one), *_ = lead_forecasts(run, member_starts(run, x, None, spec), VARS, [18.0], 1)
    assert torch.equal(one[0], three[0])


def test_member_noise_comes_from_its_own_generator_per_step():
    model = trained_noise_model()
    noise = model_noise(model, 3, (0, 2), 2, "cpu")
    step0 = noise(0)
    assert step0.shape == (4, 32, 4)
    expected = model.draw_noise(2, noise_generator(3, 2, 0))
    assert torch.equal(step0[2:], expected)
    assert not torch.equal(noise(1)[2:], expected)  # a new draw each model step
    assert model_noise(tiny(), 3, (0,), 2, "cpu") is None
    # a lagged start holds one member: its own noise
    start = Start(torch.zeros(2, 2, 8, 16), members=(4,), seed=3)
    assert start.members == (4,)


def test_model_perturbation_of_a_deterministic_run_is_refused():
    run, x = FakeRun(tiny()), torch.randn(1, 2, 8, 16)
    with pytest.raises(ConfigError, match="perturbation=model.*deterministic"):
        member_starts(run, x, None, EnsembleSpec(members=3, perturbation="model"))


def test_perturbed_members_of_a_stochastic_run_take_their_own_noise_too():
    model = trained_noise_model()
    run, x = FakeRun(model), torch.randn(1, 2, 8, 16)
    spec = EnsembleSpec(members=2, perturbation="gaussian", scale=0.0, seed=0)
    with torch.no_grad():
        (_, pred), *_ = lead_forecasts(run, member_starts(run, x, None, spec), VARS, [6.0], 2)
    assert not torch.allclose(pred[0], pred[1])  # scale 0: the model's noise alone


# ------------------------------------------------------------------ training
def test_a_short_crps_fine_tune_learns_the_spread_of_a_noisy_target(tmp_path):
    """Target: half the input's first field plus independent noise of std 0.5 at every point.
    A deterministic model fitted with the MSE, loaded into a stochastic one (the noise maps at
    zero: its members are one forecast), has the CRPS of its MAE; a short CRPS fine-tune lowers it and spreads the members by about 0.5
    (the CRPS of N(mu, 0.5) against its own draws is 0.5 / sqrt(pi) ~ 0.28)."""
    torch.manual_seed(0)
    args = dict(variables=VARS, img_size=(8, 16), embed_dim=32, depth=1, num_heads=4, drop_path=0.0, drop_rate=0.0)
    model = ClimaX(**args)
    region, crps = model.resolve_region(None), Loss("crps", 4, 0.95)

    def batch(g):
        x = torch.randn(8, 2, 8, 16, generator=g)
        y = 0.5 * x[:, :1] + 0.5 * torch.randn(8, 1, 8, 16, generator=g)
        return Batch(x, y, torch.full((8,), 6.0), VARS, ["t2m"], 0, torch.arange(8))

    held_out = batch(torch.Generator().manual_seed(99))

    def fit(model, loss, steps):
        optim, g = torch.optim.Adam(model.parameters(), lr=3e-3), torch.Generator().manual_seed(0)
        for _ in range(steps):
            optim.zero_grad()
            forecast_loss(model, batch(g), region, None, loss).backward()
            optim.step()

    def score_and_spread(model):
        torch.manual_seed(1)
        with torch.no_grad():
            members = member_predictions(model, held_out, region, 8)[0]
            return forecast_loss(model, held_out, region, None, crps).item(), members.std(dim=0).mean().item()

    fit(model, Loss(), 200)
    model.save(str(tmp_path / "mse.mdlus"))
    model = ClimaX.from_pretrained(str(tmp_path / "mse.mdlus"), **args, noise_dim=8)
    before, spread_before = score_and_spread(model)
    fit(model, crps, 100)
    after, spread = score_and_spread(model)
    assert spread_before == 0.0
    assert after < 0.8 * before and after < 0.36, (before, after)
    assert 0.3 < spread < 0.7, spread  # the members came apart by about the target's noise


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    files = write_era5(tmp_path_factory.mktemp("raw"), years=(2000, 2001))
    variables = ["2m_temperature", "geopotential_500", "temperature_850", "land_sea_mask"]
    return prepare(
        PrepareConfig(files, variables, {"train": 2000, "val": 2001, "test": 2001}, grid=(8, 16), shards_per_year=2),
        tmp_path_factory.mktemp("s") / "store",
    )


def config(store, run_dir, *overrides):
    return load_config(
        [
            f"data.root={store}",
            f"run_dir={run_dir}",
            "task=finetune_global",
            "task.lead_hours=6",
            "model.embed_dim=32",
            "model.depth=1",
            "model.num_heads=4",
            "train.batch_size=4",
            "train.steps=4",
            "train.warmup_steps=1",
            "train.val_every=4",
            "train.ckpt_every=4",
            "train.progress=false",
            "train.num_workers=0",
            *overrides,
        ]
    )


def test_crps_finetune_of_a_deterministic_run_with_lora_then_model_members(store, tmp_path):
    plain = train(config(store, tmp_path / "plain"))
    init = checkpointing.model_file(plain / "checkpoints")
    run_dir = train(
        config(
            store,
            tmp_path / "crps",
            f"init={init}",
            "model.noise_dim=4",
            "train.loss=crps",
            "train.members=3",
            "train.lora.rank=2",
            "train.log_every=1",
        )
    )
    rows = pd.read_csv(run_dir / "metrics.csv", names=["step", "key", "value"])
    assert np.isfinite(rows[rows.key == "train/loss"].value).all()
    assert "val/loss" in set(rows.key)
    run = Run.load(run_dir, "cpu")
    assert run.model.stochastic and run.model.noise_dim == 4  # reloads as stochastic
    assert any(p.abs().sum() > 0 for n, p in run.model.named_parameters() if n.startswith("noise_proj"))
    assert json.loads((run_dir / "run.json").read_text())["task"] == "finetune_global"
    # members from the model's own noise: reproducible from the seed, member k whatever the count
    ic = initial_condition(store)
    three = forecast(run, ic, ["6h", "12h"], ensemble=EnsembleSpec(3, "model", seed=5))
    again = forecast(run, ic, ["6h", "12h"], ensemble=EnsembleSpec(2, "model", seed=5))
    assert three.temperature_850.dims == ("member", "time", "lead_time", "lat", "lon")
    assert three.attrs["ensemble_perturbation"] == "model"
    assert np.array_equal(three.isel(member=[0, 1]).temperature_850.values, again.temperature_850.values)
    assert float(abs(three.isel(member=1) - three.isel(member=0)).temperature_850.max()) > 0
    with pytest.raises(ConfigError, match="perturbation=model"):
        forecast(Run.load(plain, "cpu"), ic, ["6h"], ensemble=EnsembleSpec(2, "model"))
    with pytest.raises(ConfigError, match="eval.perturbation=model: this run's ClimaX is deterministic"):
        evaluate(load_run_config(plain, ["eval.members=2", "eval.perturbation=model"]))
    # the command line: climax forecast --members --perturbation model, climax evaluate eval.perturbation=model
    ic.to_netcdf(tmp_path / "ic.nc")
    command = ["forecast", "--run", str(run_dir), "--input", str(tmp_path / "ic.nc"), "--lead", "6h"]
    main([*command, "--output", str(tmp_path / "out.nc"), "--members", "3", "--perturbation", "model", "--seed", "5"])
    with xr.open_dataset(tmp_path / "out.nc") as out:
        assert np.allclose(out.temperature_850.values, three.isel(lead_time=[0]).temperature_850.values, atol=1e-4)
    main(
        [
            "evaluate",
            f"run_dir={run_dir}",
            "eval.leads=[6]",
            "eval.max_samples=4",
            "eval.members=3",
            "eval.perturbation=model",
            "eval.climatology=train_mean",
            "eval.regions=[global]",
        ]
    )
    assert "crps" in (run_dir / "eval" / "summary.md").read_text().lower()


def initial_condition(store):
    from physicsnemo_climax.data import ShardStore

    st = ShardStore(store)
    shard, stamps = st.shards("test")[0], st.shard_times("test")[0]
    names = ["2m_temperature", "geopotential_500", "temperature_850", "land_sea_mask"]
    return xr.Dataset(
        {
            v: (("time", "lat", "lon"), np.asarray(shard.array(v))[[0, 1], 0], {"units": st.manifest["units"][v]})
            for v in names
        },
        coords={"lat": st.lat, "lon": st.lon, "time": stamps[[0, 1]]},
    )


@pytest.mark.parametrize(
    "task", [["task=finetune_rollout", "task.rollout_steps=2"], ["task=finetune_regional", "task.lead_hours=6"]]
)
def test_crps_training_of_rollouts_and_regions_is_reproducible(store, tmp_path, task):
    """Each member rolls out its own trajectory; the noise comes from (seed, rank, step): twice the same."""
    crps = ["model.noise_dim=4", "train.loss=crps", "train.members=2", "train.steps=2", "train.val_every=2"]
    runs = [train(config(store, tmp_path / name, *task, *crps)) for name in ("a", "b")]
    a, b = (Module.from_checkpoint(str(checkpointing.model_file(r / "checkpoints"))) for r in runs)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert any(p.abs().sum() > 0 for n, p in a.named_parameters() if n.startswith("noise_proj"))


def test_earth2studio_model_perturbation_leaves_the_states_to_the_model_noise():
    from physicsnemo_climax.earth2studio import ClimaXPerturbation

    class Prognostic:
        def __init__(self, model):
            self.model = model

    with pytest.raises(ConfigError, match="perturbation=model.*deterministic"):
        ClimaXPerturbation(Prognostic(tiny()), EnsembleSpec(perturbation="model"))
    perturbation = ClimaXPerturbation(Prognostic(tiny(noise_dim=4)), EnsembleSpec(perturbation="model"))
    x, coords = torch.randn(3, 2, 8, 16), {"ensemble": np.arange(3), "variable": np.array(VARS)}
    out, same = perturbation(x, coords)
    assert out is x and same is coords


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["train.loss=crps"], "train.members"),
        (["train.members=3"], "train.members"),
        (["train.loss=crps", "train.members=3", "train.crps_alpha=1.5"], "train.crps_alpha"),
        (["train.loss=huber"], "train.loss"),
        (["train.loss=crps", "train.members=3"], "train.loss"),  # a deterministic model
    ],
)
def test_crps_settings_are_checked_by_name(store, tmp_path, overrides, key):
    with pytest.raises(ConfigError, match=key):
        train(config(store, tmp_path / "run", *overrides))


def torchrun(store, run_dir, fsdp, port):
    script = Path(__file__).with_name("ddp_train.py")
    overrides = ["model.noise_dim=4", "train.loss=crps", "train.members=2"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}"]
    cmd += [str(script), str(store), str(run_dir), str(fsdp).lower(), *overrides]
    result = subprocess.run(
        cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [torch.load(run_dir / f"params_rank{r}.pt") for r in range(2)]


@pytest.mark.slow
def test_crps_training_on_two_ranks_ddp_and_fsdp(store, tmp_path):
    """Each rank holds all members of its samples: DDP and FSDP need nothing more."""
    ddp = torchrun(store, tmp_path / "ddp", False, 29541)
    assert torch.equal(ddp[0], ddp[1])
    fsdp = torchrun(store, tmp_path / "fsdp", True, 29542)
    assert torch.allclose(fsdp[0], ddp[0], atol=1e-5)  # the same noise draws, up to reduction order
    model = Module.from_checkpoint(str(checkpointing.model_file(tmp_path / "ddp" / "checkpoints")))
    assert model.noise_dim == 4


def test_other_tasks_refuse_the_crps_and_the_stochastic_model():
    from physicsnemo_climax.climate_downscaling.model import build_model
    from physicsnemo_climax.climate_projection.training import model_args
    from physicsnemo_climax.engine.task import train_task

    with pytest.raises(ConfigError, match="model.noise_dim"):
        model_args(load_config(["task=climatebench", "model.noise_dim=4"]))
    with pytest.raises(ConfigError, match="model.noise_dim"):
        build_model(load_config(["model.noise_dim=4"]), ["t2m"], ["t2m"], [0.0, 10.0], [0.0, 10.0])

    def never(ctx):
        raise AssertionError("built despite train.loss=crps")

    cfg = load_config(["train.loss=crps", "train.members=2"])
    with pytest.raises(ConfigError, match="train.loss=crps: the climax.climatebench task trains with mse"):
        train_task(cfg, never, name="climax.climatebench")
