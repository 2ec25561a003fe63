# SPDX-License-Identifier: Apache-2.0
"""The fault suite, inputs: fields as they arrive from outside, in whatever units, calendars
and shapes, and the seeds and leads a user types.

Each test asserts values that are wrong if the rule is broken, or a one-line error naming
the item. Groups: units of initial conditions (Python API and ``climax forecast``), of a
WeatherBench 2 climatology Zarr and of external forecasts; leads as bare numbers; the time
axis, extra dimensions and fill values of an initial condition; seeds; CorrDiff statistics
and dataset units against the training run's.
"""

import dataclasses
import json
import re

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from faults import climax, forecast_args, initial_condition

from physicsnemo_climax.config import load_config, load_run_config
from physicsnemo_climax.data import ShardStore
from physicsnemo_climax.errors import ClimaxError, InputError
from physicsnemo_climax.forecasting import Run, evaluate, forecast
from physicsnemo_climax.forecasting.ensembles import EnsembleSpec

G = 9.80665
SCORED = ["eval.leads=[12]", "eval.max_samples=3", "eval.batch_size=3", "eval.regions=[global]"]


def close(a: xr.Dataset, b: xr.Dataset, atol=1e-4) -> bool:
    return all(np.allclose(a[v].values, b[v].values, atol=atol) for v in a.data_vars)


@pytest.fixture(scope="module")
def reference(trained, store):
    """The forecast from the test initial condition (in the store's units, each field labelled)."""
    return forecast(Run.load(trained), initial_condition(store), ["12h"])


# ------------------------------------------------------------------ units of initial conditions
@pytest.mark.parametrize("spelling", ["degC", "°C", "celsius"])
def test_an_initial_condition_in_celsius_forecasts_as_in_kelvin(trained, store, reference, spelling):
    ic = initial_condition(store)
    for v in ("2m_temperature", "temperature_850"):
        ic[v] = (ic[v] - 273.15).assign_attrs(units=spelling)
    got = forecast(Run.load(trained), ic, ["12h"])
    assert close(got, reference)
    assert got.temperature_850.attrs["units"] == "K"


@pytest.mark.parametrize("spelling", ["kelvin", "degK", "K "])
def test_kelvin_spelled_out_is_kelvin(trained, store, reference, spelling):
    ic = initial_condition(store)
    ic["2m_temperature"].attrs["units"] = spelling
    assert close(forecast(Run.load(trained), ic, ["12h"]), reference)


@pytest.mark.parametrize("spelling", ["m", "gpm"])
def test_geopotential_height_is_geopotential_over_g(trained, store, reference, spelling):
    ic = initial_condition(store)
    ic["geopotential_500"] = (ic["geopotential_500"] / G).assign_attrs(units=spelling)
    got = forecast(Run.load(trained), ic, ["12h"])
    assert close(got, reference)
    assert got.geopotential_500.attrs["units"] == "m**2 s**-2"


@pytest.mark.parametrize("spelling", ["m2 s-2", "m^2/s^2", "m**2/s**2"])
def test_other_spellings_of_geopotential_units(trained, store, reference, spelling):
    ic = initial_condition(store)
    ic["geopotential_500"].attrs["units"] = spelling
    assert close(forecast(Run.load(trained), ic, ["12h"]), reference)


@pytest.mark.parametrize(
    "variable, units", [("2m_temperature", "m s**-1"), ("temperature_850", "furlongs"), ("2m_temperature", "m")]
)
def test_units_unlike_the_runs_are_refused_naming_both(trained, store, variable, units):
    ic = initial_condition(store)
    ic[variable].attrs["units"] = units
    with pytest.raises(InputError, match=rf"{variable}.*{re.escape(units)}.*K"):
        forecast(Run.load(trained), ic, ["12h"])


def test_missing_units_are_refused_unless_stated(trained, store, reference):
    run = Run.load(trained)
    ic = initial_condition(store)
    del ic["temperature_850"].attrs["units"]
    with pytest.raises(InputError, match="temperature_850 has no units"):
        forecast(run, ic, ["12h"])
    assert close(forecast(run, ic, ["12h"], assume_units="run"), reference)
    celsius = ic.assign(temperature_850=ic.temperature_850 - 273.15)
    assert close(forecast(run, celsius, ["12h"], assume_units={"temperature_850": "degC"}), reference)


