# SPDX-License-Identifier: Apache-2.0
"""Downscaling data: upsampling, the CorrDiff-Mini layout, coarse/fine xarray data, bad input."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import xarray as xr

from physicsnemo_climax.downscaling import CoarseFineDataset, HRRRMiniDataset, block_mean, upsample, write_mini_file


def test_upsampling_reproduces_linear_fields_up_to_the_borders():
    y, x = np.meshgrid(np.arange(4.0), np.arange(5.0), indexing="ij")
    coarse = 2 * y - 3 * x + 1
    fine = upsample(coarse, 4)
    fy = (np.arange(16) + 0.5) / 4 - 0.5
    fx = (np.arange(20) + 0.5) / 4 - 0.5
    want = 2 * fy[:, None] - 3 * fx[None, :] + 1
    assert np.allclose(fine, want, atol=1e-5)
    # torch's bilinear clamps at the borders instead: same inside, different on the outer ring
    torch_fine = F.interpolate(torch.tensor(coarse)[None, None], scale_factor=4, mode="bilinear", align_corners=False)[
        0, 0
    ].numpy()
    assert np.allclose(torch_fine[2:-2, 2:-2], fine[2:-2, 2:-2], atol=1e-5)
    assert not np.allclose(torch_fine[0], fine[0])


@pytest.fixture
def mini(tmp_path):
    path, stats = tmp_path / "hrrr_mini.nc", tmp_path / "stats.json"
    write_mini_file(path, stats, samples=5, shape=(32, 32), factor=4, invariant_shape=(48, 40))
    return path, stats


def test_reads_the_layout_and_normalizes(mini):
    path, stats_path = mini
    ds = HRRRMiniDataset(path, stats_path)
    dom = ds.domain
    assert dom.input_variables == ["10u", "10v", "2t", "tp"] and dom.output_variables == ["10u", "10v"]
    assert len(ds) == 5 and dom.factor == 4 and dom.shape == (32, 32)
    sample = ds[3]
    assert sample["input"].shape == (6, 32, 32) and sample["target"].shape == (2, 32, 32)
    stats = json.loads(stats_path.read_text())
    out = xr.open_dataset(path, group="output")
    want = (out["10v"].values[3] - stats["output"]["10v"]["mean"]) / stats["output"]["10v"]["std"]
    assert np.allclose(sample["target"][1].numpy(), want, atol=1e-5)
    assert torch.allclose(dom.denormalize_output(sample["target"])[1], torch.as_tensor(out["10v"].values[3]), atol=1e-4)
    # invariants are cropped at the sample's window
    i, j = xr.open_dataset(path)["coord"].values[3]
    inv = xr.open_dataset(path, group="invariant")["lsm_mean"].values[i : i + 32, j : j + 32]
    lsm = stats["invariant"]["lsm_mean"]
    assert np.allclose(sample["input"][5].numpy(), (inv - lsm["mean"]) / lsm["std"], atol=1e-5)
    # the coarse input is the fine field's block mean, upsampled
    coarse = xr.open_dataset(path, group="input")["2t"].values[3]
    t2 = stats["input"]["2t"]
    assert np.allclose(sample["input"][2].numpy(), (upsample(coarse, 4) - t2["mean"]) / t2["std"], atol=1e-5)


def test_bad_input_is_named(mini, tmp_path):
    path, stats_path = mini
    stats = json.loads(stats_path.read_text())
    del stats["output"]["10v"]
    broken = tmp_path / "broken_stats.json"
    broken.write_text(json.dumps(stats))
    with pytest.raises(KeyError, match=r"10v.*output"):
        HRRRMiniDataset(path, broken)
    with pytest.raises(KeyError, match="msl"):
        HRRRMiniDataset(path, stats_path, output_variables=["msl"])
    # a coarse grid that does not divide the fine one
    odd = tmp_path / "odd.nc"
    xr.open_dataset(path).load().to_netcdf(odd, mode="w")
    coarse = {v: (("sample", "y_lr", "x_lr"), np.zeros((5, 5, 8), np.float32)) for v in ["10u", "10v", "2t", "tp"]}
    xr.Dataset(coarse).to_netcdf(odd, mode="a", group="input")
    for group in ("output", "invariant"):
        xr.open_dataset(path, group=group).load().to_netcdf(odd, mode="a", group=group)
    with pytest.raises(ValueError, match="not a common multiple"):
        HRRRMiniDataset(odd, stats_path)


# ------------------------------------------------------------ coarse/fine xarray data
def regional(times=6, h=16, w=24, seed=0):
    """A fine regional dataset on a lat/lon box, with an orography-like invariant."""
    rng = np.random.default_rng(seed)
    lat = np.linspace(30, 60, h)
    lon = np.linspace(-10, 20, w)
    t = pd.date_range("2001-01-01", periods=times, freq="6h")
    field = rng.normal(size=(times, h, w)).astype(np.float32) + np.cos(np.deg2rad(lat))[None, :, None]
    ds = xr.Dataset(
        {
            "2m_temperature": (("time", "lat", "lon"), 280 + field),
            "10m_u_component_of_wind": (("time", "lat", "lon"), 2 * field[:, ::-1]),
        },
        coords={"time": t, "lat": lat, "lon": lon},
    )
    inv = xr.Dataset(
        {"orography": (("lat", "lon"), rng.normal(size=(h, w)).astype(np.float32) * 300)},
        coords={"lat": lat, "lon": lon},
    )
    return ds, inv


def test_coarsening_is_the_cos_latitude_area_mean():
    fine, inv = regional()
    ds = CoarseFineDataset(fine, ["2m_temperature"], factor=4, invariants=inv, invariant_variables=["orography"])
    assert len(ds) == 6 and ds.domain.shape == (16, 24) and ds.domain.coarse_shape == (4, 6)
    coarse = ds.coarse_fields(2)[0]
    block = fine["2m_temperature"].values[2, 4:8, 8:12].astype(np.float64)
    w = np.cos(np.deg2rad(fine.lat.values[4:8]))[:, None]
    assert coarse[1, 2] == pytest.approx((block * w).sum() / (w.sum() * 4), rel=1e-6)
    assert np.allclose(ds.domain.coarse_lat, fine.lat.values.reshape(4, 4).mean(1))
    sample = ds[2]
    assert sample["input"].shape == (2, 16, 24) and sample["target"].shape == (1, 16, 24)
    s = ds.domain.stats
    want = (upsample(coarse, 4) - s["input"]["2m_temperature"]["mean"]) / s["input"]["2m_temperature"]["std"]
    assert np.allclose(sample["input"][0].numpy(), want, atol=1e-4)
    oro = inv.orography.values
    assert np.allclose(sample["input"][1].numpy(), (oro - oro.mean()) / oro.std(), atol=1e-4)
    # statistics are those of the data: the normalized target has mean 0 over all samples
    targets = torch.stack([ds[i]["target"] for i in range(len(ds))])
    assert abs(targets.mean().item()) < 1e-4 and targets.std(unbiased=False).item() == pytest.approx(1, rel=1e-3)


def test_a_coarse_fine_pair_and_a_time_range(tmp_path):
    fine, _ = regional()
    coarse = xr.Dataset(
        {"2m_temperature": (("time", "lat", "lon"), block_mean(fine["2m_temperature"].values, 4) + 1.0)},
        coords={
            "time": fine.time,
            "lat": fine.lat.values.reshape(4, 4).mean(1),
            "lon": fine.lon.values.reshape(6, 4).mean(1),
        },
    )
    fine.to_netcdf(tmp_path / "fine.nc")
    coarse.to_netcdf(tmp_path / "coarse.nc")
    ds = CoarseFineDataset(
        str(tmp_path / "fine.nc"),
        ["10m_u_component_of_wind"],
        ["2m_temperature"],
        coarse=str(tmp_path / "coarse.nc"),
        time_range=["2001-01-01T06", "2001-01-01T18"],
    )
    assert len(ds) == 3 and ds.domain.factor == 4
    assert np.allclose(ds.coarse_fields(0), coarse["2m_temperature"].values[1:2])  # the pair's own values
    with pytest.raises(KeyError, match="coarse data lack"):
        CoarseFineDataset(fine, ["2m_temperature"], coarse=coarse.isel(time=slice(0, 3)))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"factor": 5}, ValueError, "factor 5 does not divide the fine grid 16x24"),
        ({}, ValueError, "dataset.factor is required"),
        ({"factor": 4, "input_variables": ["snow"]}, KeyError, "snow"),
        ({"factor": 4, "invariant_variables": ["orography"]}, ValueError, "no dataset.invariants"),
        ({"factor": 4, "stats": {"input": {}, "output": {}, "invariant": {}}}, KeyError, "2m_temperature"),
    ],
)
def test_coarse_fine_bad_input_is_named(kwargs, error, match):
    fine, _ = regional()
    with pytest.raises(error, match=match):
        CoarseFineDataset(fine, ["2m_temperature"], **kwargs)
