# SPDX-License-Identifier: Apache-2.0
"""Upstream CorrDiff's dataset layouts (cwb, gefs_hrrr) and user classes, on small files written here."""

import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from omegaconf import OmegaConf

from physicsnemo_climax.config import load_config
from physicsnemo_climax.downscaling.cwb import CWBDataset
from physicsnemo_climax.downscaling.datasets import build_dataset
from physicsnemo_climax.downscaling.domain import degrade
from physicsnemo_climax.downscaling.gefs_hrrr import GefsHrrrDataset, bilinear_weights
from physicsnemo_climax.downscaling.interface import DownscalingDataset
from physicsnemo_climax.errors import ConfigError

ERA5 = [("temperature", 500.0), ("temperature", 850.0), ("eastward_wind_10m", np.nan), ("precipitation", np.nan)]
CWB = [("temperature_2m", np.nan), ("eastward_wind_10m", np.nan), ("maximum_radar_reflectivity", np.nan)]


# ---------------------------------------------------------------- cwb
def write_cwb(path, shape=(10, 12), seed=0):
    """A CWB Zarr: 3 times in 2020, 3 in 2021; time 1 has an invalid target, time 4 an invalid ERA5 channel."""
    rng = np.random.default_rng(seed)
    times = pd.to_datetime(["2020-01-01", "2020-06-01", "2020-09-01", "2021-01-01", "2021-02-01", "2021-03-01"])
    n, (h, w) = len(times), shape
    era5_center, era5_scale = np.array([250.0, 270.0, 1.0, 0.5]), np.array([5.0, 6.0, 3.0, 0.4])
    cwb_center, cwb_scale = np.array([290.0, 0.5, 10.0]), np.array([7.0, 2.0, 9.0])
    era5 = rng.normal(size=(n, 4, h, w)) * era5_scale[:, None, None] + era5_center[:, None, None]
    cwb = rng.normal(size=(n, 3, h, w)) * cwb_scale[:, None, None] + cwb_center[:, None, None]
    era5_valid = np.ones((n, 4), bool)
    era5_valid[4, 2] = False
    cwb_valid = np.array([1, 0, 1, 1, 1, 1], np.int8)
    lat, lon = np.meshgrid(21 + 0.1 * np.arange(h), 119 + 0.1 * np.arange(w), indexing="ij")
    grid = ("south_north", "west_east")
    ds = xr.Dataset(
        {
            "cwb": (("time", "cwb_channel", *grid), cwb.astype(np.float32)),
            "cwb_center": ("cwb_channel", cwb_center.astype(np.float32)),
            "cwb_scale": ("cwb_channel", cwb_scale.astype(np.float32)),
            "cwb_variable": ("cwb_channel", np.array([v for v, _ in CWB])),
            "cwb_pressure": ("cwb_channel", np.array([p for _, p in CWB])),
            "cwb_valid": ("time", cwb_valid),
            "era5": (("time", "era5_channel", *grid), era5.astype(np.float32)),
            "era5_center": ("era5_channel", era5_center.astype(np.float32)),
            "era5_scale": ("era5_channel", era5_scale.astype(np.float32)),
            "era5_variable": ("era5_channel", np.array([v for v, _ in ERA5])),
            "era5_pressure": ("era5_channel", np.array([p for _, p in ERA5])),
            "era5_valid": (("time", "era5_channel"), era5_valid),
            "XLAT": (grid, lat.astype(np.float32)),
            "XLONG": (grid, lon.astype(np.float32)),
        },
        coords={"time": times},
    )
    ds.to_zarr(path, zarr_format=2, consolidated=True)
    return ds


@pytest.fixture(scope="module")
def cwb(tmp_path_factory):
    path = tmp_path_factory.mktemp("cwb") / "cwb.zarr"
    return path, write_cwb(path)


