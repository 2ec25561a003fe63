# SPDX-License-Identifier: Apache-2.0
"""The scorer against direct numpy computations written here: WeatherBench 2's
aggregation (RMSE as the root of the time-mean MSE, uncentred ACC per sample),
regions, ensembles (CRPS of 2 members by hand, spread/skill, rank histogram),
SEEPS by hand; baselines that do not apply; a metric plugged in."""

import numpy as np
import pytest
import torch

from physicsnemo_climax.errors import ConfigError
from physicsnemo_climax.forecasting.diagnostics import zonal_power
from physicsnemo_climax.forecasting.score_regions import region_specs, region_weights
from physicsnemo_climax.forecasting.scoring import METRICS, Metric, Scorer, Verification
from physicsnemo_climax.forecasting.seeps import seeps_map

LAT = torch.tensor([-45.0, 0.0, 45.0], dtype=torch.float64)


def areas(lat):
    """Cell areas by hand: edges at -90, -22.5, 22.5, 90 for LAT."""
    edges = {(-45.0,): (-90, -22.5), (0.0,): (-22.5, 22.5), (45.0,): (22.5, 90)}
    return np.array([np.sin(np.deg2rad(edges[(v,)][1])) - np.sin(np.deg2rad(edges[(v,)][0])) for v in lat])


W = areas(LAT.numpy())[:, None] * np.ones(4)
W = W / W.sum()


def batch(seed, n, with_initial=True):
    g = torch.Generator().manual_seed(seed)
    truth = torch.randn(n, 2, 3, 4, generator=g, dtype=torch.float64)
    forecast = truth + 0.5 * torch.randn(n, 2, 3, 4, generator=g, dtype=torch.float64)
    initial = truth + torch.randn(n, 2, 3, 4, generator=g, dtype=torch.float64) if with_initial else None
    clim = 0.3 * torch.randn(1, 2, 3, 4, generator=g, dtype=torch.float64)
    return forecast, Verification(truth, clim, initial, LAT)


def test_rmse_is_the_root_of_the_time_mean_mse_and_acc_the_mean_of_per_sample_correlations():
    scorer, single = Scorer(["a", "b"], dtype=torch.float64), Scorer(["a", "b"])  # the default: float32
    parts = [batch(0, 3), batch(1, 5)]
    for forecast, verification in parts:
        scorer.add(24.0, forecast, verification)
        single.add(24.0, forecast, verification)
    table = scorer.table().set_index(["method", "variable"])
    approx = single.table().set_index(["method", "variable"])
    for score in ("rmse", "mae", "acc"):
        assert np.allclose(approx[score], table[score], rtol=1e-5, equal_nan=True)
    assert set(table.region) == {"global"} and set(table.samples) == {8}
    for method, pick in (
        ("model", lambda f, v: f),
        ("persistence", lambda f, v: v.initial),
        ("climatology", lambda f, v: v.climatology.expand_as(v.truth)),
    ):
        f = np.concatenate([pick(f, v).numpy() for f, v in parts])
        t = np.concatenate([v.truth.numpy() for _, v in parts])
        c = np.concatenate([v.climatology.expand_as(v.truth).numpy() for _, v in parts])
        for j, var in enumerate("ab"):
            mse = ((f[:, j] - t[:, j]) ** 2 * W).sum(axis=(1, 2))
            assert table.loc[(method, var), "rmse"] == pytest.approx(np.sqrt(mse.mean()), rel=1e-9)
            assert table.loc[(method, var), "bias"] == pytest.approx(((f[:, j] - t[:, j]) * W).sum(axis=(1, 2)).mean())
            assert table.loc[(method, var), "mae"] == pytest.approx(
                (np.abs(f[:, j] - t[:, j]) * W).sum(axis=(1, 2)).mean()
            )
            if method != "climatology":
                fa, oa = f[:, j] - c[:, j], t[:, j] - c[:, j]
                per = (fa * oa * W).sum((1, 2)) / np.sqrt((fa**2 * W).sum((1, 2)) * (oa**2 * W).sum((1, 2)))
                assert table.loc[(method, var), "acc"] == pytest.approx(per.mean(), rel=1e-9)
    assert np.isnan(table.loc[("climatology", "a"), "acc"])  # no anomaly
    assert "seeps" not in table and "crps" not in table  # no precipitation, no ensemble