def test_stated_units_that_contradict_the_file_are_refused(trained, store):
    with pytest.raises(InputError, match="temperature_850.*K.*degC"):
        forecast(Run.load(trained), initial_condition(store), ["12h"], assume_units={"temperature_850": "degC"})


def test_cli_forecast_converts_units_and_takes_assume_units(capsys, trained, store, reference, tmp_path):
    ic = initial_condition(store)
    ic["2m_temperature"] = (ic["2m_temperature"] - 273.15).assign_attrs(units="degC")
    ic.to_netcdf(tmp_path / "celsius.nc")
    code, err = climax(capsys, *forecast_args(trained, tmp_path / "celsius.nc", tmp_path / "a.nc", "12h"))
    assert code == 0, err
    with xr.open_dataset(tmp_path / "a.nc") as out:
        assert close(out, reference) and out["2m_temperature"].attrs["units"] == "K"
    initial_condition(store, units=False).to_netcdf(tmp_path / "bare.nc")
    code, err = climax(capsys, *forecast_args(trained, tmp_path / "bare.nc", tmp_path / "b.nc", "12h"))
    assert code == 1 and "has no units" in err[0] and "--assume-units" in err[0]
    code, err = climax(
        capsys,
        *forecast_args(trained, tmp_path / "bare.nc", tmp_path / "b.nc", "12h", "--assume-units", "run"),
    )
    assert code == 0, err
    with xr.open_dataset(tmp_path / "b.nc") as out:
        assert close(out, reference)


def test_a_run_whose_store_recorded_no_units_uses_era5s(trained, store, reference, tmp_path):
    """Official ClimaX folders have no store.json: the run's units are ERA5's (K, m**2 s**-2)."""
    run = Run.load(trained)
    run.info = dataclasses.replace(run.info, units={})
    ic = initial_condition(store)
    ic["2m_temperature"] = (ic["2m_temperature"] - 273.15).assign_attrs(units="degC")
    got = forecast(run, ic, ["12h"])
    assert close(got, reference) and got["2m_temperature"].attrs["units"] == "K"


# ------------------------------------------------------------------ units of a climatology Zarr
def climatology_zarr(store, path, celsius=False, units=True):
    """The store's own WB2 climatology written as a WeatherBench 2 climatology Zarr."""
    from physicsnemo_climax.data.climatology import hourly_climatology

    st = ShardStore(store)
    names = ["2m_temperature", "geopotential_500", "temperature_850"]
    clim = hourly_climatology(st, names, "train")
    fields = {
        v: clim.fields[:, :, j] - (273.15 if celsius and v != "geopotential_500" else 0.0) for j, v in enumerate(names)
    }
    dims = ("dayofyear", "hour", "latitude", "longitude")
    on_levels = ("dayofyear", "hour", "level", "latitude", "longitude")
    empty = np.full_like(fields["2m_temperature"], np.nan)
    wb2 = xr.Dataset(
        {
            "2m_temperature": (dims, fields["2m_temperature"]),
            "geopotential": (on_levels, np.stack([fields["geopotential_500"], empty], axis=2)),
            "temperature": (on_levels, np.stack([empty, fields["temperature_850"]], axis=2)),
        },
        coords={
            "dayofyear": np.arange(1, 367),
            "hour": clim.hours,
            "level": [500, 850],
            "latitude": st.lat,
            "longitude": st.lon,
        },
    )
    if units:
        wb2["2m_temperature"].attrs["units"] = "degC" if celsius else "K"
        wb2["temperature"].attrs["units"] = "degC" if celsius else "K"
        wb2["geopotential"].attrs["units"] = "m**2 s**-2"
    wb2.to_zarr(path, zarr_format=2)
    return path