def test_cwb_samples_are_the_file_values_normalized_with_its_stats(cwb):
    path, ds = cwb
    data = CWBDataset(path, in_channels=[3, 0], out_channels=[2, 0], img_shape_x=8, img_shape_y=6)
    assert isinstance(data, DownscalingDataset)
    assert data.domain.input_variables == ["precipitation", "temperature_500"]
    assert data.domain.output_variables == ["maximum_radar_reflectivity", "temperature_2m"]
    assert data.domain.shape == (6, 8) and data.domain.factor == 1
    assert list(data.times) == list(ds.time.values[[0, 2]])  # 2020 only; time 1's target is invalid
    sample = data[1]  # file row 2
    era5, cwb_ = ds.era5.values[2], ds.cwb.values[2]
    want_x = [(era5[c, :6, :8] - ds.era5_center.values[c]) / ds.era5_scale.values[c] for c in (3, 0)]
    want_y = [(cwb_[c, :6, :8] - ds.cwb_center.values[c]) / ds.cwb_scale.values[c] for c in (2, 0)]
    np.testing.assert_allclose(sample["input"].numpy(), want_x, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sample["target"].numpy(), want_y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(data.fine_fields(1), cwb_[[2, 0], :6, :8])
    np.testing.assert_allclose(data.domain.lat, ds.XLAT.values[:6, :8])


def test_cwb_channels_by_name_and_the_test_split(cwb):
    path, ds = cwb
    by_name = CWBDataset(
        path,
        in_channels=["precipitation", "temperature_500"],
        out_channels=["maximum_radar_reflectivity", "temperature_2m"],
        img_shape_x=8,
        img_shape_y=6,
        train=False,
    )
    assert list(by_name.times) == list(ds.time.values[[3, 5]])  # 2021; time 4 has an invalid ERA5 channel
    by_index = CWBDataset(path, in_channels=[3, 0], out_channels=[2, 0], img_shape_x=8, img_shape_y=6, train=False)
    assert torch.equal(by_name[1]["input"], by_index[1]["input"])
    everything = CWBDataset(path, in_channels=[0], out_channels=[0], img_shape_x=8, img_shape_y=6, all_times=True)
    assert list(everything.times) == list(ds.time.values[[0, 2, 3, 5]])


def test_cwb_v2_normalization_and_the_coarsened_target(cwb):
    path, ds = cwb
    data = CWBDataset(
        path, in_channels=[0], out_channels=[1, 2], img_shape_x=12, img_shape_y=10, normalization="v2", ds_factor=3
    )
    assert data.domain.stats["output"]["eastward_wind_10m"] == {"mean": 0.0, "std": 20.0}
    assert data.domain.stats["output"]["maximum_radar_reflectivity"] == {"mean": 25.0, "std": 25.0}
    fine = data.fine_fields(0)
    np.testing.assert_allclose(fine, degrade(ds.cwb.values[0, [1, 2]], 3), rtol=1e-6)
    np.testing.assert_allclose(data[0]["target"].numpy()[0], fine[0] / 20.0, rtol=1e-5)


def test_degrade_keeps_every_nth_point_where_the_coarse_centres_fall():
    x = np.random.default_rng(1).normal(size=(2, 9, 12)).astype(np.float32)
    out = degrade(x, 3)
    assert out.shape == x.shape
    np.testing.assert_allclose(out[:, 1::3, 1::3], x[:, ::3, ::3], atol=1e-5)  # fine 3i+1 sits on coarse i
    assert np.allclose(degrade(np.full((5, 7), 2.5), 2), 2.5)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"in_channels": ["humidity"]}, ["dataset.in_channels", "humidity"]),
        ({"out_channels": [7]}, ["dataset.out_channels", "7"]),
        ({"img_shape_x": 64}, ["img_shape_y x img_shape_x", "10x12"]),
        ({"normalization": "v3"}, ["dataset.normalization", "v3"]),
    ],
)
def test_cwb_errors_name_the_item(cwb, kwargs, words):
    path, _ = cwb
    args = {"in_channels": [0], "out_channels": [0], "img_shape_x": 8, "img_shape_y": 6, **kwargs}
    with pytest.raises((KeyError, ValueError)) as err:
        CWBDataset(path, **args)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_cwb_file_without_a_variable_is_named(tmp_path, cwb):
    _, ds = cwb
    ds.drop_vars("era5_valid").to_zarr(tmp_path / "bad.zarr", zarr_format=2)
    with pytest.raises(KeyError, match=r"bad.zarr.*era5_valid"):
        CWBDataset(tmp_path / "bad.zarr")