def test_regions_weight_by_cell_area_inside_their_box_and_skip_what_a_regional_grid_cuts():
    lat, lon = np.array([-60.0, -10.0, 10.0, 60.0]), np.array([0.0, 90.0, 180.0, 270.0])
    land = np.array([[1.0, 0.0, 0.5, 0.0]] * 4)
    specs = region_specs(["global", "tropics", "northern-hemisphere"], {"box": [0, 90, 350, 95]}, land=True)
    assert set(specs) == {
        "global",
        "tropics",
        "northern-hemisphere",
        "box",
        "global_land",
        "global_sea",
        "tropics_land",
        "tropics_sea",
    }
    weights, skipped = region_weights(specs, lat, lon, land)
    a = areas_of(lat)
    want_tropics = np.zeros((4, 4))
    want_tropics[1:3] = a[1:3, None]
    assert np.allclose(weights["tropics"].numpy(), want_tropics / want_tropics.sum())
    box = np.zeros((4, 4))
    box[2:, :2] = a[2:, None]  # lat 10, 60; lon 0 and 90 (the box crosses 0: 350..95)
    assert np.allclose(weights["box"].numpy(), box / box.sum())
    sea = a[:, None] * (1 - land)
    assert np.allclose(weights["global_sea"].numpy(), sea / sea.sum()) and not skipped
    # a regional grid (rows 2..3) scores the whole of what it holds, skips what reaches beyond it
    weights, skipped = region_weights(specs, lat, lon, land, rows=np.array([2, 3]), cols=np.arange(4))
    assert "tropics" in skipped and {"northern-hemisphere", "box"} <= set(weights)  # lat 60 is all it has
    assert np.allclose(weights["run_region"].numpy(), (a[2:, None] * np.ones(4)) / (a[2:].sum() * 4))
    with pytest.raises(ConfigError, match="europa"):
        region_specs(["europa"])


def areas_of(lat):
    edges = np.r_[-90.0, (lat[1:] + lat[:-1]) / 2, 90.0]
    return np.diff(np.sin(np.deg2rad(edges)))


def test_an_ensemble_scores_its_mean_its_crps_by_hand_spread_skill_and_rank_histogram():
    truth = torch.tensor([[[[0.0, 1.0, 2.0, 3.0]] * 3]], dtype=torch.float64)  # [1, 1, 3, 4]
    members = torch.stack([truth + 1.0, truth - 3.0])  # [2, 1, 1, 3, 4]
    scorer = Scorer(["a"])
    scorer.add(6.0, members, Verification(truth, torch.zeros(1, 1, 3, 4, dtype=torch.float64), None, LAT))
    row = scorer.table().query("method == 'model'").iloc[0]
    # ensemble mean = truth - 1: RMSE 1, bias -1
    assert row.rmse == pytest.approx(1.0) and row.bias == pytest.approx(-1.0)
    # fair CRPS of 2 members: (|1| + |-3|) / 2 - |1 - (-3)| / 2 = 2 - 2 = 0 everywhere
    assert row.crps == pytest.approx(0.0, abs=1e-12)
    # spread: the 2-member variance (ddof 1) is (4^2) / 2 = 8; spread/skill = sqrt(8) / 1
    assert row.spread == pytest.approx(np.sqrt(8.0)) and row.spread_skill == pytest.approx(np.sqrt(8.0))
    # truth lies between the members everywhere: rank 1 of 0..2
    ranks = scorer.rank_histograms()
    assert ranks.set_index("rank").frequency.to_dict() == pytest.approx({0: 0.0, 1: 1.0, 2: 0.0})


