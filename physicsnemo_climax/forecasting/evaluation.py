# SPDX-License-Identifier: Apache-2.0
"""Scorecard of a run against persistence and climatology.

Every lead is scored from the same initial conditions (evenly spaced over the
split, each valid for the longest lead), in physical units, on the run's
region. Leads up to the trained range are direct forecasts; longer ones roll
out (``eval.mode`` chooses). This module reads the run and the store and
makes the forecasts; :mod:`.scoring` scores them and :mod:`.report` writes
the files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from ..data import ShardStore
from ..data.climatology import day_and_hour, hourly_climatology
from ..data.store import Shard
from ..models import GridRegion
from .report import Case, write_report
from .rollout import forecast_steps, model_steps
from .run import Run
from .scoring import Scorer, Verification


def initial_conditions(store: ShardStore, split: str, horizon_steps: int, count: int) -> list[tuple[int, int]]:
    """``count`` evenly spaced ``(shard, time)`` pairs with ``horizon_steps`` ahead in the shard."""
    pairs = [(s, t) for s, shard in enumerate(store.shards(split)) for t in range(shard.steps - horizon_steps)]
    if not pairs:
        raise ValueError(f"{store.root}/{split}: no initial time has {horizon_steps} steps ahead in its shard")
    pick = np.unique(np.linspace(0, len(pairs) - 1, min(count, len(pairs))).round().astype(int))
    return [pairs[i] for i in pick]


def rollout_plans(run: Run, scored: list[str], leads: list[float], mode: str) -> dict[float, list[float]]:
    """The model steps of each lead (:func:`.rollout.model_steps`), checked against the scored variables."""
    plans = {lead: model_steps(run.info, lead, mode) for lead in leads}
    for lead, plan in plans.items():
        if len(plan) > 1 and not set(scored) <= set(run.info["variables"]):
            raise ValueError(f"lead {lead} h needs a rollout, which needs {scored} among the inputs")
    return plans


class ClimatologyReference:
    """The climatology forecast and ACC reference, on the region.

    ``wb2``: WeatherBench 2's, by day of year and hour of day from the training
    years (or ``years``), smoothed over ``window`` days (:mod:`..data.climatology`);
    ``day_of_year``: the scored split's own mean of the valid day of year;
    ``time_mean``: the scored split's own time mean. The last two know the scored
    period (an in-sample, optimistic baseline).
    """

    KINDS = ("time_mean", "day_of_year", "wb2")

    def __init__(self, store: ShardStore, split: str, variables: list[str], region: GridRegion, kind: str,
                 window: int = 61, years=None):
        if kind not in self.KINDS:
            raise ValueError(f"eval.climatology={kind!r}: choose from {list(self.KINDS)}")
        self.kind, self.hourly = kind, None
        if kind == "wb2":
            span = tuple(int(y) for y in years) if years else None
            self.hourly = hourly_climatology(store, variables, "train", span, window)
        else:
            fields = store.climatology(split, variables, day_of_year=kind != "time_mean")
            self.fields = region.crop(torch.as_tensor(fields))
        self.region = region
        self.times = store.shard_times(split) if kind != "time_mean" else None

    def at(self, valid: list[tuple[int, int]]) -> torch.Tensor:
        """``[1, V, H, W]`` (time mean) or ``[B, V, H, W]`` for the valid ``(shard, time)`` pairs."""
        if self.times is None:
            return self.fields[None]
        stamps = np.array([self.times[s][t] for s, t in valid])
        if self.hourly is not None:
            return self.region.crop(torch.as_tensor(self.hourly.at(stamps)))
        return self.fields[day_and_hour(stamps)[0]]


def forecasts(run: Run, shards: list[Shard], step: float, chunk: list[tuple[int, int]], scored: list[str],
              plans: dict[float, list[float]], climatology: ClimatologyReference, region: GridRegion,
              ) -> Iterator[tuple[float, torch.Tensor, Verification]]:
    """``(lead, forecast, verification)`` of each lead from the initial times ``chunk`` of ``shards``
    (``step`` hours apart), in physical units, on the CPU."""
    variables = run.info["variables"]
    x = torch.stack([torch.as_tensor(shards[s].read(variables, t)) for s, t in chunk])
    mean_x, std_x = (torch.as_tensor(a, dtype=torch.float32)[:, None, None] for a in run.stats(variables))
    mean_y, std_y = (torch.as_tensor(a, dtype=torch.float32)[:, None, None] for a in run.stats(scored))
    x_norm = ((x - mean_x) / std_x).to(next(run.model.parameters()).device)
    initial = region.crop(x[:, [variables.index(v) for v in scored]]) if set(scored) <= set(variables) else None
    for lead, plan in plans.items():
        k = int(round(lead / step))
        truth = region.crop(torch.stack([torch.as_tensor(shards[s].read(scored, t + k)) for s, t in chunk]))
        pred = forecast_steps(run.model, x_norm, variables, scored, plan, run.region)[-1]
        verification = Verification(truth, climatology.at([(s, t + k) for s, t in chunk]), initial, region.lat)
        yield lead, pred.float().cpu() * std_y + mean_y, verification


def map_lead(leads: list[float]) -> float:
    """Lead shown on the maps: the first of at least a day, else the longest."""
    return next((lead for lead in leads if lead >= 24), leads[-1])


@torch.no_grad()
def evaluate(cfg: DictConfig) -> pd.DataFrame:
    """Score a run (``cfg.run_dir``) as ``cfg.eval`` says; write the report into ``eval.out_dir``."""
    e = cfg.eval
    run = Run.load(cfg.run_dir, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    store = ShardStore(run.info["data_root"], run.info["hours_per_step"])
    scored, leads = list(e.variables or run.info["out_variables"]), [float(v) for v in e.leads]
    plans = rollout_plans(run, scored, leads, e.mode)
    inits = initial_conditions(store, e.split, int(round(max(leads) / store.hours_per_step)), e.max_samples)
    region = run.region.to("cpu")  # regional runs are scored on their region
    climatology = ClimatologyReference(store, e.split, scored, region, e.get("climatology", "time_mean"),
                                       e.get("climatology_window", 61), e.get("climatology_years"))
    scorer, case, shards = Scorer(scored), None, store.shards(e.split)  # opened once for every chunk
    for start in range(0, len(inits), e.batch_size):
        chunk = inits[start : start + e.batch_size]
        for lead, forecast, verification in forecasts(run, shards, store.hours_per_step, chunk, scored, plans,
                                                      climatology, region):
            scorer.add(lead, forecast, verification)
            if case is None and start <= e.case < start + len(chunk) and lead == map_lead(leads):
                i = e.case - start
                case = Case(verification.truth[i].numpy(), forecast[i].numpy(), lead, chunk[i])
    table = scorer.table()
    var = e.map_variable or scored[0]
    write_report(table, Path(e.out_dir), {
        "run_dir": str(cfg.run_dir), "split": e.split, "samples": len(inits), "climatology": climatology.kind,
        "modes": {str(k): ("direct" if len(v) == 1 else f"rollout {v}") for k, v in plans.items()},
    }, case, {"variable": var, "index": scored.index(var), "lat": region.lat.numpy(), "lon": region.lon.numpy(),
              "units": run.info.get("units", {}).get(var, "")})
    return table
