# SPDX-License-Identifier: Apache-2.0
"""Forcings (``data.forcings``): computed at the valid time, by hand at known places and times,
ERA5's hourly ``tisr`` convention, never targets, exact through rollouts, in the forecast API,
the evaluation and the Earth2Studio wrapper."""

import numpy as np
import pytest
import torch
import xarray as xr
from test_recipes import config, store  # noqa: F401 -- the store fixture

from physicsnemo_climax.config import load_run_config
from physicsnemo_climax.data import ClimaXShardReader, ShardStore
from physicsnemo_climax.data.forcings import Forcings, forcing_fields, reference_statistics, unix_seconds
from physicsnemo_climax.data.wb2 import from_wb2
from physicsnemo_climax.errors import ClimaxError, InputError
from physicsnemo_climax.forecasting import Run, evaluate, forecast
from physicsnemo_climax.forecasting.rollout import forecast_steps
from physicsnemo_climax.tasks import train


def seconds(*stamps):
    return unix_seconds(np.array(stamps, "datetime64[s]"))


def solar(t, lat, lon):
    """Cosine of the solar zenith angle by the textbook formulas (NOAA's low-accuracy set):
    fractional-year declination and equation of time, hour angle from local solar time."""
    day = (t - seconds("2000-01-01")[0]) / 86400.0 % 365.2422
    g = 2 * np.pi / 365.2422 * day  # the fractional year, radians
    decl = (
        0.006918
        - 0.399912 * np.cos(g)
        + 0.070257 * np.sin(g)
        - 0.006758 * np.cos(2 * g)
        + 0.000907 * np.sin(2 * g)
        - 0.002697 * np.cos(3 * g)
        + 0.00148 * np.sin(3 * g)
    )
    eot = 229.18 * (
        0.000075 + 0.001868 * np.cos(g) - 0.032077 * np.sin(g) - 0.014615 * np.cos(2 * g) - 0.040849 * np.sin(2 * g)
    )  # minutes
    minutes = (t % 86400.0) / 60.0 + eot + 4 * lon
    hour_angle = np.deg2rad(minutes / 4 - 180)
    lat = np.deg2rad(lat)
    return np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(hour_angle)


def test_cos_zenith_at_known_places_and_times():
    # equinox noon on the Greenwich meridian at the equator: the sun overhead (within the
    # equation of time, ~7 min in March); local midnight there: straight below
    t = seconds("2000-03-20T12:00", "2000-03-21T00:00", "2000-06-21T12:00", "2000-12-21T18:00")
    lat, lon = np.array([0.0, 23.44, 45.0, -60.0]), np.array([0.0, 90.0, 270.0])
    got = forcing_fields(["cos_zenith"], t, lat, lon)[:, 0]
    assert got[0, 0, 0] == pytest.approx(1.0, abs=2e-3)
    assert got[1, 0, 0] == pytest.approx(-1.0, abs=2e-3)
    assert got[2, 1, 0] == pytest.approx(1.0, abs=1e-3)  # June solstice noon on the tropic of Cancer
    want = solar(t[:, None, None], lat[None, :, None], lon[None, None, :])
    assert np.abs(got - want).max() < 5e-3  # two independent formulas


def test_toa_is_the_hour_ending_at_the_valid_time_in_joules():
    """ERA5's ``tisr``: J m-2 accumulated over the hour ending at the valid time; here against the
    integral of S max(cos zenith, 0) over that hour, at the eccentric orbit's irradiance."""
    t = seconds("2000-06-21T09:00", "2000-01-03T12:00", "2000-03-20T07:00")
    lat, lon = np.array([-30.0, 0.0, 51.5, 80.0]), np.array([0.0, 100.0, 200.0])
    got = forcing_fields(["toa_incident_solar_radiation"], t, lat, lon)[:, 0].astype(np.float64)
    minutes = np.arange(0.5, 60.0, 1.0)  # midpoints of the hour's minutes
    cosz = np.stack([forcing_fields(["cos_zenith"], t - 3600.0 + 60.0 * m, lat, lon)[:, 0] for m in minutes])
    day = (t - seconds("2000-01-01")[0]) / 86400.0
    earth_sun = 1 - 0.0167 * np.cos(2 * np.pi * (day - 3.0) / 365.2422)  # perihelion on 3 January
    irradiance = (1361.0 / earth_sun**2)[:, None, None]
    want = irradiance * np.clip(cosz, 0, None).sum(axis=0) * 60.0
    assert np.abs(got - want).max() < 0.003 * 1361.0 * 3600.0
    assert got.min() >= 0.0 and (got == 0).any()  # night is zero, not negative
    assert got.max() <= 1.04 * 1361.0 * 3600.0