def test_crps_of_two_members_by_hand_with_different_errors():
    truth = torch.zeros(1, 1, 3, 4, dtype=torch.float64)
    members = torch.stack([truth + 1.0, truth + 2.0])
    scorer = Scorer(["a"])
    scorer.add(6.0, members, Verification(truth, truth, None, LAT))
    # fair: (1 + 2) / 2 - |1 - 2| / 2 = 1.0
    assert scorer.table().query("method == 'model'").crps.item() == pytest.approx(1.0)


def test_seeps_by_hand():
    p1 = torch.full((1, 1, 1, 3), 0.5, dtype=torch.float64)
    dry, wet = torch.full_like(p1, 0.1), torch.full_like(p1, 1.0)
    truth = torch.tensor([[[[0.0, 0.5, 2.0]]]], dtype=torch.float64)  # dry, light, heavy
    forecast = torch.tensor([[[[0.5, 0.0, 0.0]]]], dtype=torch.float64)  # light, dry, dry
    got = seeps_map(forecast, truth, dry, wet, p1)[0, 0, 0].numpy()
    # forecast light, observed dry: 1/(1-p1)/2 = 1; forecast dry, observed light: 1/p1/2 = 1;
    # forecast dry, observed heavy: 4/(1-p1)/2 = 4
    assert np.allclose(got, [1.0, 1.0, 4.0])
    assert torch.isnan(seeps_map(forecast, truth, dry, wet, torch.full_like(p1, 0.9))).all()  # too wet


def test_zonal_power_sums_to_the_mean_square_along_the_circle():
    g = torch.Generator().manual_seed(3)
    field = torch.randn(2, 3, 8, generator=g, dtype=torch.float64)  # [B, H, W]
    power = zonal_power(field, LAT)
    a = areas(LAT.numpy())
    want = ((field.numpy() ** 2).mean(axis=-1) * a).sum(axis=-1) / a.sum()
    assert power.sum().item() == pytest.approx(want.mean(), rel=1e-9)


def test_a_baseline_that_does_not_apply_is_left_out_and_a_new_metric_plugs_in():
    maximum = Metric(lambda f, v: ((f - v.truth).abs(),), combine=lambda m: m, finish=lambda m: m * 0 + 7)
    scorer = Scorer(["a", "b"], metrics={**METRICS, "seven": maximum})
    forecast, verification = batch(2, 4, with_initial=False)
    scorer.add(6.0, forecast, verification)
    table = scorer.table()
    assert set(table.method) == {"model", "climatology"} and (table.seven == 7).all()


def test_seeps_climatology_from_the_training_split_by_hand():
    from types import SimpleNamespace

    from physicsnemo_climax.forecasting.seeps import seeps_climatology

    # 6 training times at 2 points, metres: point 0 is dry 3 times of 6, point 1 always wet
    values = np.array([[0.0, 1e-3], [5e-5, 2e-3], [0.0, 3e-3], [1e-3, 4e-3], [2e-3, 5e-3], [4e-3, 6e-3]])
    arrays = {"total_precipitation_6hr": values[:, None, None, :], "2m_temperature": values[:, None, None, :]}
    shard = SimpleNamespace(steps=6, array=lambda v: arrays[v])
    fake = SimpleNamespace(grid=(1, 2), shards=lambda split: [shard])
    ref = seeps_climatology(fake, ["2m_temperature", "total_precipitation_6hr"], {})
    dry, wet, p1 = ref.at(None, lambda t: t)
    assert torch.isnan(dry[0, 0]).all() and torch.isnan(p1[0, 0]).all()  # not precipitation
    assert np.allclose(dry[0, 1].numpy(), 1e-4)  # 0.1 mm for 6-hour accumulations
    assert np.allclose(p1[0, 1, 0].numpy(), [0.5, 0.0])
    # wet threshold: 2/3 quantile of the wet values (linear interpolation, as numpy's default)
    assert np.allclose(wet[0, 1, 0].numpy(), [np.quantile([1e-3, 2e-3, 4e-3], 2 / 3), np.quantile(values[:, 1], 2 / 3)])