def test_cwb_from_the_config_group(cwb):
    path, _ = cwb
    cfg = load_config(
        [
            "dataset=cwb",
            f"dataset.data_path={path}",
            "dataset.in_channels=[0,1]",
            "dataset.out_channels=[0]",
            "dataset.img_shape_x=8",
            "dataset.img_shape_y=6",
        ],
        "config_training_hrrr_mini_regression",
    )
    data = build_dataset(cfg.dataset)
    assert isinstance(data, CWBDataset) and len(data) == 2
    stats = {
        "input": {"temperature_500": {"mean": 0.0, "std": 1.0}, "temperature_850": {"mean": 0.0, "std": 1.0}},
        "output": {"temperature_2m": {"mean": 0.0, "std": 1.0}},
    }
    raw = build_dataset(cfg.dataset, stats)  # a training run's statistics replace the file's
    np.testing.assert_allclose(raw[0]["target"].numpy(), raw.fine_fields(0))


# ---------------------------------------------------------------- gefs_hrrr
SURFACE, ISOBARIC = ["u10m", "t2m"], ["z200", "r850"]
OUTPUTS, PROB = ["t2m", "cat_snow", "cat_rain", "cat_none"], ["cat_snow", "cat_rain"]
GLAT, GLON = np.arange(50.0, 19.0, -2.0), np.arange(240.0, 301.0, 2.0)  # GEFS: descending latitude


def gefs_value(k, t, lat, lon):
    """Channel ``k`` of GEFS time ``t``: linear in lat/lon, so bilinear interpolation is exact."""
    return (k + 1) * lat - 0.5 * (t + 1) * lon + 10 * k


def write_gefs_hrrr(root, periods):
    """Stores of the gefs_hrrr layout; ``periods``: {period: [sample names]}."""
    rng = np.random.default_rng(0)
    hlat, hlon = np.meshgrid(np.linspace(30, 40, 6), np.linspace(-110, -90, 8), indexing="ij")
    hlat = hlat + 0.3 * np.sin(hlon / 5)  # a curvilinear grid, longitudes west-negative
    glat2, glon2 = np.meshgrid(GLAT, GLON, indexing="ij")
    written = {}
    for period, names in periods.items():
        for kind, channels in (("surface", SURFACE), ("isobaric", ["z250", "q850", "z500"])):
            values = np.stack(
                [
                    np.stack([gefs_value(k + 10 * (kind == "isobaric"), t, glat2, glon2) for k in range(len(channels))])
                    for t in range(len(names))
                ]
            )
            xr.Dataset(
                {"values": (("time", "channel", "x", "y"), values.astype(np.float32))},
                coords={
                    "time": names,
                    "channel": channels,
                    "lat": (("x", "y"), glat2),
                    "lon": (("x", "y"), glon2 - 360),
                },
            ).to_zarr(root / "gefs" / f"gefs_{kind}_{period}.zarr", zarr_format=2)
        hrrr = np.zeros((len(names) + 1, 4, 6, 8), np.float32)
        hrrr[:, 0] = rng.normal(280, 5, (len(names) + 1, 6, 8))
        hrrr[:, 1:3] = rng.integers(0, 2, (len(names) + 1, 2, 6, 8))
        hrrr[:, 3] = 99.0  # refc, not read
        hrrr_names = names + [names[0][:-2] + "99"]  # a sample without GEFS data
        xr.Dataset(
            {"values": (("time", "channel", "y", "x"), hrrr)},
            coords={
                "time": hrrr_names,
                "channel": ["t2m", "cat_snow", "cat_rain", "refc"],
                "lat": (("y", "x"), hlat),
                "lon": (("y", "x"), hlon),
            },
        ).to_zarr(root / "hrrr_forecast" / f"hrrr_{period}.zarr", zarr_format=2)
        written[period] = hrrr
    return written, hlat, hlon % 360


