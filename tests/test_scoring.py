# SPDX-License-Identifier: Apache-2.0
"""The scorer: running means per method, lead and variable against a direct
numpy computation; baselines that do not apply; a metric plugged in."""

import numpy as np
import pytest
import torch

from physicsnemo_climax.forecasting.scoring import METRICS, Scorer, Verification

LAT = torch.tensor([-45.0, 0.0, 45.0], dtype=torch.float64)


def weighted_rmse(a, b):
    w = np.cos(np.deg2rad(LAT.numpy()))[:, None]
    w = w / w.mean()
    return np.sqrt(((a - b) ** 2 * w).mean(axis=(-2, -1)))  # per sample and variable


def batch(seed, n, with_initial=True):
    g = torch.Generator().manual_seed(seed)
    truth = torch.randn(n, 2, 3, 4, generator=g, dtype=torch.float64)
    forecast = truth + 0.5 * torch.randn(n, 2, 3, 4, generator=g, dtype=torch.float64)
    initial = truth + torch.randn(n, 2, 3, 4, generator=g, dtype=torch.float64) if with_initial else None
    return forecast, Verification(truth, torch.zeros(1, 2, 3, 4, dtype=torch.float64), initial, LAT)


def test_running_means_equal_a_direct_computation_over_all_samples():
    scorer = Scorer(["a", "b"])
    parts = [batch(0, 3), batch(1, 5)]
    for forecast, verification in parts:
        scorer.add(24.0, forecast, verification)
    table = scorer.table().set_index(["method", "variable"])
    for method, pick in (("model", lambda f, v: f), ("persistence", lambda f, v: v.initial),
                         ("climatology", lambda f, v: v.climatology.expand_as(v.truth))):
        per_sample = np.concatenate([weighted_rmse(pick(f, v).numpy(), v.truth.numpy()) for f, v in parts])
        for j, var in enumerate("ab"):
            assert table.loc[(method, var), "rmse"] == pytest.approx(per_sample[:, j].mean(), rel=1e-6)
    assert table.loc[("climatology", "a"), "acc"] != table.loc[("climatology", "a"), "acc"]  # NaN: no anomaly
    assert set(table.reset_index().lead_hours) == {24.0}


def test_a_baseline_that_does_not_apply_is_left_out_and_a_new_metric_plugs_in():
    def mae(forecast, v):
        return (forecast - v.truth).abs().mean(dim=(-2, -1)).mean(dim=0)

    scorer = Scorer(["a", "b"], metrics={**METRICS, "mae": mae})
    forecast, verification = batch(2, 4, with_initial=False)
    scorer.add(6.0, forecast, verification)
    table = scorer.table()
    assert set(table.method) == {"model", "climatology"}
    want = np.abs(forecast.numpy() - verification.truth.numpy()).mean(axis=(0, 2, 3))
    got = table[table.method == "model"].set_index("variable").mae
    assert np.allclose(got[["a", "b"]].to_numpy(), want)