@pytest.fixture(scope="module")
def kelvin_scores(trained, store, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clim")
    zarr = climatology_zarr(store, tmp / "k.zarr")
    return evaluate(load_run_config(trained, [*SCORED, f"eval.climatology={zarr}", f"eval.out_dir={tmp / 'e'}"]))


def test_a_celsius_climatology_zarr_scores_as_the_kelvin_one(trained, store, kelvin_scores, tmp_path):
    zarr = climatology_zarr(store, tmp_path / "c.zarr", celsius=True)
    got = evaluate(load_run_config(trained, [*SCORED, f"eval.climatology={zarr}", f"eval.out_dir={tmp_path / 'e'}"]))
    key = ["region", "variable", "lead_hours", "method"]
    for score in ("rmse", "acc"):
        a, b = got.set_index(key)[score], kelvin_scores.set_index(key)[score]
        assert np.allclose(a, b.loc[a.index], rtol=1e-4, atol=1e-5, equal_nan=True), score
    clim = got[(got.method == "climatology") & (got.variable != "geopotential_500")]
    assert (clim.rmse < 50).all()  # not 273


def test_a_climatology_zarr_without_units_is_refused_unless_stated(trained, store, kelvin_scores, tmp_path):
    zarr = climatology_zarr(store, tmp_path / "n.zarr", units=False)
    cfg = [*SCORED, f"eval.climatology={zarr}", f"eval.out_dir={tmp_path / 'e'}"]
    with pytest.raises(InputError, match="eval.climatology.*2m_temperature has no units"):
        evaluate(load_run_config(trained, cfg))
    got = evaluate(load_run_config(trained, cfg + ["eval.assume_units=run"]))
    key = ["region", "variable", "lead_hours", "method"]
    assert np.allclose(
        got.set_index(key).rmse, kelvin_scores.set_index(key).rmse.loc[got.set_index(key).index], rtol=1e-5
    )


# ------------------------------------------------------------------ external forecasts
@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory):
    """The run's scorecard and its own forecasts in WeatherBench 2's layout (an external forecast
    that scores exactly as the model)."""
    out = tmp_path_factory.mktemp("saved")
    table = evaluate(load_run_config(trained, [*SCORED, "eval.save_forecasts=true", f"eval.out_dir={out}"]))
    return table, out / "forecasts.zarr"


def opened(saved):
    """The scorecard and a fresh copy of the saved forecasts, to change."""
    table, path = saved
    with xr.open_zarr(path) as ds:
        return table, ds.load()


def score_external(trained, ds, tmp_path, *extra):
    ds.to_zarr(tmp_path / "ext.zarr", zarr_format=2, mode="w")
    table = evaluate(
        load_run_config(
            trained, [*SCORED, f"external.ext={tmp_path / 'ext.zarr'}", f"eval.out_dir={tmp_path / 'e'}", *extra]
        )
    )
    return table[table.method == "ext"].set_index(["region", "variable", "lead_hours"])


def same_as_model(table, external) -> bool:
    model = table[table.method == "model"].set_index(["region", "variable", "lead_hours"])
    return len(external) == len(model) and np.allclose(external.rmse, model.rmse.loc[external.index], rtol=1e-4)


def test_an_external_forecast_in_kelvin_spelled_out_is_scored(trained, saved, tmp_path):
    table, ds = opened(saved)
    ds["2m_temperature"].attrs["units"] = "kelvin"
    assert same_as_model(table, score_external(trained, ds, tmp_path))


def test_an_external_forecast_in_celsius_and_metres_is_converted(trained, saved, tmp_path):
    table, ds = opened(saved)
    ds["2m_temperature"] = (ds["2m_temperature"] - 273.15).assign_attrs(units="degC")
    ds["geopotential"] = (ds["geopotential"] / G).assign_attrs(units="m")
    assert same_as_model(table, score_external(trained, ds, tmp_path))


def test_an_external_forecast_without_units_is_refused_unless_stated(trained, saved, tmp_path):
    table, ds = opened(saved)
    del ds["temperature"].attrs["units"]
    with pytest.raises(InputError, match="external.ext.*temperature_850 has no units"):
        score_external(trained, ds, tmp_path)
    assert same_as_model(table, score_external(trained, ds, tmp_path, "eval.assume_units.temperature_850=K"))


