# SPDX-License-Identifier: Apache-2.0
"""WeatherBench 2's probabilistic scores and wind scores in the scorecard's Scorer: each against a
hand computation on tiny arrays and against a direct numpy form of WB2's definition, the thresholds
from the training years, the settings, and an evaluated ensemble run."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from test_recipes import config, store  # noqa: F401 -- the store fixture

from physicsnemo_climax.config import load_config, load_run_config
from physicsnemo_climax.errors import ConfigError
from physicsnemo_climax.forecasting import evaluate
from physicsnemo_climax.forecasting.evaluation import make_scorer, with_winds
from physicsnemo_climax.forecasting.probabilistic import (
    add_speeds,
    probabilistic_metrics,
    wind_pairs,
    wind_vector_metric,
    with_speeds,
)
from physicsnemo_climax.forecasting.score_thresholds import ScoreThresholds, check_fixed
from physicsnemo_climax.forecasting.scoring import ENSEMBLE_METRICS, METRICS, Scorer, Verification
from physicsnemo_climax.forecasting.settings import EvalSettings
from physicsnemo_climax.tasks import train

W = torch.tensor([[0.1, 0.2], [0.3, 0.4]], dtype=torch.float64)  # a region's weights, summing to 1


def verification(truth, thresholds=None):
    return Verification(
        truth=truth,
        climatology=torch.zeros_like(truth[:1]),
        initial=None,
        lat=torch.tensor([-45.0, 45.0]),
        thresholds=thresholds,
    )


def score(members, truth, edges=None, variables=("x",), **asked):
    """The model rows of a Scorer with only the asked ensemble scores, one region ``r`` of weights ``W``."""
    scorer = Scorer(
        list(variables),
        {"r": W},
        metrics={},
        ensemble_metrics=probabilistic_metrics(**asked),
        baselines={},
        dtype=torch.float64,
    )
    for b in range(truth.shape[0]):  # one sample at a time: the sums over samples are exercised
        scorer.add(6.0, members[:, b : b + 1], verification(truth[b : b + 1], _take(edges, b)))
    return scorer.table().set_index("variable")


def _take(thresholds, b):
    if thresholds is None:
        return None
    return {n: t if t.shape[0] == 1 else t[b : b + 1] for n, t in thresholds.items()}


def area_mean(x):
    """WB2's weighted spatial mean with the weights ``W`` (``[..., 2, 2]`` -> ``[...]``)."""
    w = W.numpy()
    return (x * w).sum(axis=(-2, -1)) / w.sum()


def test_energy_score_by_hand_two_members_on_a_2x2_grid():
    truth = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    members = torch.stack([torch.ones_like(truth), 3 * torch.ones_like(truth)])
    # ||X1 - y|| = 1, ||X2 - y|| = 3, ||X1 - X2|| = 2: (1 + 3) / 2 - 2 / 2
    assert score(members, truth, energy=True).loc["x", "energy_score"] == pytest.approx(1.0)
    # a field, not a point: ||.|| is the weighted root mean square over the region
    members = torch.zeros(2, 1, 1, 2, 2, dtype=torch.float64)
    members[0, 0, 0, 1, 1] = 2.0  # sqrt(0.4 * 4)
    assert score(members, truth, energy=True).loc["x", "energy_score"] == pytest.approx(
        np.sqrt(1.6) / 2 - np.sqrt(1.6) / 2
    )


def wb2_energy_score(members, truth):
    """WB2's EnergyScore: per time, the mean over members of the area L2 norm of X - y, minus half the mean
    over adjacent member pairs of the norm of X_n - X_{n+1}; then the time mean."""
    skill = np.sqrt(area_mean((members - truth) ** 2)).mean(axis=0)
    spread = np.sqrt(area_mean((members[:-1] - members[1:]) ** 2)).mean(axis=0)
    return (skill - 0.5 * spread).mean(axis=0)  # [V]


def test_energy_score_is_wb2s_on_random_members():
    rng = np.random.default_rng(0)
    members, truth = rng.normal(size=(4, 3, 2, 2, 2)), rng.normal(size=(3, 2, 2, 2))
    table = score(torch.as_tensor(members), torch.as_tensor(truth), variables=("a", "b"), energy=True)
    np.testing.assert_allclose(table.loc[["a", "b"], "energy_score"], wb2_energy_score(members, truth), rtol=1e-12)


