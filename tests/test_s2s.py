# SPDX-License-Identifier: Apache-2.0
"""Sub-seasonal prediction (``task=s2s``): window means, their reader, the RPS of terciles, the
scorecard against climatology and anomaly persistence, and forecasts laid out by window.

The synthetic daily climate is the demo's (``examples/climax/s2s_oscillation.py``): a seasonal
cycle, white noise and, unless ``slow=False``, an oscillation of 47 days held by two variables in
quadrature, predictable weeks ahead from the initial state alone."""

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import xarray as xr

from physicsnemo_climax.config import load_config
from physicsnemo_climax.data import ClimaXShardReader, ShardStore
from physicsnemo_climax.data.forcings import unix_seconds
from physicsnemo_climax.data.preparation import PrepareConfig, prepare
from physicsnemo_climax.data.windows import TimeWindow, parse_windows, running_window_means, window_mean
from physicsnemo_climax.engine.run_info import RunInfo
from physicsnemo_climax.errors import ConfigError, InputError
from physicsnemo_climax.forecasting import Run, forecast
from physicsnemo_climax.forecasting.inference import forecast_leads
from physicsnemo_climax.forecasting.rollout import model_steps
from physicsnemo_climax.s2s.terciles import TercileEdges, rps_maps
from physicsnemo_climax.tasks import evaluate, train