@pytest.mark.parametrize("units", [None, "hours", "days"])
def test_an_external_forecast_with_numeric_leads(trained, saved, tmp_path, units):
    table, ds = opened(saved)
    value = 0.5 if units == "days" else 12
    ds = ds.assign_coords(
        prediction_timedelta=("prediction_timedelta", [value], {} if units is None else {"units": units})
    )
    assert same_as_model(table, score_external(trained, ds, tmp_path))


def test_an_external_forecast_with_duplicate_times_is_refused(trained, saved, tmp_path):
    _, ds = opened(saved)
    twice = xr.concat([ds, ds.isel(time=[0])], dim="time")
    with pytest.raises(ClimaxError, match=rf"external.ext.*duplicate.*{str(ds.time.values[0])[:13]}"):
        score_external(trained, twice, tmp_path)


# ------------------------------------------------------------------ leads
@pytest.mark.parametrize("lead", ["12", 12, 12.0, "12h", "0.5D"])
def test_bare_numbers_as_leads_are_hours(trained, store, reference, lead):
    got = forecast(Run.load(trained), initial_condition(store), [lead])
    assert got.lead_time.values.tolist() == [np.timedelta64(12, "h")]
    assert close(got, reference)


def test_cli_lead_12_is_12_hours(capsys, trained, store, tmp_path):
    initial_condition(store).to_netcdf(tmp_path / "ic.nc")
    code, err = climax(
        capsys,
        "forecast",
        "--run",
        str(trained),
        "--input",
        str(tmp_path / "ic.nc"),
        "--lead",
        "12",
        "24",
        "--output",
        str(tmp_path / "out.nc"),
    )
    assert code == 0, err
    with xr.open_dataset(tmp_path / "out.nc") as out:
        assert out.lead_time.values.tolist() == pd.to_timedelta(["12h", "24h"]).tolist()


def test_eval_leads_as_durations_are_the_same_hours(trained, saved, tmp_path):
    table, _ = saved
    got = evaluate(load_run_config(trained, [*SCORED[1:], "eval.leads=[12h]", f"eval.out_dir={tmp_path}"]))
    key = ["region", "variable", "lead_hours", "method"]
    assert np.allclose(got.set_index(key).rmse, table.set_index(key).rmse.loc[got.set_index(key).index])


# ------------------------------------------------------------------ the initial condition's time axis
@pytest.mark.parametrize("calendar", ["noleap", "365_day", "proleptic_gregorian"])
def test_a_model_calendar_initial_condition_forecasts_by_calendar_date(trained, store, reference, calendar, tmp_path):
    ic = initial_condition(store)
    ic.time.encoding.update(calendar=calendar, units="hours since 2000-01-01")
    ic.to_netcdf(tmp_path / "ic.nc")
    with xr.open_dataset(tmp_path / "ic.nc", use_cftime=True) as opened:
        got = forecast(Run.load(trained), opened.load(), ["12h"])
    assert got.time.values.tolist() == reference.time.values.tolist()
    assert close(got, reference)


def test_a_360_day_date_the_standard_calendar_lacks_is_refused(trained, store):
    import cftime

    ic = initial_condition(store).assign_coords(
        time=[cftime.Datetime360Day(2001, 2, 29), cftime.Datetime360Day(2001, 2, 30)]
    )
    with pytest.raises(InputError, match="2001-02-29.*360_day"):
        forecast(Run.load(trained), ic, ["12h"])


def test_an_empty_time_axis_is_refused(capsys, trained, store, tmp_path):
    initial_condition(store).isel(time=slice(0, 0)).to_netcdf(tmp_path / "ic.nc")
    code, err = climax(capsys, *forecast_args(trained, tmp_path / "ic.nc", tmp_path / "out.nc", "12h"))
    assert code == 1 and "no times" in err[0] and not (tmp_path / "out.nc").exists()