def test_time_encodings_and_reference_statistics():
    t = seconds("2000-01-01T00:00", "2000-07-02T00:00", "2001-01-01T06:00")
    f = forcing_fields(
        ["year_progress_sin", "year_progress_cos", "day_progress_sin", "day_progress_cos"],
        t,
        np.array([10.0]),
        np.array([0.0, 90.0]),
    )
    assert f[0, 1, 0, 0] == pytest.approx(1.0) and f[0, 0, 0, 0] == pytest.approx(0.0, abs=1e-6)
    assert f[1, 1, 0, 0] == pytest.approx(-1.0, abs=1e-3)  # half a year on
    # local time: midnight at 0 E is 06 local at 90 E; 06 UTC at 0 E likewise
    assert f[0, 2, 0, 1] == pytest.approx(1.0, abs=1e-6) and f[2, 2, 0, 0] == pytest.approx(1.0, abs=1e-6)
    mean, std = reference_statistics(
        ["day_progress_sin", "cos_zenith"], np.linspace(-88, 88, 32), np.arange(0, 360, 5.625)
    )
    assert mean[0] == pytest.approx(0.0, abs=1e-6) and std[0] == pytest.approx(2**-0.5, rel=1e-3)
    assert mean[1] == pytest.approx(0.0, abs=1e-2)  # day and night balance over a year


def test_unknown_forcing_and_a_forcing_as_target_are_errors(store):  # noqa: F811
    with pytest.raises(InputError, match="data.forcings.*sun_angle.*cos_zenith"):
        ClimaXShardReader(store, forcings=["sun_angle"])
    with pytest.raises(InputError, match="data.out_variables.*cos_zenith"):
        ClimaXShardReader(store, forcings=["cos_zenith"], out_variables=["cos_zenith"])
    with pytest.raises(ClimaxError, match="data.forcings"):
        train(config(store, "unused", "data.forcings=[sun_angle]"))
    with pytest.raises(ClimaxError, match="train.loader='dali_cpu'.*valid times"):
        train(
            config(
                store,
                "unused",
                "data.forcings=[cos_zenith]",
                "task=finetune_rollout",
                "train.loader=dali_cpu",
                "train.fallback=true",
            )
        )


def test_reader_appends_forcings_at_the_valid_time(store):  # noqa: F811
    reader = ClimaXShardReader(store, "train", lead_hours=12, forcings=["cos_zenith", "day_progress_cos"])
    assert reader.variables == reader.state_variables + ["cos_zenith", "day_progress_cos"]
    assert "cos_zenith" not in reader.out_variables
    raw = reader.read_batch([0, 5], normalize=False)
    st = ShardStore(store)
    start = unix_seconds(st.shard_times("train")[0][[0, 5]])
    np.testing.assert_array_equal(raw["time"], start)
    want = forcing_fields(["cos_zenith", "day_progress_cos"], start + 12 * 3600.0, st.lat, st.lon)
    np.testing.assert_allclose(raw["x"][:, -2:], want, atol=1e-6)
    norm = reader.read_batch([0, 5])
    f = Forcings.build(["cos_zenith", "day_progress_cos"], st.lat, st.lon)
    np.testing.assert_allclose(norm["x"][:, -2:], f.normalised(start + 12 * 3600.0), atol=1e-5)


