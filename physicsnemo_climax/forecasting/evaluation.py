# SPDX-License-Identifier: Apache-2.0
"""Scorecard of a run against persistence and climatology.

Every lead is scored from the same initial conditions (evenly spaced over the
split, each valid for the longest lead), in physical units, on the run's
region, in every score region (:mod:`.score_regions`). Leads up to the
trained range are direct forecasts; longer ones roll out (``eval.mode``
chooses). External forecasts (:mod:`.external`) are scored on the same
initial times and leads. This module reads the run, the store and the
references and makes the forecasts; :mod:`.scoring` and :mod:`.diagnostics`
score them and :mod:`.report` writes the files. With ``eval.save_forecasts``
the model's forecasts go to ``forecasts.zarr`` in WeatherBench 2's layout.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from ..data import ShardStore
from ..data.forcings import unix_seconds
from ..data.store import Shard, StoreError
from ..data.units import expected_units
from ..data.wb2 import to_wb2
from ..engine.plan import decide_device
from ..errors import InputError
from ..models import GridRegion
from .core import Start, forecast_dataset, lead_forecasts, member_starts
from .diagnostics import FieldDiagnostics
from .ensembles import EnsembleSpec, check_stochastic, lag_hours
from .probabilistic import add_speeds, probabilistic_metrics, wind_vector_metric, with_speeds
from .references import References
from .report import Case, Pictures, evaluation_folder, write_report
from .rollout import model_steps
from .run import Run, run_store
from .scoring import ENSEMBLE_METRICS, METRICS, Scorer, Verification
from .settings import EvalSettings


def initial_conditions(
    store: ShardStore, split: str, horizon_steps: int, count: int, back_steps: int = 0
) -> list[tuple[int, int]]:
    """``count`` evenly spaced ``(shard, time)`` pairs with ``horizon_steps`` ahead in the shard
    (and ``back_steps`` before it, for lagged members)."""
    pairs = [
        (s, t) for s, shard in enumerate(store.shards(split)) for t in range(back_steps, shard.steps - horizon_steps)
    ]
    if not pairs:
        raise InputError(f"{store.root}/{split}: no initial time has {horizon_steps} steps ahead in its shard")
    pick = np.unique(np.linspace(0, len(pairs) - 1, min(count, len(pairs))).round().astype(int))
    return [pairs[i] for i in pick]


def rollout_plans(run: Run, scored: list[str], leads: list[float], mode: str) -> dict[float, list[float]]:
    """The model steps of each lead (:func:`.rollout.model_steps`), checked against the run's region and the
    scored variables (a rollout feeds them back as inputs)."""
    plans = {lead: model_steps(run.info, lead, mode) for lead in leads}
    for lead, plan in plans.items():
        if len(plan) > 1 and not run.region.is_global:
            raise InputError(
                f"lead {lead:g} h needs a rollout of {plan} h, and a regional run's forecast cannot "
                "be fed back into the global input: direct leads only"
            )
        if len(plan) > 1 and not set(scored) <= set(run.info.variables):
            raise InputError(f"lead {lead} h needs a rollout, which needs {scored} among the inputs")
    return plans


def chunk_starts(
    run: Run,
    shards: list[Shard],
    chunk: list[tuple[int, int]],
    x_norm: torch.Tensor,
    seconds: np.ndarray | None,
    spec: EnsembleSpec,
    step: float,
) -> list[Start]:
    """The member starts (:func:`.core.member_starts`) of the chunk's normalised states ``x_norm``:
    for ``lagged`` members, member ``k`` from the state ``k`` lags (:func:`.ensembles.lag_hours`)
    earlier in the store."""
    if spec.members == 1 or spec.perturbation != "lagged":
        return member_starts(run, x_norm, seconds, spec)
    variables = run.state_variables
    mean, std = run.field_stats(variables)
    lag = lag_hours(run.info)
    earlier = [
        torch.stack([torch.as_tensor(shards[s].read(variables, t - k * int(round(lag / step)))) for s, t in chunk])
        for k in range(1, spec.members)
    ]
    return member_starts(run, x_norm, seconds, spec, [run.model_inputs((x - mean) / std) for x in earlier], lag)


def forecasts(
    run: Run,
    shards: list[Shard],
    step: float,
    chunk: list[tuple[int, int]],
    scored: list[str],
    plans: dict[float, list[float]],
    refs: References,
    region: GridRegion,
    spec: EnsembleSpec,
    mode: str = "auto",
) -> Iterator[tuple[float, torch.Tensor, Verification]]:
    """``(lead, forecast, verification)`` of each lead from the initial times ``chunk`` of ``shards``
    (``step`` hours apart), in physical units, on the CPU; ``[M, B, V, h, w]`` for an ensemble."""
    read = run.state_variables
    x = torch.stack([torch.as_tensor(shards[s].read(read, t)) for s, t in chunk])
    (mean_x, std_x), (mean_y, std_y) = run.field_stats(read), run.field_stats(scored)
    seconds = initial_seconds(refs, chunk, run.forcings is not None)
    starts = chunk_starts(
        run, shards, chunk, run.model_inputs((x - mean_x) / std_x).to(run.device), seconds, spec, step
    )
    initial = region.crop(x[:, [read.index(v) for v in scored]]) if set(scored) <= set(read) else None
    for lead, pred in lead_forecasts(run, starts, scored, list(plans), spec.members, mode):
        k = int(round(lead / step))
        truth = region.crop(torch.stack([torch.as_tensor(shards[s].read(scored, t + k)) for s, t in chunk]))
        pred = pred * std_y + mean_y
        valid = [(s, t + k) for s, t in chunk]
        verification = Verification(
            truth=truth,
            climatology=refs.climatology.at(valid),
            initial=initial,
            lat=region.lat,
            seeps=refs.seeps_at(valid),
            thresholds=refs.thresholds_at(valid),
        )
        yield lead, pred[0] if spec.members == 1 else pred, verification


def initial_seconds(refs: References, chunk: list[tuple[int, int]], needed: bool) -> np.ndarray | None:
    """``[B]`` initial times of ``chunk``, seconds since 1970, when the store has time stamps."""
    if refs.times is None:
        if needed:
            raise StoreError("the run takes forcings, which need a store with time stamps")
        return None
    return unix_seconds([refs.times[s][t] for s, t in chunk])


def map_lead(leads: list[float]) -> float:
    """Lead shown on the maps: the first of at least a day, else the longest."""
    return next((lead for lead in leads if lead >= 24), leads[-1])


def init_stamps(refs: References, inits: list[tuple[int, int]], needed: bool) -> np.ndarray | None:
    """Time stamps of the initial times (``None`` when the store has none and nothing ``needed`` them)."""
    if refs.times is None:
        if needed:
            raise StoreError(
                "external forecasts and saved forecasts need a store with time stamps "
                "(one prepared by `climax data prepare`)"
            )
        return None
    return np.array([refs.times[s][t] for s, t in inits], "datetime64[ns]")


def with_winds(
    refs: References, scored: list[str], forecast: torch.Tensor, v: Verification
) -> tuple[torch.Tensor, Verification]:
    """``forecast`` (``[..., V, h, w]``) and ``v`` with the derived wind speeds of ``refs.winds`` appended."""
    if not refs.winds:
        return forecast, v
    return add_speeds(forecast, scored, refs.winds), with_speeds(v, scored, refs.winds)


def score_externals(
    scorer: Scorer,
    fields: FieldDiagnostics,
    refs: References,
    scored: list[str],
    lead: float,
    verification: Verification,
    stamps: np.ndarray,
) -> None:
    """Score the external forecasts of ``refs`` at the initial times ``stamps`` they hold, at ``lead``."""
    for name, external in refs.externals.items():
        index, theirs = external.block(stamps, lead)
        if index:
            scorer.add(lead, *with_winds(refs, scored, theirs, verification.take(index)), method=name, baselines=False)
            fields.add(name, lead, theirs, verification.truth[index])


def make_scorer(e: EvalSettings, scored: list[str], refs: References) -> Scorer:
    """The scorer of ``scored`` and the derived wind speeds, with the optional scores ``e`` asks for."""
    extra = probabilistic_metrics(
        e.energy_score,
        e.debiased_mse,
        refs.thresholds.fixed_names() if refs.thresholds else (),
        e.quantiles,
    )
    every = [*scored, *refs.winds]
    metrics = {**METRICS, "wind_vector_rmse": wind_vector_metric(every, refs.winds)} if refs.winds else METRICS
    return Scorer(every, refs.regions, metrics=metrics, ensemble_metrics={**ENSEMBLE_METRICS, **extra})


def score_split(
    run: Run,
    store: ShardStore,
    e: EvalSettings,
    inits: list[tuple[int, int]],
    scored: list[str],
    plans: dict,
    refs: References,
    region: GridRegion,
    scorer: Scorer,
    fields: FieldDiagnostics,
    saved: Path | None,
    spec: EnsembleSpec,
) -> Case | None:
    """Forecast from every initial time in chunks of ``e.batch_size``, score the model, the baselines
    and the external forecasts, and append the model's forecasts to the Zarr at ``saved``."""
    stamps = init_stamps(refs, inits, bool(refs.externals) or saved is not None)
    case, shards = None, store.shards(e.split)  # shards opened once
    units = {v: expected_units(v, run.info.units) or "" for v in scored}
    for start in range(0, len(inits), e.batch_size):
        chunk, block = inits[start : start + e.batch_size], {}
        for lead, forecast, verification in forecasts(
            run, shards, store.hours_per_step, chunk, scored, plans, refs, region, spec, e.mode
        ):
            scorer.add(lead, *with_winds(refs, scored, forecast, verification))
            fields.add("model", lead, forecast, verification.truth)
            if refs.externals:
                score_externals(scorer, fields, refs, scored, lead, verification, stamps[start : start + len(chunk)])
            if case is None and start <= e.case < start + len(chunk) and lead == map_lead(list(plans)):
                i = e.case - start
                mean = forecast if forecast.ndim == 4 else forecast.mean(dim=0)  # the ensemble's mean
                case = Case(verification.truth[i].numpy(), mean[i].numpy(), lead, chunk[i])
            block[lead] = forecast
        if saved is not None:
            values = torch.stack(
                [block[lead] if block[lead].ndim == 5 else block[lead][None] for lead in block], dim=2
            ).numpy()  # [M, B, L, V, h, w]
            ds = forecast_dataset(
                values,
                stamps[start : start + len(chunk)],
                list(block),
                scored,
                units,
                region.lat.numpy(),
                region.lon.numpy(),
            )
            wb2 = to_wb2(ds, {**run.provenance(), **(spec.record() if spec.members > 1 else {})})
            wb2.to_zarr(
                saved,
                mode="a" if start else "w-",
                append_dim="time" if start else None,
                zarr_format=2,
                consolidated=True,
            )
    return case