def test_debiased_mse_by_hand_and_as_wb2s():
    truth = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    members = torch.stack([torch.ones_like(truth), 3 * torch.ones_like(truth)])
    # (mean - y)^2 = 4, the members' variance (ddof=1) is 2, over M = 2
    assert score(members, truth, debiased=True).loc["x", "debiased_mse"] == pytest.approx(3.0)
    rng = np.random.default_rng(1)
    m, y = rng.normal(size=(3, 4, 1, 2, 2)), rng.normal(size=(4, 1, 2, 2))
    wb2 = area_mean((m.mean(axis=0) - y) ** 2 - m.var(axis=0, ddof=1) / 3).mean()
    table = score(torch.as_tensor(m), torch.as_tensor(y), debiased=True)
    assert table.loc["x", "debiased_mse"] == pytest.approx(wb2, rel=1e-12)


def test_brier_score_of_a_fixed_threshold_by_hand_and_nan_for_other_variables():
    truth = torch.tensor([[[[0.0, 2.5], [0.0, 2.5]], [[0.0, 0.0], [0.0, 0.0]]]], dtype=torch.float64)
    members = torch.stack([torch.ones_like(truth), 3 * torch.ones_like(truth)])
    # one member of two above 2 everywhere: (0.5 - 0)^2 and (0.5 - 1)^2 are both 1/4
    fixed = ScoreThresholds(["t", "u"], {"t": [2.0]}).at(None)
    table = score(members, truth, fixed, variables=("t", "u"), thresholds=["2"])
    assert table.loc["t", "brier>2"] == pytest.approx(0.25) and np.isnan(table.loc["u", "brier>2"])


def wb2_brier(members, truth, threshold):
    """WB2's EnsembleBrierScore: (mean of 1{X > T} - 1{y > T})^2, area mean, time mean."""
    return area_mean(((members > threshold).mean(axis=0) - (truth > threshold)) ** 2).mean(axis=0)


def wb2_rps(members, truth, edges):
    """WB2's EnsembleRPS: the sum over thresholds of (mean of 1{X < t} - 1{y < t})^2, area and time means."""
    parts = [((members < t).mean(axis=0) - (truth < t)) ** 2 for t in edges]
    return area_mean(sum(parts)).mean(axis=0)


def test_rps_matches_wb2s_worked_example():
    # WB2's docstring: terciles as edges, truth at the 0.5 quantile, members at 0.1, 0.5, 0.6, 0.8:
    # the observed CDF is [0, 1], the forecast's [0.25, 0.75]
    truth = torch.full((1, 1, 2, 2), 0.5, dtype=torch.float64)
    members = torch.stack([torch.full_like(truth, q) for q in (0.1, 0.5, 0.6, 0.8)])
    edges = {"q0.33": torch.full_like(truth, 0.33), "q0.66": torch.full_like(truth, 0.66)}
    table = score(members, truth, edges, quantiles=[0.33, 0.66])
    assert table.loc["x", "rps"] == pytest.approx(0.25**2 + 0.25**2)
    # climatology says P(X < t_k) = q_k: 0.33^2 + 0.34^2; the skill is one minus the ratio
    assert table.loc["x", "rpss"] == pytest.approx(1 - 0.125 / (0.33**2 + 0.34**2))
    # the quantile 0.33 is exceeded by 3 members of 4 and by the truth: (3/4 - 1)^2; climatology 0.67
    assert table.loc["x", "brier>q0.33"] == pytest.approx(0.0625)
    assert table.loc["x", "bss>q0.33"] == pytest.approx(1 - 0.0625 / 0.33**2)


