# SPDX-License-Identifier: Apache-2.0
"""ClimaX and CorrDiff inside Earth2Studio workflows (extra ``earth2studio``)."""

from collections import OrderedDict

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

e2s_run = pytest.importorskip("earth2studio.run")  # noqa: E402  (slow: it imports every Earth2Studio model)

from earth2studio.data import DataSource  # noqa: E402
from earth2studio.io import ZarrBackend  # noqa: E402
from earth2studio.lexicon.base import E2STUDIO_VOCAB  # noqa: E402
from earth2studio.models.dx import DiagnosticModel  # noqa: E402
from earth2studio.models.px import PrognosticModel  # noqa: E402
from era5_files import write_era5  # noqa: E402
from test_downscaling_data import regional  # noqa: E402

from physicsnemo_climax.config import load_config  # noqa: E402
from physicsnemo_climax.data import PrepareConfig, prepare  # noqa: E402
from physicsnemo_climax.data.sources import Catalogue  # noqa: E402
from physicsnemo_climax.downscaling.pipeline import forecast_and_downscale  # noqa: E402
from physicsnemo_climax.downscaling.training import train as train_corrdiff  # noqa: E402
from physicsnemo_climax.earth2studio import (  # noqa: E402
    ClimaXPrognostic,
    CorrDiffDiagnostic,
    FileSource,
    lexicon,  # noqa: E402
)
from physicsnemo_climax.errors import ConfigError  # noqa: E402
from physicsnemo_climax.forecasting import Run, forecast  # noqa: E402
from physicsnemo_climax.forecasting import train as train_climax  # noqa: E402
from physicsnemo_climax.models.variables import DEFAULT_VARIABLES  # noqa: E402

VARS = ["2m_temperature", "geopotential_500", "temperature_850", "land_sea_mask"]
T0 = "2001-01-03T00"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    # latitudes north to south, as Earth2Studio sources have them; the store runs south to north
    return write_era5(tmp_path_factory.mktemp("raw"), years=(2000, 2001), descending=True)