@torch.no_grad()
def evaluate(cfg: DictConfig) -> pd.DataFrame:
    """Score a run (``cfg.run_dir``) as ``cfg.eval`` says; write the report into ``eval.out_dir``.

    The run's model goes to ``eval.device`` (:func:`..engine.plan.decide_device`: unset, CUDA when
    present, else the CPU); the scorecard's metadata records the device used.

    The report is written as one set beside ``eval.out_dir`` and swapped in whole, so the previous
    one survives any failure; an ``eval.out_dir`` that may not be replaced (another kind of folder,
    an earlier report without ``eval.overwrite``) is refused before any work.
    """
    e = EvalSettings.from_config(cfg.eval)  # checked before anything is read
    run = Run.load(cfg.run_dir, decide_device(e.device, "eval.device"))
    check_stochastic(run.model, e.ensemble, "eval.perturbation")
    store = run_store(cfg, run)
    scored = list(e.variables or run.info.out_variables)
    plans = rollout_plans(run, scored, list(e.leads), e.mode)
    with evaluation_folder(e, [cfg.run_dir, store.root]) as staging:
        return score_run(cfg, e, run, store, scored, plans, staging)


def scorecard_meta(cfg: DictConfig, e: EvalSettings, run: Run, refs: References, samples: int) -> dict:
    """What every scorecard records first: the run, the split and its number of initial times, the
    device, the climatology and the regions."""
    return {
        "run_dir": str(cfg.run_dir),
        "checkpoint": run.checkpoint.name if run.checkpoint else None,  # the model file scored
        "split": e.split,
        "samples": samples,
        "device": str(run.device),
        "climatology": refs.climatology.describe(),
        "regions": list(refs.regions),
    }