def test_a_time_dimension_without_stamps_is_refused(trained, store):
    with pytest.raises(InputError, match="time dimension without time stamps"):
        forecast(Run.load(trained), initial_condition(store).drop_vars("time"), ["12h"])


def test_duplicate_initial_times_are_refused_naming_them(capsys, trained, store, tmp_path):
    ic = initial_condition(store)
    xr.concat([ic, ic.isel(time=[1])], dim="time").to_netcdf(tmp_path / "ic.nc")
    code, err = climax(capsys, *forecast_args(trained, tmp_path / "ic.nc", tmp_path / "out.nc", "12h"))
    assert code == 1 and "duplicate" in err[0] and "2001-01-01T06" in err[0]
    assert not (tmp_path / "out.nc").exists()


# ------------------------------------------------------------------ extra dimensions and fill values
def test_an_extra_member_dimension_is_refused_naming_it(trained, store):
    ic = initial_condition(store)
    ic["temperature_850"] = ic.temperature_850.expand_dims(member=2)
    with pytest.raises(InputError, match="temperature_850.*member"):
        forecast(Run.load(trained), ic, ["12h"])


def test_a_size_one_extra_dimension_is_squeezed(trained, store, reference):
    ic = initial_condition(store)
    ic["temperature_850"] = ic.temperature_850.expand_dims(member=1)
    assert close(forecast(Run.load(trained), ic, ["12h"]), reference)


def test_a_leftover_level_dimension_is_refused_naming_it(trained, store):
    ic = initial_condition(store)
    ic["temperature_850"] = ic.temperature_850.expand_dims(level=[500, 850]).assign_attrs(units="K")
    with pytest.raises(InputError, match="temperature_850.*level"):
        forecast(Run.load(trained), ic, ["12h"])


@pytest.mark.parametrize("fill", [9.96921e36, -9.99e33, 1e20])
def test_fill_values_without_their_attribute_are_missing_values(trained, store, fill):
    run = Run.load(trained)
    ic = initial_condition(store)
    ic["temperature_850"][0, 3, 4] = fill
    with pytest.raises(InputError, match=r"non-finite values \(temperature_850: 1\)"):
        forecast(run, ic, ["12h"])
    filled = initial_condition(store)
    filled["temperature_850"][0, 3, 4] = run.info.statistics["temperature_850"]["mean"]
    assert close(forecast(run, ic, ["12h"], nan_policy="mean"), forecast(run, filled, ["12h"]))


# ------------------------------------------------------------------ seeds
@pytest.mark.parametrize("seed", ["-1", "1.5"])
def test_cli_forecast_refuses_a_bad_seed(capsys, trained, store, tmp_path, seed):
    initial_condition(store).to_netcdf(tmp_path / "ic.nc")
    code, err = climax(
        capsys,
        *forecast_args(
            str(trained), str(tmp_path / "ic.nc"), str(tmp_path / "out.nc"), "12h", "--members", "2", f"--seed={seed}"
        ),
    )
    assert code in (1, 2) and any("seed" in line for line in err) and not (tmp_path / "out.nc").exists()


@pytest.mark.parametrize("seed", [-1, 1.5, True])
def test_an_ensemble_spec_refuses_a_bad_seed(seed):
    with pytest.raises(ClimaxError, match="seed"):
        EnsembleSpec(2, "gaussian", 0.1, seed=seed)


def test_an_ensemble_forecast_records_its_seed(trained, store):
    out = forecast(
        Run.load(trained), initial_condition(store), ["12h"], ensemble=EnsembleSpec(2, "gaussian", 0.1, seed=5)
    )
    assert out.attrs["ensemble_seed"] == 5


@pytest.mark.parametrize("seed", ["-1", "1.5"])
def test_eval_seed_is_checked(trained, tmp_path, seed):
    with pytest.raises(ClimaxError, match="eval.seed"):
        evaluate(load_run_config(trained, [*SCORED, "eval.members=2", f"eval.seed={seed}", f"eval.out_dir={tmp_path}"]))