def gefs_kwargs(root, **extra):
    stats = {
        "input": {v: {"mean": 1.0, "std": 2.0} for v in SURFACE + ISOBARIC + ["z700"]},
        "output": {v: {"mean": 0.5, "std": 4.0} for v in OUTPUTS},
    }
    (root / "stats.json").write_text(__import__("json").dumps(stats))
    return {
        "data_path": root,
        "stats_path": root / "stats.json",
        "input_surface_variables": SURFACE,
        "input_isobaric_variables": ISOBARIC,
        "output_variables": OUTPUTS,
        "prob_variables": PROB,
        "train_years": [2021],
        "valid_years": [2024],
        "ds_factor": 1,
        **extra,
    }


@pytest.fixture(scope="module")
def gefs(tmp_path_factory):
    root = tmp_path_factory.mktemp("gefs_hrrr")
    written = write_gefs_hrrr(
        root, {"2021_01_06": ["2021010100f00", "2021010100f06", "2021010106f03"], "2024_01_07": ["2024010200f24"]}
    )
    return root, written


def test_gefs_hrrr_samples_lead_times_and_split(gefs):
    root, (written, hlat, hlon) = gefs
    data = GefsHrrrDataset(**gefs_kwargs(root, train=True))
    assert isinstance(data, DownscalingDataset)
    assert data.sample_names == ["2021010100f00", "2021010100f06", "2021010106f03"]  # f99 has no GEFS data
    assert [data.lead_time_label(i) for i in range(3)] == [0, 2, 1]
    assert data[1]["lead_time_label"] == 2
    assert list(data.times) == list(pd.to_datetime(["2021-01-01T00", "2021-01-01T06", "2021-01-01T09"]))
    valid = GefsHrrrDataset(**gefs_kwargs(root, train=False))
    assert valid.sample_names == ["2024010200f24"] and valid.lead_time_label(0) == 8


def test_gefs_input_is_interpolated_to_the_hrrr_points(gefs):
    root, (written, hlat, hlon) = gefs
    data = GefsHrrrDataset(**gefs_kwargs(root, train=True))
    t = 1
    want = [
        gefs_value(0, t, hlat, hlon),
        gefs_value(1, t, hlat, hlon),  # surface u10m, t2m
        gefs_value(10, t, hlat, hlon),
        gefs_value(11, t, hlat, hlon),
    ]  # z200 is z250, r850 is q850
    np.testing.assert_allclose(data.coarse_fields(t), want, rtol=1e-4)
    np.testing.assert_allclose(data[t]["input"].numpy(), (np.array(want) - 1.0) / 2.0, rtol=1e-4, atol=1e-4)
    coarse = GefsHrrrDataset(**gefs_kwargs(root, train=True, ds_factor=2))
    np.testing.assert_allclose(coarse.coarse_fields(t), degrade(np.array(want, np.float32), 2), rtol=1e-4)


def test_gefs_hrrr_targets_turn_categories_into_probabilities(gefs):
    root, (written, _, _) = gefs
    data = GefsHrrrDataset(**gefs_kwargs(root, train=True, hrrr_window=[[1, 5], [2, 8]]))
    fine = data.fine_fields(2)
    raw = written["2021_01_06"][2][:, 1:5, 2:8]
    snow, rain = raw[1], raw[2]
    count = snow + rain + (snow + rain == 0)
    np.testing.assert_allclose(fine, [raw[0], snow / count, rain / count, (snow + rain == 0) / count])
    np.testing.assert_allclose(fine[1:].sum(0), 1.0)
    np.testing.assert_allclose(data[2]["target"].numpy(), (fine - 0.5) / 4.0, rtol=1e-5, atol=1e-6)
    assert data.domain.shape == (4, 6)


@pytest.mark.parametrize(
    "extra, words",
    [
        ({"output_variables": ["t2m", "cat_none", "cat_snow", "cat_rain"]}, ["dataset.output_variables", "cat_none"]),
        ({"prob_variables": ["cat_hail"]}, ["dataset.prob_variables", "cat_hail"]),
        ({"sample_shape": [4, 4]}, ["dataset.sample_shape"]),
        ({"shard": True}, ["dataset.shard"]),
        ({"hrrr_window": [[0, 9], [0, 8]]}, ["dataset.hrrr_window"]),
        ({"train_years": [1999]}, ["1999"]),
    ],
)
def test_gefs_hrrr_errors_name_the_item(gefs, extra, words):
    root, _ = gefs
    with pytest.raises((ConfigError, FileNotFoundError)) as err:
        GefsHrrrDataset(**gefs_kwargs(root, train=True, **extra))
    assert all(w in str(err.value) for w in words), str(err.value)


