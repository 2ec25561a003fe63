# SPDX-License-Identifier: Apache-2.0
"""CorrDiff-Mini layout: upsampling, reading, normalization, bad input."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import xarray as xr

from physicsnemo_climax.downscaling import HRRRMiniDataset, upsample, write_mini_file


def test_upsampling_reproduces_linear_fields_up_to_the_borders():
    y, x = np.meshgrid(np.arange(4.0), np.arange(5.0), indexing="ij")
    coarse = 2 * y - 3 * x + 1
    fine = upsample(coarse, 4)
    fy = (np.arange(16) + 0.5) / 4 - 0.5
    fx = (np.arange(20) + 0.5) / 4 - 0.5
    want = 2 * fy[:, None] - 3 * fx[None, :] + 1
    assert np.allclose(fine, want, atol=1e-5)
    # torch's bilinear clamps at the borders instead: same inside, different on the outer ring
    torch_fine = F.interpolate(torch.tensor(coarse)[None, None], scale_factor=4, mode="bilinear",
                               align_corners=False)[0, 0].numpy()
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
    inv = xr.open_dataset(path, group="invariant")["lsm_mean"].values[i:i + 32, j:j + 32]
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
