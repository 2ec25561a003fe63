# SPDX-License-Identifier: Apache-2.0
"""Metrics against hand computations."""

import math

import pytest
import torch

from physicsnemo_climax.metrics import acc, bias, crps, latitude_weights, mae, rmse, weighted_mse_loss


def test_latitude_weights_mean_one():
    lat = torch.tensor([-60.0, 0.0, 60.0])
    w = latitude_weights(lat)
    # cos = 0.5, 1, 0.5 -> mean 2/3 -> weights 0.75, 1.5, 0.75
    assert torch.allclose(w, torch.tensor([0.75, 1.5, 0.75]))


def test_rmse_hand_values_and_per_sample_sqrt():
    lat = torch.tensor([-60.0, 0.0, 60.0])
    target = torch.zeros(2, 1, 3, 2)
    pred = torch.zeros(2, 1, 3, 2)
    pred[0, 0, 1, :] = 2.0  # error 2 on the equator row only: mse = 1.5*4/3 = 2
    pred[1, 0] = 1.0  # error 1 everywhere: mse = 1
    want = (math.sqrt(2.0) + 1.0) / 2  # sqrt per sample, then mean
    assert rmse(pred, target, lat).item() == pytest.approx(want)
    assert rmse(target, target, lat).item() == 0.0
    assert weighted_mse_loss(pred, target, lat).item() == pytest.approx((2.0 + 1.0) / 2)


def test_acc_known_cases():
    torch.manual_seed(0)
    lat = torch.linspace(-80, 80, 8)
    clim = torch.randn(2, 8, 16)
    target = clim + torch.randn(3, 2, 8, 16)
    assert torch.allclose(acc(target, target, clim, lat), torch.ones(2, dtype=torch.float64))
    # a forecast of the anomaly's opposite has ACC -1; scaling does not matter
    assert torch.allclose(acc(clim - 3 * (target - clim), target, clim, lat), -torch.ones(2, dtype=torch.float64))


def test_acc_equals_direct_weighted_formula():
    torch.manual_seed(1)
    lat = torch.linspace(-75, 75, 6)
    clim = torch.randn(1, 6, 4)
    pred, target = torch.randn(1, 1, 6, 4), torch.randn(1, 1, 6, 4)
    w = torch.cos(torch.deg2rad(lat))[:, None]
    p, t = pred[0, 0] - clim[0], target[0, 0] - clim[0]
    p = p - (w * p).sum() / (w.sum() * 4)
    t = t - (w * t).sum() / (w.sum() * 4)
    want = (w * p * t).sum() / torch.sqrt((w * p * p).sum() * (w * t * t).sum())
    assert acc(pred, target, clim, lat).item() == pytest.approx(want.item(), rel=1e-5)


def test_bias_and_mae_equal_the_direct_weighted_means():
    import numpy as np

    g = torch.Generator().manual_seed(3)
    pred, truth = torch.randn(3, 2, 4, 8, generator=g), torch.randn(3, 2, 4, 8, generator=g)
    lat = torch.tensor([-67.5, -22.5, 22.5, 67.5])
    w = np.cos(np.deg2rad(lat.numpy()))
    w = (w / w.mean())[:, None]
    err = (pred - truth).numpy().astype(np.float64)
    assert np.allclose(bias(pred, truth, lat).numpy(), (err * w).mean(axis=(2, 3)).mean(axis=0))
    assert np.allclose(mae(pred, truth, lat).numpy(), (np.abs(err) * w).mean(axis=(2, 3)).mean(axis=0))
    # a forecast 2 units too warm everywhere has bias 2 and MAE 2; one half +2, half -2 has bias 0
    assert torch.allclose(bias(truth + 2, truth, lat), torch.full((2,), 2.0, dtype=torch.float64))
    split = truth.clone()
    split[..., :4] += 2
    split[..., 4:] -= 2
    assert torch.allclose(bias(split, truth, lat), torch.zeros(2, dtype=torch.float64), atol=1e-6)  # float32 inputs
    assert torch.allclose(mae(split, truth, lat), torch.full((2,), 2.0, dtype=torch.float64))


def test_crps_of_two_members_by_hand_fair_and_empirical():
    a = torch.tensor([1.0, 4.0]).view(1, 1, 1, 1, 2)
    b = torch.tensor([3.0, 0.0]).view(1, 1, 1, 1, 2)
    y = torch.tensor([2.0, 1.0]).view(1, 1, 1, 2)
    members, lat = torch.cat([a, b]), torch.tensor([0.0])
    # point 1: |a-y| = 1, |b-y| = 1, |a-b| = 2; point 2: |a-y| = 3, |b-y| = 1, |a-b| = 4
    fair = [(1 + 1) / 2 - 2 / 2, (3 + 1) / 2 - 4 / 2]  # E|X-y| - |a-b| / 2
    empirical = [(1 + 1) / 2 - 2 / 4, (3 + 1) / 2 - 4 / 4]  # E|X-y| - (2 |a-b| / 4) / 2
    assert crps(members, y, lat).item() == pytest.approx(sum(fair) / 2)
    assert crps(members, y, lat, fair=False).item() == pytest.approx(sum(empirical) / 2)


def test_crps_equals_the_pairwise_definition_and_is_the_mae_for_identical_members():
    import numpy as np

    g = torch.Generator().manual_seed(5)
    members, truth = torch.randn(5, 2, 3, 4, 6, generator=g), torch.randn(2, 3, 4, 6, generator=g)
    lat = torch.tensor([-60.0, -20.0, 20.0, 60.0])
    x, y = members.double().numpy(), truth.double().numpy()
    skill = np.abs(x - y[None]).mean(axis=0)
    pairs = np.abs(x[:, None] - x[None]).sum(axis=(0, 1))
    w = np.cos(np.deg2rad(lat.numpy()))[:, None]
    w = w / w.mean()
    for fair, n_pairs in ((True, 5 * 4), (False, 5 * 5)):
        want = ((skill - pairs / n_pairs / 2) * w).mean(axis=(-2, -1)).mean(axis=0)
        assert np.allclose(crps(members, truth, lat, fair=fair).numpy(), want)
    same = truth[None].expand(3, -1, -1, -1, -1) + 1.5  # no spread: the CRPS is the absolute error
    assert torch.allclose(crps(same, truth, lat), mae(same[0], truth, lat))
    with pytest.raises(ValueError, match="at least 2 members"):
        crps(members[:1], truth, lat)