# ------------------------------------------------------------------ CorrDiff: seeds and statistics
@pytest.fixture(scope="module")
def corrdiff(tmp_path_factory):
    """A CorrDiff-Mini file, its stats.json and a one-step regression run trained on them."""
    from physicsnemo_climax.downscaling import write_mini_file
    from physicsnemo_climax.downscaling.training import train as train_stage

    root = tmp_path_factory.mktemp("corrdiff")
    write_mini_file(
        root / "mini.nc", root / "stats.json", samples=4, shape=(16, 16), factor=4, invariant_shape=(24, 24)
    )
    data = [f"dataset.data_path={root / 'mini.nc'}", f"dataset.stats_path={root / 'stats.json'}"]
    reg = train_stage(
        load_config(
            data
            + [
                f"run_dir={root / 'reg'}",
                "model_size=tiny",
                "train.steps=1",
                "train.batch_size=2",
                "train.num_workers=0",
                "train.progress=false",
            ],
            "config_training_hrrr_mini_regression",
        )
    )
    return root, reg


def generation_overrides(root, reg, out, stats=None):
    return [
        f"dataset.data_path={root / 'mini.nc'}",
        f"dataset.stats_path={stats or root / 'stats.json'}",
        f"generation.io.reg_ckpt_filename={reg}",
        "generation.io.res_ckpt_filename=unused",
        "generation.inference_mode=regression",
        "generation.num_ensembles=2",
        "generation.seed_batch_size=1",
        "generation.times=null",
        "generation.max_times=1",
        f"generation.io.output_filename={out}",
    ]


def test_corrdiff_generation_records_its_seed(corrdiff, tmp_path):
    from physicsnemo_climax.downscaling.generation import generate

    root, reg = corrdiff
    path = generate(
        load_config(generation_overrides(root, reg, tmp_path / "g.nc") + ["seed=7"], "config_generate_hrrr_mini")
    )
    with xr.open_dataset(path) as f:
        assert int(f.attrs["seed"]) == 7


@pytest.mark.parametrize("seed", ["-1", "1.5"])
def test_corrdiff_generation_refuses_a_bad_seed(corrdiff, tmp_path, seed):
    from physicsnemo_climax.downscaling.generation import generate

    root, reg = corrdiff
    with pytest.raises(ClimaxError, match="seed"):
        generate(
            load_config(
                generation_overrides(root, reg, tmp_path / "g.nc") + [f"seed={seed}"], "config_generate_hrrr_mini"
            )
        )
    assert not (tmp_path / "g.nc").exists()


def test_corrdiff_generation_refuses_stats_unlike_the_training_ones(corrdiff, tmp_path):
    from physicsnemo_climax.downscaling.generation import generate

    root, reg = corrdiff
    stats = json.loads((root / "stats.json").read_text())
    channel = next(iter(stats["output"]))
    stats["output"][channel]["mean"] += 273.15
    (tmp_path / "stats.json").write_text(json.dumps(stats))
    overrides = generation_overrides(root, reg, tmp_path / "g.nc", tmp_path / "stats.json")
    with pytest.raises(ClimaxError, match=rf"{channel}.*mean"):
        generate(load_config(overrides, "config_generate_hrrr_mini"))
    assert not (tmp_path / "g.nc").exists()
    path = generate(load_config(overrides + ["generation.check_stats=false"], "config_generate_hrrr_mini"))
    assert path.exists()  # the way out, when it is meant


@pytest.fixture(scope="module")
def corrdiff_kelvin(tmp_path_factory):
    """A coarse_fine regression run trained on 2 m temperature labelled in K."""
    from test_downscaling_data import regional

    from physicsnemo_climax.downscaling.training import train as train_stage

    root = tmp_path_factory.mktemp("coarse_fine")
    fine, _ = regional(times=8)
    fine["2m_temperature"].attrs["units"] = "K"
    fine["10m_u_component_of_wind"].attrs["units"] = "m s**-1"
    fine.to_netcdf(root / "fine_k.nc")
    common = [
        f"dataset.fine={root / 'fine_k.nc'}",
        "dataset.factor=4",
        "dataset.input_variables=[2m_temperature]",
        "dataset.output_variables=[2m_temperature,10m_u_component_of_wind]",
        "dataset=coarse_fine",
    ]
    reg = train_stage(
        load_config(
            common
            + [
                f"run_dir={root / 'reg'}",
                "model_size=tiny",
                "train.steps=1",
                "train.batch_size=2",
                "train.num_workers=0",
                "train.progress=false",
            ],
            "config_training_hrrr_mini_regression",
        )
    )
    fine["2m_temperature"] = (fine["2m_temperature"] - 273.15).assign_attrs(units="degC")
    fine.to_netcdf(root / "fine_c.nc")
    return root, reg, common