class Recorder(torch.nn.Module):
    """A model that persists its state and records what it was given."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x, lead, variables, out_variables, region=None):
        self.seen.append(x.clone())
        return x[:, [list(variables).index(v) for v in out_variables]]


def test_rollout_recomputes_forcings_at_every_step_and_never_predicts_them():
    lat, lon = np.linspace(-80, 80, 4), np.arange(0, 360, 45.0)
    forcings = Forcings.build(["cos_zenith", "toa_incident_solar_radiation"], lat, lon)
    variables = ["t", "cos_zenith", "toa_incident_solar_radiation"]
    model, start = Recorder(), seconds("2001-05-04T00:00", "2001-05-04T06:00")
    x = torch.zeros(2, 3, 4, 8)
    forecast_steps(model, x, variables, ["t"], [6.0, 6.0, 12.0], forcings=forcings, init_time=start)
    for k, elapsed in enumerate([6.0, 12.0, 24.0]):
        want = torch.from_numpy(forcings.normalised(start + 3600.0 * elapsed))
        torch.testing.assert_close(model.seen[k][:, 1:], want)
    with pytest.raises(InputError, match="initial time"):
        forecast_steps(model, x, variables, ["t"], [6.0], forcings=forcings)


@pytest.mark.slow
def test_a_run_with_forcings_trains_rolls_out_forecasts_and_steps_in_earth2studio(store, tmp_path):  # noqa: F811
    names = ["cos_zenith", "toa_incident_solar_radiation", "year_progress_sin"]
    run_dir = train(config(store, tmp_path / "run", "task=finetune_rollout", f"data.forcings=[{','.join(names)}]"))
    run = Run.load(run_dir)
    assert list(run.info.forcings) == names and list(run.info.variables[-3:]) == names
    assert not set(names) & set(run.info.out_variables)
    st = ShardStore(store)
    shard, times = st.shards("test")[0], st.shard_times("test")[0]
    ic = xr.Dataset(
        {
            v: (("lat", "lon"), np.asarray(shard.array(v))[0, 0], {"units": st.manifest["units"][v]})
            for v in run.state_variables
        },
        coords={"lat": st.lat, "lon": st.lon, "time": times[0]},
    )
    out = forecast(run, ic, ["6h", "24h"])
    # the same forecast by hand: state + forcings at each step's valid time, the model stepped directly
    mean, std = run.field_stats(run.state_variables)
    x = run.model_inputs((torch.as_tensor(ic.to_array("v").values[None].astype(np.float32)) - mean) / std)
    steps = forecast_steps(
        run.model,
        x,
        run.info.variables,
        run.info.out_variables,
        [6.0] * 4,
        forcings=run.forcings,
        init_time=unix_seconds(times[:1]),
    )
    my, sy = run.field_stats(run.info.out_variables)
    want = (steps[-1] * sy + my)[0, run.info.out_variables.index("temperature_850")]
    np.testing.assert_allclose(out.temperature_850.sel(lead_time="24h").values[0], want.detach().numpy(), rtol=1e-5)
    with pytest.raises(InputError, match="NaT|time"):
        forecast(run, ic.drop_vars("time"), ["6h"])

    # the scorecard's forecasts are the same (its first initial time is the test split's first)
    cfg = load_run_config(
        run_dir, ["eval.leads=[6,24]", "eval.max_samples=3", "eval.save_forecasts=true", "eval.climatology=time_mean"]
    )
    evaluate(cfg)
    saved = from_wb2(xr.open_zarr(tmp_path / "run" / "eval" / "forecasts.zarr"), ["temperature_850"])
    np.testing.assert_allclose(
        saved.temperature_850.isel(time=0).sel(lead_time="24h").values,
        out.temperature_850.sel(lead_time="24h").values[0],
        rtol=1e-5,
    )
    ensemble = load_run_config(
        run_dir,
        [
            "eval.leads=[12]",
            "eval.max_samples=2",
            "eval.members=2",
            "eval.perturbation=lagged",
            "eval.climatology=time_mean",
            "eval.out_dir=" + str(tmp_path / "lagged"),
        ],
    )
    assert evaluate(ensemble).query("method == 'model'").crps.notna().all()

    from physicsnemo_climax.earth2studio import ClimaXPrognostic

    px = ClimaXPrognostic.from_run(run_dir)
    assert not set(names) & set(px.dynamic)
    coords = px.input_coords()
    coords = {"time": np.array([times[0]]), **coords}
    del coords["batch"]
    state = torch.as_tensor(np.stack([np.asarray(shard.array(v))[0, 0] for v in px.dynamic]))[None, None]
    y, _ = px(state.float(), coords)
    first = forecast(run, ic, ["6h"])
    for j, v in enumerate(px.dynamic):
        if v in first:
            np.testing.assert_allclose(y[0, 0, j].numpy(), first[v].values[0, 0], rtol=1e-4, atol=1e-3)
    del coords["time"]
    with pytest.raises(InputError, match="'time'"):
        px(state.float(), coords)