def test_the_scorecard_seeps_is_the_area_mean_over_the_points_where_it_is_defined():
    truth = torch.tensor([[[[0.0, 0.5, 2.0, 0.0]] * 3]], dtype=torch.float64)  # [1, 1, 3, 4]
    forecast = torch.tensor([[[[0.5, 0.0, 0.0, 0.0]] * 3]], dtype=torch.float64)
    p1 = torch.full((1, 1, 3, 4), 0.5, dtype=torch.float64)
    p1[..., 0, :] = 0.95  # the southern row is too often dry to be scored
    refs = (torch.full_like(p1, 0.1), torch.full_like(p1, 1.0), p1)
    scorer = Scorer(["tp"])
    scorer.add(6.0, forecast, Verification(truth, truth, None, LAT, refs), baselines=False)
    per_point = np.array([1.0, 1.0, 4.0, 0.0])  # by hand, as in test_seeps_by_hand
    w = W[1:] / W[1:].sum()
    assert scorer.table().seeps.item() == pytest.approx((w * per_point).sum())


def test_bad_evaluation_inputs_are_errors_naming_them(tmp_path):
    from physicsnemo_climax.data.climatology import HourlyClimatology
    from physicsnemo_climax.data.store import StoreError
    from physicsnemo_climax.forecasting.references import ClimatologyReference

    with pytest.raises(ConfigError, match=r"eval.boxes.flat=\[10.0, 0.0, 0.0, 1.0\]"):
        region_specs(["global"], {"flat": [10, 0, 0, 1]})
    with pytest.raises(ConfigError, match="eval.climatology='monthly'"):
        ClimatologyReference(None, "test", ["a"], None, "monthly")
    fields = np.full((366, 1, 1, 2, 3), np.nan, np.float32)
    fields[:180] = 1.0  # no training year reaches the second half of the year
    clim = HourlyClimatology(fields, np.array([0]), ["a"])
    assert clim.at(np.array(["2001-03-01T00"], "datetime64[h]")).shape == (1, 1, 2, 3)
    with pytest.raises(StoreError, match="no value for 2001-09-01T00"):
        clim.at(np.array(["2001-09-01T00"], "datetime64[h]"))


def test_a_regional_grid_weights_its_rows_by_their_own_area_and_a_global_one_reaches_the_poles():
    from physicsnemo_climax.forecasting.score_regions import cell_areas

    box = np.arange(61.0, 48.9, -1.0)  # a CDS box over the UK, north to south
    want = np.sin(np.deg2rad(box + 0.5)) - np.sin(np.deg2rad(box - 0.5))  # each row's own 1-degree band
    assert np.allclose(cell_areas(box), want, rtol=1e-12)
    grid = np.linspace(-87.1875, 87.1875, 32)  # ClimaX's 5.625 degree grid: edges at the poles, as WB2
    edges = np.r_[-90.0, (grid[1:] + grid[:-1]) / 2, 90.0]
    assert np.array_equal(cell_areas(grid), np.diff(np.sin(np.deg2rad(edges))))


def test_a_regional_store_scores_its_domain_as_run_region_and_lists_only_the_regions_it_overlaps():
    from physicsnemo_climax.forecasting.score_regions import BEYOND, NO_POINT

    lat, lon = np.arange(61.0, 48.9, -1.0), np.arange(-8.0, 2.1, 1.0)  # the UK box
    weights, skipped = region_weights(region_specs(["all"], {"london": [51, 52, -1, 0.5]}), lat, lon)
    assert set(weights) == {"run_region", "london"}  # not "global": the domain is named as what it is
    assert {n for n, why in skipped.items() if why == BEYOND} == {
        "global",
        "extra-tropics",
        "northern-hemisphere",
        "europe",
        "arctic",
    }  # overlap, reach beyond
    assert {n for n, why in skipped.items() if why == NO_POINT} >= {"tropics", "ausnz", "east-asia"}
    assert np.isclose(weights["run_region"].sum().item(), 1.0)