def test_corrdiff_data_in_other_units_than_the_training_data_are_converted(corrdiff_kelvin, tmp_path):
    from physicsnemo_climax.downscaling.generation import generate

    _, reg, common = corrdiff_kelvin
    gen = [
        f"generation.io.reg_ckpt_filename={reg}",
        "generation.io.res_ckpt_filename=unused",
        "generation.inference_mode=regression",
        "generation.num_ensembles=1",
        "generation.seed_batch_size=1",
        "generation.times=null",
        "generation.max_times=2",
    ]
    runs = {}
    for name in ("k", "c"):
        cfg = (
            [c.replace("fine_k.nc", f"fine_{name}.nc") for c in common]
            + gen
            + [f"generation.io.output_filename={tmp_path / name}.nc"]
        )
        runs[name] = generate(load_config(cfg, "config_generate_hrrr_mini"))
    for group in ("input", "prediction", "truth"):
        with xr.open_dataset(runs["k"], group=group) as k, xr.open_dataset(runs["c"], group=group) as c:
            assert np.allclose(k["2m_temperature"].values, c["2m_temperature"].values, atol=1e-3), group


def test_a_climax_forecast_enters_corrdiff_in_the_units_its_data_had():
    """forecast -> downscale: ClimaX's K become the CorrDiff run's degC where its data recorded them."""
    from physicsnemo_climax.downscaling.domain import Domain
    from physicsnemo_climax.downscaling.pipeline import coarse_inputs

    lat, lon = np.linspace(30, 60, 8), np.linspace(0, 35, 8)
    stats = {"input": {"2m_temperature": {"mean": 10.0, "std": 5.0}}, "output": {"t": {"mean": 10.0, "std": 5.0}}}
    domain = Domain(
        ["2m_temperature"],
        ["t"],
        [],
        stats,
        2,
        (8, 8),
        coarse_lat=lat[::2],
        coarse_lon=lon[::2],
        units={"input": {"2m_temperature": "degC"}},
    )
    kelvin = np.full((1, 1, 8, 8), 283.15)
    fc = xr.Dataset(
        {"2m_temperature": (("time", "lead_time", "lat", "lon"), kelvin, {"units": "K"})},
        coords={"lat": lat, "lon": lon},
    )
    assert np.allclose(coarse_inputs(fc, domain, {}), 10.0)


def test_cli_downscale_forecast_reads_bare_leads_as_hours_and_records_its_seed(
    capsys, trained, store, corrdiff_kelvin, tmp_path
):
    _, reg, _ = corrdiff_kelvin
    initial_condition(store).isel(time=[0]).to_netcdf(tmp_path / "ic.nc")
    common = [
        "downscale",
        "forecast",
        "--climax-run",
        str(trained),
        "--regression",
        str(reg),
        "--input",
        str(tmp_path / "ic.nc"),
        "--lead",
        "12",
        "--output",
        str(tmp_path / "ens.nc"),
        "--members",
        "1",
        "--seed-batch-size",
        "1",
    ]
    code, err = climax(capsys, *common, "--seed=-1")
    assert code == 1 and "seed=-1" in err[0] and not (tmp_path / "ens.nc").exists()
    code, err = climax(capsys, *common, "--seed", "3")
    assert code == 0, err
    with xr.open_dataset(tmp_path / "ens.nc") as f:
        assert (f.lead_time.values / np.timedelta64(1, "h")).tolist() == [12.0] and int(f.attrs["seed"]) == 3