def test_gefs_channel_absent_from_the_store_is_named(gefs):
    root, _ = gefs
    data = GefsHrrrDataset(**gefs_kwargs(root, train=True, input_isobaric_variables=["z700"]))
    with pytest.raises(KeyError, match=r"isobaric_2021_01_06.zarr: no channel 'z700'"):
        data[0]


def test_bilinear_weights_on_descending_axes():
    axis = np.array([10.0, 8.0, 6.0, 4.0])
    low, w = bilinear_weights(axis, np.array([9.0, 4.5, 10.0, 3.0]))
    values = axis * 3.0
    got = (1 - w) * values[low] + w * values[low + 1]
    np.testing.assert_allclose(got[:3], [27.0, 13.5, 30.0])
    assert np.isnan(got[3])


# ---------------------------------------------------------------- user classes
USER = """
import numpy as np
import torch
from physicsnemo_climax.downscaling.domain import Domain


class Tiny{suffix}:
    def __init__(self, data_path, scale=1.0, stats=None, **unused):
        self.scale = scale
        stats = stats or {{"input": {{"a": {{"mean": 0.0, "std": 2.0}}}},
                           "output": {{"b": {{"mean": 1.0, "std": 1.0}}}}}}
        self.domain = Domain(["a"], ["b"], [], stats, 2, (4, 6))
        {times}

    def __len__(self):
        return 3

    def __getitem__(self, i):
        x = self.domain.make_input(np.full((1, 2, 3), float(i), np.float32))
        y = self.domain.normalize_output(self.fine_fields(i))
        return {{"input": torch.from_numpy(x), "target": torch.from_numpy(y){extra}, "index": i}}

    {fine}
"""


def user_file(
    tmp_path,
    times="self.times = np.arange(3).astype('datetime64[h]')",
    extra="",
    fine="def fine_fields(self, i):\n        return np.full((1, 4, 6), i * self.scale, np.float32)",
):
    path = tmp_path / "my_data.py"
    path.write_text(textwrap.dedent(USER.format(suffix="", times=times, extra=extra, fine=fine)))
    return path


def user_spec(path, name="Tiny", **extra):
    return OmegaConf.create({"type": f"{path}::{name}", "data_path": "somewhere", "stats_path": None, "args": extra})


def test_a_user_class_is_loaded_from_its_file_with_the_other_keys(tmp_path):
    path = user_file(tmp_path)
    data = build_dataset(user_spec(path, scale=2.0))
    assert type(data).__name__ == "Tiny" and isinstance(data, DownscalingDataset)
    np.testing.assert_allclose(data.fine_fields(2), 4.0)
    np.testing.assert_allclose(data[2]["input"].numpy(), 1.0)  # (2 - 0) / 2
    stats = {"input": {"a": {"mean": 0.0, "std": 1.0}}, "output": {"b": {"mean": 0.0, "std": 1.0}}}
    assert build_dataset(user_spec(path), stats).domain.input_std[0] == 1.0  # the training run's statistics


def test_a_user_class_from_the_command_line(tmp_path):
    path = user_file(tmp_path)
    cfg = load_config(
        ["dataset=custom", f"dataset.type={path}::Tiny", "dataset.data_path=x", "+dataset.args.scale=3.0"],
        "config_training_hrrr_mini_regression",
    )
    np.testing.assert_allclose(build_dataset(cfg.dataset).fine_fields(1), 3.0)