@pytest.fixture(scope="module")
def climax_run(files, tmp_path_factory):
    root = tmp_path_factory.mktemp("climax")
    store = prepare(
        PrepareConfig(files, VARS, {"train": 2000, "val": 2001, "test": 2001}, grid=(8, 16), shards_per_year=2),
        root / "store",
    )
    return train_climax(
        load_config(
            [
                f"data.root={store}",
                f"run_dir={root / 'run'}",
                "task=finetune_global",
                "task.lead_hours=6",
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


@pytest.fixture(scope="module")
def corrdiff_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("corrdiff")
    fine, inv = regional(times=8)
    fine.to_netcdf(root / "fine.nc")
    inv.to_netcdf(root / "inv.nc")
    return train_corrdiff(
        load_config(
            [
                f"dataset.fine={root / 'fine.nc'}",
                "dataset.factor=4",
                "dataset.input_variables=[2m_temperature]",
                "dataset.output_variables=[2m_temperature,10m_u_component_of_wind]",
                f"dataset.invariants={root / 'inv.nc'}",
                "dataset.invariant_variables=[orography]",
                "dataset=coarse_fine",
                "model_size=tiny",
                "train.steps=2",
                "train.batch_size=2",
                "train.num_workers=0",
                "train.progress=false",
                f"run_dir={root / 'reg'}",
            ],
            "config_training_hrrr_mini_regression",
        )
    )


def initial_condition(files) -> xr.Dataset:
    cat = Catalogue(files)
    t0 = np.array([T0], dtype="datetime64[ns]")
    ds = xr.Dataset(
        {
            v: (("time", "lat", "lon"), np.broadcast_to(cat.read(v, t0), (1, 8, 16)), {"units": cat.units(v)})
            for v in VARS
        },
        coords={"time": t0, "lat": cat.lat, "lon": cat.lon},
    )
    return ds.sortby("lat")


# ------------------------------------------------------------------ lexicon
def test_lexicon_round_trips_and_uses_earth2studio_ids():
    dynamic = [v for v in DEFAULT_VARIABLES if v not in ("land_sea_mask", "orography", "lattitude")]
    ids = [lexicon.to_e2s(v) for v in dynamic]
    assert set(ids) <= set(E2STUDIO_VOCAB)  # every id is one Earth2Studio knows
    assert [lexicon.from_e2s(i) for i in ids] == dynamic
    assert (lexicon.to_e2s("geopotential_500"), lexicon.to_e2s("2m_temperature"), lexicon.to_e2s("10u")) == (
        "z500",
        "t2m",
        "u10m",
    )
    assert lexicon.to_e2s("land_sea_mask") == "lsm" and lexicon.from_e2s("lsm") == "land_sea_mask"
    assert lexicon.to_e2s("msl") == "msl"  # already an id
    with pytest.raises(KeyError, match="'orography' has no Earth2Studio lexicon id"):
        lexicon.to_e2s("orography")
    with pytest.raises(KeyError, match=r"\['snow', 'orography'\]"):
        lexicon.to_e2s_all(["2m_temperature", "snow", "orography"])
    assert lexicon.to_e2s("snow", {"snow": "sd"}) == "sd"


# ------------------------------------------------------------------ the prognostic
def test_the_wrappers_satisfy_the_protocols(climax_run, corrdiff_run, files):
    model = ClimaXPrognostic.from_run(climax_run)
    assert isinstance(model, PrognosticModel)
    assert isinstance(CorrDiffDiagnostic.from_runs(corrdiff_run), DiagnosticModel)
    assert isinstance(FileSource(files), DataSource)
    coords = model.input_coords()
    assert list(coords) == ["batch", "lead_time", "variable", "lat", "lon"]
    assert list(coords["variable"]) == ["t2m", "z500", "t850"]  # the constant land-sea mask stays inside
    out = model.output_coords(coords)
    assert out["lead_time"] == np.array([np.timedelta64(6, "h")])


def test_deterministic_workflow_writes_the_forecast_to_zarr(climax_run, files, tmp_path):
    model = ClimaXPrognostic.from_run(climax_run)
    io = e2s_run.deterministic(
        [T0], 3, model, FileSource(files), ZarrBackend(str(tmp_path / "out.zarr")), device="cpu", verbose=False
    )
    out = xr.open_zarr(tmp_path / "out.zarr", consolidated=False)
    assert sorted(out.data_vars) == ["t2m", "t850", "z500"] and "t2m" in io
    assert out.t2m.dims == ("time", "lead_time", "lat", "lon") and out.t2m.shape == (1, 4, 8, 16)
    assert list(out.lead_time.values) == list(pd.to_timedelta([0, 6, 12, 18], unit="h"))
    info = Run.load(climax_run).info
    assert np.allclose(out.lat, info.lat) and np.allclose(out.lon, info.lon)
    ic = initial_condition(files)
    assert np.allclose(out.t2m.isel(lead_time=0, time=0), ic["2m_temperature"].isel(time=0))
    # each step equals the package's own forecast API (one 6 h step, then its rollout)
    reference = forecast(Run.load(climax_run), ic, ["6h", "12h", "18h"])
    for e2s_id, name in (("t2m", "2m_temperature"), ("z500", "geopotential_500"), ("t850", "temperature_850")):
        np.testing.assert_allclose(
            out[e2s_id].isel(time=0, lead_time=slice(1, None)).values,
            reference[name].isel(time=0).values,
            rtol=1e-5,
            atol=1e-3,
        )


def test_ensemble_workflow_steps_every_member(climax_run, files, tmp_path):
    from earth2studio.perturbation import Gaussian, Zero

    model = ClimaXPrognostic.from_run(climax_run)
    for name, perturbation in (("zero", Zero()), ("noise", Gaussian(noise_amplitude=20.0, seed=0))):
        e2s_run.ensemble(
            [T0],
            2,
            3,
            model,
            FileSource(files),
            ZarrBackend(str(tmp_path / f"{name}.zarr")),
            perturbation,
            batch_size=2,
            device="cpu",
            verbose=False,
        )
    zero = xr.open_zarr(tmp_path / "zero.zarr", consolidated=False).z500
    noise = xr.open_zarr(tmp_path / "noise.zarr", consolidated=False).z500
    assert zero.dims == ("ensemble", "time", "lead_time", "lat", "lon") and zero.shape == (3, 1, 3, 8, 16)
    # unperturbed members (batched 2 + 1) are identical; perturbed ones differ
    assert np.allclose(zero.values[0], zero.values[1]) and np.allclose(zero.values[0], zero.values[2])
    assert np.abs(noise.values[0, 0, 0] - noise.values[1, 0, 0]).max() > 0.5  # members start apart
    # the model steps each member from its own state (the toy model barely depends on it: exact inequality)
    assert not np.array_equal(noise.values[0, 0, 1], noise.values[1, 0, 1])


def test_the_package_perturbation_in_the_ensemble_workflow_is_the_cli_noise(climax_run, files, tmp_path):
    from earth2studio.perturbation import Zero

    from physicsnemo_climax.earth2studio import ClimaXPerturbation
    from physicsnemo_climax.forecasting.ensembles import EnsembleSpec, member_noise

    model = ClimaXPrognostic.from_run(climax_run)
    spec = EnsembleSpec(perturbation="spherical", scale=0.1, seed=5)
    for name, perturbation in (("zero", Zero()), ("ours", ClimaXPerturbation(model, spec))):
        e2s_run.ensemble(
            [T0],
            1,
            3,
            model,
            FileSource(files),
            ZarrBackend(str(tmp_path / f"{name}.zarr")),
            perturbation,
            batch_size=2,
            device="cpu",
            verbose=False,
        )
    zero = xr.open_zarr(tmp_path / "zero.zarr", consolidated=False).z500.values[:, 0, 0]
    ours = xr.open_zarr(tmp_path / "ours.zarr", consolidated=False).z500.values[:, 0, 0]
    j = model.dynamic.index("geopotential_500")
    assert np.array_equal(ours[0], zero[0])  # member 0: the control
    for member in (1, 2):  # the noise climax forecast --members gives that member, in z500's std
        want = (
            0.1
            * model.std[j, 0, 0].item()
            * member_noise(spec, member, (1, len(model.dynamic)), model.lat, model.lon)[0, j].numpy()
        )
        np.testing.assert_allclose(ours[member] - zero[member], want, rtol=1e-3, atol=1e-2)
    with pytest.raises(ConfigError, match="lagged"):
        ClimaXPerturbation(model, EnsembleSpec(perturbation="lagged"))


def test_handshake_errors_name_the_coordinate(climax_run):
    model = ClimaXPrognostic.from_run(climax_run)
    good = model.input_coords()
    with pytest.raises(KeyError, match="lead_time"):
        model.output_coords(OrderedDict((k, v) for k, v in good.items() if k != "lead_time"))
    for key, value in (
        ("lat", good["lat"][::-1]),
        ("lon", good["lon"] + 1.0),
        ("variable", np.array(["t2m", "z500", "q700"])),
        ("lead_time", np.array([0, 6], dtype="timedelta64[h]")),
    ):
        with pytest.raises(ValueError, match=f"required dim {key} "):
            model.output_coords(OrderedDict(good, **{key: value}))
    x = torch.zeros(2, 1, 3, 8, 16)
    with pytest.raises(ValueError, match="required dim lat "):
        model(x, OrderedDict(good, lat=good["lat"] + 0.5))


# ------------------------------------------------------------------ ClimaX -> CorrDiff
def test_chained_downscaler_writes_the_fine_grid(climax_run, corrdiff_run, files, tmp_path):
    downscaler = CorrDiffDiagnostic.from_runs(corrdiff_run)  # regression mean: deterministic
    fine, _ = regional(times=1)
    e2s_run.diagnostic(
        [T0],
        2,
        ClimaXPrognostic.from_run(climax_run),
        downscaler,
        FileSource(files),
        ZarrBackend(str(tmp_path / "fine.zarr")),
        device="cpu",
        verbose=False,
    )
    out = xr.open_zarr(tmp_path / "fine.zarr", consolidated=False)
    assert sorted(out.data_vars) == ["t2m", "u10m"] and out.t2m.shape == (1, 3, 16, 24)
    assert np.allclose(out.lat, fine.lat) and np.allclose(out.lon, fine.lon)
    # the same numbers as the package's forecast -> downscale pipeline (regression mean at 6 h)
    gen = load_config(
        [
            f"generation.io.reg_ckpt_filename={corrdiff_run}",
            "generation.io.res_ckpt_filename=null",
            "generation.inference_mode=regression",
            "generation.num_ensembles=1",
            "generation.seed_batch_size=1",
        ],
        "config_generate_hrrr_mini",
    ).generation
    path = forecast_and_downscale(climax_run, initial_condition(files), ["6h"], gen, tmp_path / "pipe.nc")
    reference = xr.open_dataset(path, group="regression")
    np.testing.assert_allclose(
        out.u10m.isel(time=0, lead_time=1).values,
        reference["10m_u_component_of_wind"].isel(time=0).values,
        rtol=1e-4,
        atol=1e-4,
    )


def test_downscaler_members_and_bad_grids(corrdiff_run):
    downscaler = CorrDiffDiagnostic.from_runs(corrdiff_run, samples=3)
    lat, lon = np.linspace(-80, 80, 17), np.arange(0, 360, 22.5)
    coords = OrderedDict(time=np.array([T0], dtype="datetime64[ns]"), variable=np.array(["t2m"]), lat=lat, lon=lon)
    x = torch.full((1, 1, 17, 16), 285.0)
    y, out = downscaler(x, coords)
    assert list(out) == ["time", "sample", "variable", "lat", "lon"] and y.shape == (1, 3, 2, 16, 24)
    assert torch.isfinite(y).all()
    with pytest.raises(ValueError, match="lat -10..10 does not cover"):
        downscaler.output_coords(OrderedDict(coords, lat=np.linspace(-10, 10, 5)))
    with pytest.raises(ValueError, match="lon 90..180 does not cover"):
        downscaler.output_coords(OrderedDict(coords, lon=np.linspace(90, 180, 5)))
    with pytest.raises(ValueError, match="required dim variable"):
        downscaler.output_coords(OrderedDict(coords, variable=np.array(["z500"])))


# ------------------------------------------------------------------ data source and example
def test_file_source_names_what_the_files_lack(files):
    source = FileSource(files)
    da = source(np.array([T0], dtype="datetime64[ns]"), ["z500", "lsm"])
    assert da.dims == ("time", "variable", "lat", "lon") and list(da["variable"].values) == ["z500", "lsm"]
    assert da.lat.values[0] > da.lat.values[-1]  # the files' own grid, north to south
    with pytest.raises(KeyError, match="'sd' has no ClimaX name"):
        source([T0], ["sd"])
    with pytest.raises(KeyError, match="specific_humidity_700"):
        source([T0], ["q700"])
    with pytest.raises(KeyError, match="1999"):
        source(["1999-01-01T00"], ["t2m"])


def test_example_script_runs(climax_run, files, tmp_path):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "e2s_example", Path(__file__).parents[1] / "examples" / "earth2studio" / "deterministic.py"
    )
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = example.main(
        [
            "--run",
            str(climax_run),
            "--data",
            *map(str, files),
            "--time",
            T0,
            "--steps",
            "2",
            "--out",
            str(tmp_path / "ex.zarr"),
        ]
    )
    assert out.z500.shape == (1, 3, 8, 16)