def test_brier_rps_and_skills_are_wb2s_on_random_members_and_per_sample_edges():
    rng = np.random.default_rng(2)
    m, y = rng.normal(size=(5, 4, 1, 2, 2)), rng.normal(size=(4, 1, 2, 2))
    edges = np.sort(rng.normal(size=(2, 4, 1, 2, 2)), axis=0)  # per sample and point, as by day of year
    names = {"q0.2": torch.as_tensor(edges[0]), "q0.7": torch.as_tensor(edges[1])}
    table = score(torch.as_tensor(m), torch.as_tensor(y), names, quantiles=[0.2, 0.7])
    assert table.loc["x", "rps"] == pytest.approx(wb2_rps(m, y, edges)[0], rel=1e-12)
    assert table.loc["x", "brier>q0.7"] == pytest.approx(wb2_brier(m, y, edges[1])[0], rel=1e-12)
    clim_bs = area_mean((0.3 - (y > edges[1])) ** 2).mean(axis=0)[0]
    assert table.loc["x", "bss>q0.7"] == pytest.approx(1 - wb2_brier(m, y, edges[1])[0] / clim_bs, rel=1e-12)
    clim_rps = area_mean((0.2 - (y < edges[0])) ** 2 + (0.7 - (y < edges[1])) ** 2).mean(axis=0)[0]
    assert table.loc["x", "rpss"] == pytest.approx(1 - wb2_rps(m, y, edges)[0] / clim_rps, rel=1e-12)


def test_wind_speed_rows_and_wind_vector_rmse_by_hand_for_every_method():
    names = ["10m_u_component_of_wind", "10m_v_component_of_wind", "u_component_of_wind_850"]
    names += ["v_component_of_wind_850", "u_component_of_wind_500"]  # 500 hPa lacks v: no pair
    pairs = wind_pairs(names)
    assert pairs == {"10m_wind_speed": tuple(names[:2]), "wind_speed_850": tuple(names[2:4])}
    truth = torch.zeros(1, 5, 2, 2, dtype=torch.float64)
    truth[:, 0], truth[:, 1] = 3.0, 4.0  # 10 m speed 5
    forecast = truth.clone()
    forecast[:, 0] = 0.0  # the u error is 3, the v error 0: vector RMSE 3, speed 4 against 5
    every = [*names, *pairs]
    scorer = Scorer(
        every,
        {"r": W},
        metrics={**METRICS, "wind_vector_rmse": wind_vector_metric(every, pairs)},
        dtype=torch.float64,
    )
    v = with_speeds(verification(truth), names, pairs)
    scorer.add(6.0, add_speeds(forecast, names, pairs), v)
    table = scorer.table().set_index(["variable", "method"])
    assert table.loc[("10m_wind_speed", "model"), "rmse"] == pytest.approx(1.0)
    assert table.loc[("10m_wind_speed", "model"), "wind_vector_rmse"] == pytest.approx(3.0)
    assert table.loc[("10m_wind_speed", "climatology"), "wind_vector_rmse"] == pytest.approx(5.0)
    assert np.isnan(table.loc[("10m_u_component_of_wind", "model"), "wind_vector_rmse"])
    # members: the speed of each member, then their mean, not the speed of the mean wind
    members = torch.stack([forecast, -forecast])
    assert add_speeds(members, names, pairs)[:, 0, 5].mean() == pytest.approx(4.0)


def test_no_option_no_new_column():
    truth = torch.zeros(2, 1, 2, 2)
    members = torch.stack([truth, truth + 1])
    scorer = Scorer(["x"], {"r": W.float()}, ensemble_metrics={**ENSEMBLE_METRICS, **probabilistic_metrics()})
    scorer.add(6.0, members, verification(truth))
    assert "energy_score" not in scorer.table() and "rps" not in scorer.table()


def test_training_quantiles_pool_days_of_year_and_the_hour():
    stamps = pd.date_range("2000-01-01", "2000-12-31 18:00", freq="6h").values
    fields = np.arange(len(stamps), dtype=np.float32).reshape(-1, 1, 1, 1)  # [N, V, h, w]
    days = (stamps.astype("datetime64[D]") - stamps.astype("datetime64[Y]")).astype(int) + 1
    hours = (stamps.astype("datetime64[h]") - stamps.astype("datetime64[D]")).astype(int)
    q = ScoreThresholds(["x"], {}, (0.5,), fields, days, hours, window=5)
    edges = q.at(np.array(["2001-06-10T12:00"], "datetime64[ns]"))["q0.5"]
    # day 161 of 2001 is day 161: days 159..163 of 2000 at 12:00, the middle one is day 161's
    pool = fields[(np.abs(days - 161) <= 2) & (hours == 12), 0, 0, 0]
    assert edges.shape == (1, 1, 1, 1) and float(edges) == pytest.approx(np.median(pool))
    near_new_year = q.at(np.array(["2001-01-01T00:00"], "datetime64[ns]"))["q0.5"]
    assert float(near_new_year) == pytest.approx(np.median(fields[((days <= 3) | (days >= 365)) & (hours == 0)]))