@pytest.mark.parametrize(
    "setup, words",
    [
        (lambda p: (p / "absent.py", "Tiny"), ["absent.py", "no such file"]),
        (lambda p: (user_file(p), "Huge"), ["my_data.py", "no class Huge"]),
        (lambda p: (user_file(p, fine="pass"), "Tiny"), ["Tiny", "fine_fields", "DownscalingDataset"]),
        (lambda p: (user_file(p, times="pass"), "Tiny"), ["Tiny", "'times'"]),
        (lambda p: (user_file(p, extra="[:, :2]"), "Tiny"), ["Tiny", "'target'", "(1, 2, 6)", "(1, 4, 6)"]),
    ],
)
def test_a_user_class_that_does_not_fit_is_an_error_naming_it(tmp_path, setup, words):
    path, name = setup(tmp_path)
    with pytest.raises(ConfigError) as err:
        build_dataset(user_spec(path, name))
    assert all(w in str(err.value) for w in words), str(err.value)


def test_an_unknown_dataset_type_is_named():
    with pytest.raises(ConfigError, match="dataset.type='era6'.*cwb, gefs_hrrr"):
        build_dataset(OmegaConf.create({"type": "era6"}))


# ---------------------------------------------------------------- through training and generation
def test_a_cwb_run_trains_and_generates_on_its_times(cwb, tmp_path):
    from physicsnemo_climax.downscaling.generation import generate
    from physicsnemo_climax.downscaling.training import train

    path, ds = cwb
    data = [
        f"dataset.data_path={path}",
        "dataset=cwb",
        "dataset.in_channels=[0,1,3]",
        "dataset.out_channels=[0,2]",
        "dataset.img_shape_x=8",
        "dataset.img_shape_y=8",
    ]
    run = train(
        load_config(
            data
            + [
                f"run_dir={tmp_path / 'reg'}",
                "model_size=tiny",
                "holdout=0",  # two samples: none to spare for validation
                "train.steps=2",
                "train.batch_size=2",
                "train.grad_accum=1",
                "train.num_workers=0",
                "train.progress=false",
            ],
            "config_training_hrrr_mini_regression",
        )
    )
    out = tmp_path / "out.nc"
    generate(
        load_config(
            data
            + [
                "dataset.train=false",
                f"generation.io.reg_ckpt_filename={run}",
                f"generation.io.res_ckpt_filename={run}",
                "generation.inference_mode=regression",
                f"generation.io.output_filename={out}",
                "generation.num_ensembles=1",
                "generation.seed_batch_size=1",
                "generation.times=[2021-03-01T00:00:00]",
            ],
            "config_generate_hrrr_mini",
        )
    )
    with xr.open_dataset(out, group="truth") as truth, xr.open_dataset(out) as root:
        assert list(root.time.values) == [np.datetime64("2021-03-01")]
        np.testing.assert_allclose(truth["maximum_radar_reflectivity"].values[0], ds.cwb.values[5, 2, :8, :8])


def test_a_gefs_hrrr_run_trains_with_lead_time_labels_in_its_batches(gefs, tmp_path):
    from physicsnemo_climax.downscaling.training import train

    root, _ = gefs
    gefs_kwargs(root)  # writes stats.json
    cfg = load_config(
        [
            "dataset=gefs_hrrr",
            f"dataset.data_path={root}",
            f"dataset.stats_path={root / 'stats.json'}",
            "dataset.input_surface_variables=[u10m,t2m]",
            "dataset.input_isobaric_variables=[z200,r850]",
            "dataset.output_variables=[t2m,cat_snow,cat_rain,cat_none]",
            "dataset.prob_variables=[cat_snow,cat_rain]",
            "dataset.train=true",
            "dataset.train_years=[2021]",
            "dataset.hrrr_window=null",
            f"run_dir={tmp_path / 'reg'}",
            "model_size=tiny",
            "train.steps=2",
            "train.batch_size=2",
            "train.grad_accum=1",
            "train.num_workers=0",
            "train.progress=false",
        ],
        "config_training_hrrr_mini_regression",
    )
    batch = next(iter(torch.utils.data.DataLoader(build_dataset(cfg.dataset), batch_size=3)))
    assert batch["lead_time_label"].tolist() == [0, 2, 1] and batch["input"].shape == (3, 4, 6, 8)
    assert (train(cfg) / "checkpoints").is_dir()