def score_run(
    cfg: DictConfig,
    e: EvalSettings,
    run: Run,
    store: ShardStore,
    scored: list[str],
    plans: dict[float, list[float]],
    staging: Path,
) -> pd.DataFrame:
    """Forecast ``scored`` at the leads of ``plans`` (:func:`rollout_plans`) and score them as ``e``
    says, writing the report into ``staging`` (``eval.out_dir`` to be)."""
    leads, spec = list(plans), e.ensemble
    lag_steps = int(round(lag_hours(run.info) / store.hours_per_step))
    back = (spec.members - 1) * lag_steps if spec.perturbation == "lagged" else 0
    inits = initial_conditions(store, e.split, int(round(max(leads) / store.hours_per_step)), e.max_samples, back)
    region = run.region.to("cpu")  # regional runs are scored on their region
    refs = References.build(e, cfg.external, run, store, scored, region)
    scorer = make_scorer(e, scored, refs)
    fields = FieldDiagnostics(list(e.spectra_leads or sorted({map_lead(leads), leads[-1]})), region.lat)
    saved = staging / "forecasts.zarr" if e.save_forecasts else None
    case = score_split(run, store, e, inits, scored, plans, refs, region, scorer, fields, saved, spec)
    var = e.map_variable or scored[0]
    meta = {
        **scorecard_meta(cfg, e, run, refs, len(inits)),
        "skipped_regions": refs.skipped,
        "external": {n: x.report() for n, x in refs.externals.items()},
        "forecasts": str(Path(e.out_dir) / "forecasts.zarr") if saved is not None else None,
        "ensemble": spec.record() if spec.members > 1 else None,
        "modes": {str(k): ("direct" if len(v) == 1 else f"rollout {v}") for k, v in plans.items()},
    }
    table = scorer.table()
    write_report(
        table,
        staging,
        meta,
        Pictures(
            case,
            fields,
            scorer.rank_histograms(),
            {
                "variable": var,
                "index": scored.index(var),
                "variables": scored,
                "lat": region.lat.numpy(),
                "lon": region.lon.numpy(),
                "units": expected_units(var, run.info.units) or "",
            },
        ),
    )
    return table