def test_thresholds_and_quantiles_config_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"eval\.thresholds\.rain"):
        check_fixed({"rain": [1.0]}, ["2m_temperature"])
    with pytest.raises(ConfigError, match=r"eval\.thresholds\.2m_temperature"):
        check_fixed({"2m_temperature": ["warm"]}, ["2m_temperature"])
    assert check_fixed({"2m_temperature": 273.15}, ["2m_temperature"]) == {"2m_temperature": [273.15]}
    for bad in ("[0.9,0.1]", "[0,0.5]", "[a]"):
        with pytest.raises(ConfigError, match=r"eval\.quantiles"):
            EvalSettings.from_config(load_config([f"eval.quantiles={bad}", "eval.out_dir=/tmp/x"]).eval)


@pytest.fixture(scope="module")
def run_dir(store, tmp_path_factory):  # noqa: F811
    return train(config(store, tmp_path_factory.mktemp("prob") / "run", "task=finetune_global", "task.lead_hours=12"))


def test_evaluated_ensemble_gets_the_asked_scores_and_keeps_the_others(run_dir, store, tmp_path):  # noqa: F811
    common = ["eval.leads=[12]", "eval.max_samples=4", "eval.members=3", "eval.regions=[global]"]
    plain = evaluate(load_run_config(run_dir, [*common, f"eval.out_dir={tmp_path / 'plain'}"]))
    asked = [
        "eval.energy_score=true",
        "eval.debiased_mse=true",
        "eval.thresholds={2m_temperature:[280.0]}",
        "eval.quantiles=[0.1,0.9]",
        "eval.wind=true",  # the store has no wind: no wind rows
    ]
    table = evaluate(load_run_config(run_dir, [*common, *asked, f"eval.out_dir={tmp_path / 'asked'}"]))
    pd.testing.assert_frame_equal(table[plain.columns], plain)  # the existing columns, value for value
    model = table[(table.method == "model") & (table.region == "global")].set_index("variable")
    for column in ("energy_score", "debiased_mse", "brier>q0.1", "bss>q0.9", "rps", "rpss"):
        assert model[column].notna().all(), column
    assert model["brier>280"].notna().sum() == 1 and 0 <= model.loc["2m_temperature", "brier>280"] <= 1
    assert ((model.rps >= 0) & (model.rps <= 2) & (model.rpss <= 1)).all()
    assert table[table.method != "model"].energy_score.isna().all()  # deterministic baselines: no ensemble
    assert "wind_vector_rmse" not in table and set(table.variable) == set(plain.variable)
    assert "ENERGY_SCORE" in (tmp_path / "asked" / "summary.md").read_text()


def test_evaluation_scorer_derives_speeds_for_members_and_thresholds_them():
    names = ["10m_u_component_of_wind", "10m_v_component_of_wind"]
    pairs = wind_pairs(names)
    thresholds = ScoreThresholds([*names, *pairs], check_fixed({"10m_wind_speed": [4.5]}, [*names, *pairs]))
    refs = SimpleNamespace(winds=pairs, thresholds=thresholds, regions={"r": W.float()})
    e = SimpleNamespace(energy_score=False, debiased_mse=False, quantiles=())
    truth = torch.zeros(1, 2, 2, 2)
    truth[:, 0], truth[:, 1] = 3.0, 4.0  # speed 5, above 4.5
    members = torch.stack([truth, truth * 0.5])  # speeds 5 and 2.5: P(speed > 4.5) = 1/2
    v = verification(truth, thresholds.at(None))
    scorer = make_scorer(e, names, refs)
    scorer.add(6.0, *with_winds(refs, names, members, v))
    model = scorer.table().query("method == 'model'").set_index("variable")
    assert model.loc["10m_wind_speed", "brier>4.5"] == pytest.approx(0.25)
    assert model.loc["10m_wind_speed", "rmse"] == pytest.approx(5 - 3.75)  # the mean of the members' speeds
    assert model.loc["10m_wind_speed", "wind_vector_rmse"] == pytest.approx(2.5 * 0.5)
