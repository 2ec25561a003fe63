# SPDX-License-Identifier: Apache-2.0
"""Ensembles of a deterministic ClimaX: perturbations (reproducible from their seed,
member by member; constants untouched; sizes as asked; isotropic noise on the
sphere; bred +/- pairs), the forecast API and CLI with members, lagged members,
and ensemble scoring in ``climax evaluate``."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from test_recipes import config, store  # noqa: F401 -- the store fixture

from physicsnemo_climax.config import load_run_config
from physicsnemo_climax.data import ShardStore
from physicsnemo_climax.errors import ConfigError, InputError
from physicsnemo_climax.forecasting import Run, evaluate, forecast
from physicsnemo_climax.forecasting.ensembles import EnsembleSpec, perturb, spherical_noise
from physicsnemo_climax.grid import regular_grid
from physicsnemo_climax.tasks import train

LAT, LON = regular_grid((16, 32))


def test_members_are_reproducible_member_by_member_and_leave_the_control_and_constants_alone():
    x = torch.randn(2, 3, 16, 32, generator=torch.Generator().manual_seed(1))
    for kind in ("gaussian", "spherical"):
        five = perturb(x, EnsembleSpec(5, kind, 0.1, seed=7), LAT, LON, dynamic=[0, 2])
        three = perturb(x, EnsembleSpec(3, kind, 0.1, seed=7), LAT, LON, dynamic=[0, 2])
        other = perturb(x, EnsembleSpec(3, kind, 0.1, seed=8), LAT, LON, dynamic=[0, 2])
        assert five.shape == (10, 3, 16, 32) and torch.equal(five[:6], three)  # member k: the same noise
        assert not torch.equal(three[2:], other[2:])
        assert torch.equal(five[:2], x) and torch.equal(five[:, 1], x[:, 1].repeat(5, 1, 1))  # control, constant
        delta = (five[2:] - x.repeat(4, 1, 1, 1))[:, [0, 2]]
        assert delta.std().item() == pytest.approx(0.1, rel=0.15)
    with pytest.raises(ConfigError, match="perturbation 'smooth'"):
        EnsembleSpec(2, "smooth")


def test_spherical_noise_is_isotropic_with_unit_variance():
    lat, lon = regular_grid((32, 64))
    f = spherical_noise(lat, lon, 1000.0, torch.Generator().manual_seed(0), (3000,)).double().numpy()
    assert f.var() == pytest.approx(1.0, rel=0.05) and abs(f.mean()) < 0.05
    corr = lambda a, b: np.corrcoef(f[:, a[0], a[1]], f[:, b[0], b[1]])[0, 1]  # noqa: E731
    # at the equator, a neighbour in latitude and one in longitude are both 625 km away
    assert corr((16, 0), (17, 0)) == pytest.approx(corr((16, 0), (16, 1)), abs=0.03)
    # near the pole the longitude neighbour is much closer: more correlated
    assert corr((31, 0), (31, 1)) > corr((16, 0), (16, 1)) + 0.03


def test_bred_members_come_in_pairs_of_the_grown_vector_at_the_asked_size():
    x = torch.randn(1, 2, 16, 32, generator=torch.Generator().manual_seed(2))
    step = lambda s: torch.cat([2 * s[:, :1] + s[:, :1].roll(3, dims=-1), s[:, 1:]], dim=1)  # noqa: E731
    members = perturb(x, EnsembleSpec(3, "bred", 0.2, cycles=4), LAT, LON, dynamic=[0], step=step)
    plus, minus = members[1] - x[0], members[2] - x[0]
    assert torch.allclose(plus, -minus, atol=1e-6) and torch.equal(plus[1], torch.zeros(16, 32))
    assert plus[0].square().mean().sqrt().item() == pytest.approx(0.2, rel=1e-4)


@pytest.fixture(scope="module")
def run_dir(store, tmp_path_factory):  # noqa: F811
    return train(config(store, tmp_path_factory.mktemp("ens") / "run", "task=finetune_global", "task.lead_hours=12"))


def initial_condition(store, times):  # noqa: F811
    st = ShardStore(store)
    shard, stamps = st.shards("test")[0], st.shard_times("test")[0]
    names = ["2m_temperature", "geopotential_500", "temperature_850", "land_sea_mask"]
    return xr.Dataset(
        {
            v: (("time", "lat", "lon"), np.asarray(shard.array(v))[times, 0], {"units": st.manifest["units"][v]})
            for v in names
        },
        coords={"lat": st.lat, "lon": st.lon, "time": stamps[times]},
    )


def test_forecast_api_members_control_and_record(run_dir, store):  # noqa: F811
    run, ic = Run.load(run_dir), initial_condition(store, [4, 5])
    plain = forecast(run, ic, ["12h", "24h"])
    ens = forecast(run, ic, ["12h", "24h"], ensemble=EnsembleSpec(3, "spherical", 0.1, seed=3))
    again = forecast(run, ic, ["12h", "24h"], ensemble=EnsembleSpec(3, "spherical", 0.1, seed=3))
    assert ens.temperature_850.dims == ("member", "time", "lead_time", "lat", "lon")
    assert np.allclose(ens.isel(member=0).temperature_850, plain.temperature_850, atol=1e-4)
    assert ens.identical(again) and ens.attrs["ensemble_seed"] == 3 and ens.attrs["ensemble_members"] == 3
    assert float(abs(ens.isel(member=1) - ens.isel(member=0)).temperature_850.max()) > 0


def test_lagged_members_start_earlier_and_forecast_longer(run_dir, store):  # noqa: F811
    run, ic = Run.load(run_dir), initial_condition(store, [2, 4, 6])  # 12 h apart (the run's lead)
    lagged = forecast(run, ic, ["12h"], ensemble=EnsembleSpec(2, "lagged"))
    latest = forecast(run, ic.isel(time=[2]), ["12h"])
    earlier = forecast(run, ic.isel(time=[1]), ["24h"])  # 12 h earlier, 12 h longer: the same valid time
    assert lagged.sizes["time"] == 1 and lagged.time.values[0] == ic.time.values[2]
    assert np.allclose(lagged.isel(member=0).temperature_850, latest.temperature_850, atol=1e-4)
    assert np.allclose(lagged.isel(member=1).temperature_850.values, earlier.temperature_850.values, atol=1e-4)
    with pytest.raises(InputError, match="needs 4 initial times"):
        forecast(run, ic, ["12h"], ensemble=EnsembleSpec(4, "lagged"))


def test_evaluate_scores_an_ensemble_and_saves_its_members(run_dir, tmp_path):
    cfg = load_run_config(
        run_dir,
        [
            "eval.leads=[12,24]",
            "eval.max_samples=4",
            "eval.members=3",
            "eval.regions=[global]",
            "eval.save_forecasts=true",
            f"eval.out_dir={tmp_path / 'eval'}",
        ],
    )
    table = evaluate(cfg)
    model = table[table.method == "model"]
    # (a model trained 6 steps barely reacts to its input: the spread is tiny but defined)
    assert model.crps.notna().all() and (model.spread >= 0).all() and model.spread_skill.notna().all()
    saved = xr.open_zarr(tmp_path / "eval" / "forecasts.zarr")
    assert saved.sizes["number"] == 3 and saved.attrs["ensemble_perturbation"] == "spherical"
    ranks = json.loads((tmp_path / "eval" / "scorecard.json").read_text())
    assert Path(tmp_path / "eval" / "rank_histogram.csv").exists() and ranks["samples"] == 4
    assert ranks["ensemble"]["ensemble_members"] == 3 and ranks["ensemble"]["ensemble_seed"] == 0
    lagged = load_run_config(
        run_dir,
        [
            "eval.leads=[12]",
            "eval.max_samples=4",
            "eval.members=2",
            "eval.perturbation=lagged",
            "eval.regions=[global]",
            f"eval.out_dir={tmp_path / 'lagged'}",
        ],
    )
    assert evaluate(lagged).query("method == 'model'").crps.notna().all()


def test_cli_forecast_members(run_dir, store, tmp_path):  # noqa: F811
    from physicsnemo_climax.cli import main

    initial_condition(store, [4]).to_netcdf(tmp_path / "ic.nc")
    main(
        [
            "forecast",
            "--run",
            str(run_dir),
            "--input",
            str(tmp_path / "ic.nc"),
            "--lead",
            "12h",
            "--output",
            str(tmp_path / "ens.nc"),
            "--members",
            "3",
            "--perturbation",
            "gaussian",
            "--seed",
            "4",
        ]
    )
    out = xr.open_dataset(tmp_path / "ens.nc")
    assert out.temperature_850.dims[0] == "member" and out.sizes["member"] == 3
    assert out.attrs["ensemble_perturbation"] == "gaussian" and out.attrs["ensemble_seed"] == 4