def load_example():
    """``examples/climax/s2s_oscillation.py``: the synthetic climate and the demo's settings."""
    path = Path(__file__).parents[1] / "examples" / "climax" / "s2s_oscillation.py"
    spec = importlib.util.spec_from_file_location("s2s_oscillation", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXAMPLE = load_example()
VARS = EXAMPLE.VARIABLES


def daily_store(tmp_path_factory, slow: bool) -> Path:
    raw = tmp_path_factory.mktemp("raw")
    files = EXAMPLE.oscillation_files(raw, slow=slow)
    config = PrepareConfig(files, VARS, EXAMPLE.SPLITS, grid=(8, 16), hours_per_step=24, shards_per_year=1)
    return prepare(config, tmp_path_factory.mktemp("store") / "store")


@pytest.fixture(scope="module")
def slow_store(tmp_path_factory):
    return daily_store(tmp_path_factory, slow=True)


@pytest.fixture(scope="module")
def noise_store(tmp_path_factory):
    return daily_store(tmp_path_factory, slow=False)


def s2s_config(store, run_dir, *overrides):
    """The demo's run (``EXAMPLE.TRAINING``) on ``store`` into ``run_dir``."""
    return load_config(
        [*EXAMPLE.TRAINING, f"data.root={store}", f"run_dir={run_dir}", "train.progress=false", *overrides]
    )


# ---------------------------------------------------------------- windows and their means
def test_windows_parse_durations_and_hours_and_refuse_bad_ones():
    assert parse_windows([["14D", "28D"], [672, "42D"]]) == (TimeWindow(336, 672), TimeWindow(672, 1008))
    assert TimeWindow(336, 672).label == "d14-28" and TimeWindow(6, 18).label == "h6-18"
    assert TimeWindow(336, 672).steps(6) == (56, 112)
    for bad, words in (
        ([["14D"]], "not a window"),
        ([["28D", "14D"]], "must start after"),
        ([[0, "14D"]], "must start after"),
        ([["14D", "28D"], ["14D", "42D"]], "same hour"),
        ([["14 fortnights", "28D"]], "not a duration"),
        ([], "at least one"),
    ):
        with pytest.raises(ConfigError, match=words):
            parse_windows(bad)
    with pytest.raises(ConfigError, match="not a multiple of the store's step of 24 h"):
        TimeWindow(30, 60).steps(24)


def test_running_window_means_equal_the_naive_mean():
    x = np.random.default_rng(0).normal(size=(40, 1, 3, 4)).astype(np.float32)
    means = running_window_means(x, 5, 12)
    assert means.shape == (40 - 12 + 1, 1, 3, 4)
    for t in (0, 7, 28):
        naive = x[t + 5 : t + 12].astype(np.float64).mean(axis=0)
        np.testing.assert_allclose(means[t], naive, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(window_mean(x, t, 5, 12), naive, rtol=1e-6, atol=1e-6)
    assert running_window_means(x, 5, 60).shape == (0, 1, 3, 4)


def test_reader_targets_are_window_means_told_by_their_start(slow_store):
    windows = parse_windows([["14D", "28D"], ["28D", "42D"]])
    reader = ClimaXShardReader(slow_store, "test", out_variables=VARS, windows=windows)
    shard = reader.shards[0]
    assert len(reader) == shard.steps - 42 + 1  # the longest window's last day is 41 days on
    for index in (0, 100, len(reader) - 1):
        sample = reader.read_raw(index)
        _, t = reader.locate(index)
        lead = float(sample["lead_time"])
        assert lead in (336.0, 672.0)
        first = int(lead // 24)
        naive = np.stack([shard.array(v)[t + first : t + first + 14, 0].astype(np.float64).mean(0) for v in VARS])
        np.testing.assert_allclose(sample["y"], naive, rtol=1e-6)
        np.testing.assert_array_equal(sample["x"], np.stack([shard.array(v)[t, 0] for v in VARS]))


def test_run_info_keeps_windows_and_runs_without_them_unchanged():
    info = RunInfo(task="s2s", windows=((336.0, 672.0), (672.0, 1008.0)), hours_per_step=24.0)
    data = json.loads(json.dumps(info.to_json()))
    assert data["windows"] == [[336.0, 672.0], [672.0, 1008.0]]
    assert RunInfo.from_json(data) == info
    assert "windows" not in RunInfo(task="finetune_global").to_json()
    assert forecast_leads(SimpleNamespace(info=info), None) == [336.0, 672.0]  # every window
    with pytest.raises(InputError, match="--lead"):  # a run of states has no default lead
        forecast_leads(SimpleNamespace(info=RunInfo(task="finetune_global")), None)
    assert model_steps(info, 672.0) == [672.0]
    with pytest.raises(InputError, match="windows starting at"):
        model_steps(info, 1008.0)


# ---------------------------------------------------------------- the ranked probability score
def test_rps_of_terciles_by_hand():
    members = torch.tensor([0.0, 1.0, 2.0, 3.0]).view(4, 1, 1, 1, 1)
    lower, upper = torch.ones(1, 1, 1, 1), torch.full((1, 1, 1, 1), 2.0)
    # members: below, below (at the edge), near, above -> cumulative 0.5, 0.75; the truth is above
    rps, clim = rps_maps(members, torch.full((1, 1, 1, 1), 2.5), lower, upper)
    assert rps.item() == pytest.approx(0.5**2 + 0.75**2)
    assert clim.item() == pytest.approx((1 / 3) ** 2 + (2 / 3) ** 2)
    # all members in the observed (middle) category: a perfect forecast
    rps, clim = rps_maps(torch.full((3, 1, 1, 1, 1), 1.5), torch.full((1, 1, 1, 1), 1.2), lower, upper)
    assert rps.item() == 0.0 and clim.item() == pytest.approx((1 / 3) ** 2 + (1 / 3) ** 2)


def test_tercile_edges_pool_days_of_year_around_each_day():
    rng = np.random.default_rng(1)
    means = rng.normal(size=(730, 1, 2, 2)).astype(np.float32)
    doy = np.tile(np.arange(1, 366), 2)
    edges = TercileEdges(means, doy, days=11)
    lower, upper = edges.at(np.array([3, 200]))
    for b, day in enumerate((3, 200)):
        gap = np.abs(doy - day)
        pool = means[np.minimum(gap, 366 - gap) <= 5]
        # 11 days a year round day 200; round day 3 they wrap to 364..366, and these years lack day 366
        assert len(pool) == (20 if day == 3 else 22)
        np.testing.assert_allclose(lower[b].numpy(), np.quantile(pool, 1 / 3, axis=0), rtol=1e-6)
        np.testing.assert_allclose(upper[b].numpy(), np.quantile(pool, 2 / 3, axis=0), rtol=1e-6)
    pooled = TercileEdges(means, None, None).at(None)[0]
    np.testing.assert_allclose(pooled[0].numpy(), np.quantile(means, 1 / 3, axis=0), rtol=1e-6)


# ---------------------------------------------------------------- the task, end to end
def scores(table, variable, window, method, metric="rmse"):
    row = table[(table.variable == variable) & (table.window == window) & (table.method == method)]
    row = row[row.region == "global"]
    assert len(row) == 1, (variable, window, method)
    return float(row[metric].iloc[0])


@pytest.fixture(scope="module")
def slow_run(slow_store, tmp_path_factory):
    cfg = s2s_config(slow_store, tmp_path_factory.mktemp("runs") / "s2s")
    return cfg, train(cfg)


@pytest.mark.slow
def test_s2s_beats_climatology_and_anomaly_persistence_where_the_slow_part_is_predictable(slow_run):
    cfg, run_dir = slow_run
    info = json.loads((run_dir / "run.json").read_text())
    assert info["windows"] == [[336.0, 672.0], [672.0, 1008.0]]
    table = evaluate(cfg)
    for variable in VARS:
        for window in ("d14-28", "d28-42"):
            model = scores(table, variable, window, "model")
            assert model < 0.7 * scores(table, variable, window, "climatology"), (variable, window)
            assert model < 0.7 * scores(table, variable, window, "anomaly_persistence"), (variable, window)
            assert scores(table, variable, window, "model", "acc") > 0.5
    summary = (Path(cfg.eval.out_dir) / "summary.md").read_text()
    assert "anomaly_persistence" in summary and "d28-42" in summary


@pytest.mark.slow
def test_s2s_ensemble_scores_rpss_of_terciles(slow_run):
    cfg, _ = slow_run
    ensemble = s2s_config(
        cfg.data.root, cfg.run_dir, "eval.members=4", "eval.perturbation_scale=0.3", f"eval.out_dir={cfg.run_dir}/ens"
    )
    table = evaluate(ensemble)
    for window in ("d14-28", "d28-42"):
        rpss = scores(table, "2m_temperature", window, "model", "rpss")
        assert 0.2 < rpss <= 1.0
        row = table[
            (table.variable == "2m_temperature")
            & (table.window == window)
            & (table.method == "model")
            & (table.region == "global")
        ].iloc[0]
        assert rpss == pytest.approx(1 - row.rps / row.rps_climatology)
    assert json.loads((Path(cfg.run_dir) / "ens" / "scorecard.json").read_text())["terciles"].startswith("per day")


@pytest.mark.slow
def test_s2s_forecast_is_laid_out_by_window(slow_run, slow_store, tmp_path):
    _, run_dir = slow_run
    store = ShardStore(slow_store)
    shard = store.shards("test")[0]
    times = store.shard_times("test")[0]
    ic = xr.Dataset(
        {v: (("time", "lat", "lon"), shard.array(v)[[10, 11], 0], {"units": store.manifest["units"][v]}) for v in VARS},
        coords={"time": times[[10, 11]], "lat": store.lat, "lon": store.lon},
    )
    run = Run.load(run_dir, "cpu")
    out = forecast(run, ic, None)
    assert out["2m_temperature"].dims == ("time", "window", "lat", "lon")
    assert list(out.window.values) == ["d14-28", "d28-42"]
    assert out.window_end.values[1] == np.timedelta64(42, "D")
    assert out.valid_time_start.values[0, 0] == times[10] + np.timedelta64(14, "D")
    # the window from day 28 straight from the model: the states normalised by the run's statistics,
    # the year's progress at the window's start appended, lead input 672 h
    mean, std = run.field_stats(VARS)
    x = (torch.as_tensor(np.stack([ic[v].values for v in VARS], axis=1)) - mean) / std
    valid = unix_seconds(ic.time.values) + 3600.0 * 672
    x = torch.cat([x, torch.as_tensor(run.forcings.normalised(valid))], dim=1)
    with torch.no_grad():
        direct = run.model(x, torch.full((2,), 672.0), list(run.info.variables), VARS) * std + mean
    np.testing.assert_allclose(out["2m_temperature"].isel(window=1).values, direct[:, 0].numpy(), rtol=1e-6)
    with pytest.raises(InputError, match="windows starting at"):
        forecast(run, ic, ["7D"])


@pytest.mark.slow
def test_without_a_slow_part_the_scorecard_shows_no_skill(noise_store, tmp_path):
    cfg = s2s_config(
        noise_store, tmp_path / "noise", "train.steps=150", "eval.members=4", "eval.perturbation_scale=0.3"
    )
    train(cfg)
    table = evaluate(cfg)
    for variable in VARS:
        for window in ("d14-28", "d28-42"):
            model = scores(table, variable, window, "model")
            assert np.isfinite(model)
            assert model > 0.9 * scores(table, variable, window, "climatology")  # nothing to predict
            assert scores(table, variable, window, "model", "rpss") < 0.1


def test_s2s_refuses_what_a_window_cannot_be(slow_store, tmp_path):
    with pytest.raises(ConfigError, match="model.residual"):
        train(s2s_config(slow_store, tmp_path / "r", "model.residual=true", "train.steps=1"))
    with pytest.raises(ConfigError, match="task.rollout_steps"):
        train(s2s_config(slow_store, tmp_path / "o", "task.rollout_steps=2", "train.steps=1"))
    with pytest.raises(ConfigError, match="task.windows"):
        train(s2s_config(slow_store, tmp_path / "w", "task.windows=[[14D,28D],[14D,42D]]", "train.steps=1"))


@pytest.mark.slow
def test_an_earth2studio_prognostic_refuses_window_means(slow_run):
    pytest.importorskip("earth2studio")
    from physicsnemo_climax.earth2studio import ClimaXPrognostic

    with pytest.raises(ConfigError, match="time means over windows"):
        ClimaXPrognostic.from_run(slow_run[1], device="cpu")
