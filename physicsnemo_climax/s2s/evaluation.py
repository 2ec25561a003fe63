# SPDX-License-Identifier: Apache-2.0
"""Scorecard of a sub-seasonal run: each window's mean against two baselines.

From initial times spread evenly over the split (each with the longest
window ahead of it in its shard and a week behind it), the model forecasts
the mean of every window of the run (:mod:`..data.windows`). The verification
is the window mean of the store. Two baselines sit in the same table, both
built from the evaluation's climatology (``eval.climatology``, WeatherBench
2's day-of-year climatology of the training years by default):

* ``climatology``: the climatology averaged over the window's valid times;
* ``anomaly_persistence``: that, plus the anomaly of the last seven days up to
  the initial time (the mean of the states minus the mean of their climatology).

Scores per window, variable and region (:class:`..forecasting.scoring.Scorer`):
RMSE, bias, MAE and ACC against the window's climatology; with members
(``eval.members``) CRPS, spread and the RPSS of tercile categories
(:mod:`.terciles`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from ..data import ShardStore
from ..data.store import Shard
from ..data.windows import TimeWindow, window_mean
from ..engine.checks import config_error
from ..engine.plan import decide_device
from ..forecasting.core import lead_forecasts
from ..forecasting.ensembles import check_stochastic, lag_hours
from ..forecasting.evaluation import chunk_starts, initial_conditions, initial_seconds, scorecard_meta
from ..forecasting.references import References
from ..forecasting.report import evaluation_folder
from ..forecasting.run import Run, run_store
from ..forecasting.scoring import BASELINES, ENSEMBLE_METRICS, Scorer, Verification
from ..forecasting.settings import EvalSettings
from ..models import GridRegion
from .report import window_table, write_window_report
from .terciles import RPS_METRICS, day_of_year, training_terciles

#: The days before the initial time whose mean anomaly the persistence baseline carries on.
PERSISTED_DAYS = 7

#: The baselines of a window's mean (what :class:`WindowVerification` holds for them).
WINDOW_BASELINES = {
    "climatology": BASELINES["climatology"],
    "anomaly_persistence": BASELINES["persistence"],  # ``initial`` holds it, see window_verification
}


@dataclass
class WindowVerification(Verification):
    """A :class:`..forecasting.scoring.Verification` of window means: ``climatology`` is the window's,
    ``initial`` the anomaly-persistence forecast, and ``terciles`` the ``(lower, upper)`` category
    edges ``[B or 1, V, h, w]`` (``None``: no RPS)."""

    terciles: tuple[torch.Tensor, torch.Tensor] | None = None


@dataclass(frozen=True)
class WindowSetup:
    """What every chunk of an evaluation shares: the windows, the references, the edges."""

    windows: tuple[TimeWindow, ...]
    step: float
    refs: References
    region: GridRegion
    edges: dict
    persisted_steps: int


@torch.no_grad()
def evaluate(cfg: DictConfig) -> pd.DataFrame:
    """Score the sub-seasonal run ``cfg.run_dir`` as ``cfg.eval`` says; write the report into
    ``eval.out_dir`` (as one set, swapped in whole; an ``eval.out_dir`` that may not be replaced is
    refused before any work).

    Raises
    ------
    ConfigError
        For a run that predicts states rather than windows, variables it does not predict, or
        ``bred`` members (their breeding step feeds a window mean back as a state).
    """
    e = EvalSettings.from_config(cfg.eval)
    run = Run.load(cfg.run_dir, decide_device(e.device, "eval.device"))
    check_stochastic(run.model, e.ensemble, "eval.perturbation")
    if not run.info.windows:
        raise config_error("run_dir", cfg.run_dir, "this run forecasts states at leads; evaluate it with task=its task")
    scored = list(e.variables or run.info.out_variables)
    if not set(scored) <= set(run.info.out_variables):
        raise config_error("eval.variables", scored, f"the run predicts {list(run.info.out_variables)}")
    if e.ensemble.members > 1 and e.ensemble.perturbation == "bred":
        raise config_error("eval.perturbation", "bred", "breeding feeds a window mean back as a state")
    store = run_store(cfg, run)
    with evaluation_folder(e, [cfg.run_dir, store.root]) as staging:
        return score_windows(cfg, e, run, store, scored, staging)


def score_windows(
    cfg: DictConfig, e: EvalSettings, run: Run, store: ShardStore, scored: list[str], staging: Path
) -> pd.DataFrame:
    """Forecast and score every window from the split's initial times; write the report into
    ``staging``."""
    windows = tuple(TimeWindow(*w) for w in run.info.windows)
    step, spec = store.hours_per_step, e.ensemble
    horizon = max(w.steps(step)[1] for w in windows) - 1
    persisted = max(1, int(round(PERSISTED_DAYS * 24 / step)))
    lagged = (spec.members - 1) * int(round(lag_hours(run.info) / step)) if spec.perturbation == "lagged" else 0
    inits = initial_conditions(store, e.split, horizon, e.max_samples, max(persisted - 1, lagged))
    region = run.region.to("cpu")
    refs = References.build(e, {}, run, store, scored, region)
    days = e.climatology_window if e.climatology == "wb2" else None  # seasons: edges per day of year
    edges = {w: training_terciles(store, scored, w, region, days) for w in windows} if spec.members > 1 else {}
    setup = WindowSetup(windows, step, refs, region, edges, persisted)
    scorer = Scorer(
        scored, refs.regions, ensemble_metrics={**ENSEMBLE_METRICS, **RPS_METRICS}, baselines=WINDOW_BASELINES
    )
    shards = store.shards(e.split)
    for start in range(0, len(inits), e.batch_size):
        score_chunk(run, shards, inits[start : start + e.batch_size], scored, setup, spec, scorer)
    table = window_table(scorer.table(), windows)
    meta = {
        **scorecard_meta(cfg, e, run, refs, len(inits)),
        "windows": {w.label: [w.start_hours, w.end_hours] for w in windows},
        "persisted_days": PERSISTED_DAYS,
        "terciles": terciles_rule(days) if edges else None,
        "ensemble": spec.record() if spec.members > 1 else None,
    }
    write_window_report(table, staging, meta, scorer.rank_histograms())
    return table


def terciles_rule(days: int | None) -> str:
    """How the tercile edges were pooled, as the scorecard records it."""
    return f"per day of year, pooled over {days} days" if days else "pooled over the whole training split"


def score_chunk(
    run: Run,
    shards: list[Shard],
    chunk: list[tuple[int, int]],
    scored: list[str],
    setup: WindowSetup,
    spec,
    scorer: Scorer,
) -> None:
    """Forecast every window from the initial times ``chunk`` and add them to ``scorer``."""
    read = run.state_variables
    x = torch.stack([torch.as_tensor(shards[s].read(read, t)) for s, t in chunk])
    (mean_x, std_x), (mean_y, std_y) = run.field_stats(read), run.field_stats(scored)
    seconds = initial_seconds(setup.refs, chunk, run.forcings is not None)
    state = run.model_inputs((x - mean_x) / std_x).to(run.device)
    starts = chunk_starts(run, shards, chunk, state, seconds, spec, setup.step)
    anomaly = recent_anomaly(shards, chunk, scored, setup)
    days = None if setup.refs.times is None else day_of_year(np.array([setup.refs.times[s][t] for s, t in chunk]))
    by_start = {w.start_hours: w for w in setup.windows}
    for lead, pred in lead_forecasts(run, starts, scored, list(by_start), spec.members, "direct"):
        window = by_start[lead]
        verification = window_verification(shards, chunk, scored, window, setup, anomaly, days)
        pred = pred * std_y + mean_y
        scorer.add(lead, pred[0] if spec.members == 1 else pred, verification)


def window_verification(
    shards: list[Shard],
    chunk: list[tuple[int, int]],
    scored: list[str],
    window: TimeWindow,
    setup: WindowSetup,
    anomaly: torch.Tensor,
    days: np.ndarray | None,
) -> WindowVerification:
    """The observed mean of ``window`` from each initial time of ``chunk``, its climatology, the
    anomaly-persistence forecast (``anomaly`` ``[B, V, h, w]`` carried on) and the tercile edges."""
    first, stop = window.steps(setup.step)
    truth = torch.stack(
        [
            torch.as_tensor(np.stack([window_mean(shards[s].array(v), t, first, stop)[0] for v in scored]))
            for s, t in chunk
        ]
    )
    climatology = mean_climatology(setup.refs, chunk, range(first, stop))
    edges = setup.edges.get(window)
    return WindowVerification(
        truth=setup.region.crop(truth),
        climatology=climatology,
        initial=climatology + anomaly,
        lat=setup.region.lat,
        terciles=None if edges is None else edges.at(days),
    )


def mean_climatology(refs: References, chunk: list[tuple[int, int]], offsets: range) -> torch.Tensor:
    """The evaluation's climatology ``[B or 1, V, h, w]`` averaged over the times ``t + k`` of each
    initial time ``(s, t)`` of ``chunk``, ``k`` in ``offsets`` (on the run's region)."""
    total = sum(refs.climatology.at([(s, t + k) for s, t in chunk]).double() for k in offsets)
    return (total / len(offsets)).float()


def recent_anomaly(
    shards: list[Shard], chunk: list[tuple[int, int]], scored: list[str], setup: WindowSetup
) -> torch.Tensor:
    """``[B, V, h, w]``: the mean of the last ``PERSISTED_DAYS`` of states up to each initial time
    (included) minus the mean of their climatology."""
    n = setup.persisted_steps
    observed = torch.stack(
        [torch.as_tensor(np.stack([window_mean(shards[s].array(v), t, 1 - n, 1)[0] for v in scored])) for s, t in chunk]
    )
    return setup.region.crop(observed) - mean_climatology(setup.refs, chunk, range(1 - n, 1))
