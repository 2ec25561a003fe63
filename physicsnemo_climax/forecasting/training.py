# SPDX-License-Identifier: Apache-2.0
"""ClimaX forecasting tasks on the shared loop: pretraining with random lead
times on several sources, global, regional and rollout fine-tuning.

The tasks differ only in their Hydra config (``conf/task``). This module
builds the sources, the model (optionally from ``init=``) and the task's
region, checks the config, and hands a latitude-weighted MSE to the engine
(:func:`..engine.task.train_task`, which sets up the run and runs the loop).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from ..data import ClimaXShardReader, ForecastBatches, StoreError, make_loader, open_store
from ..data.anomalies import anomaly_statistics
from ..data.epochs import forecast_epochs
from ..data.forcings import Forcings
from ..data.windows import parse_windows
from ..engine.checks import ConfigError, config_error
from ..engine.loop import Trainable
from ..engine.run_folder import RunRecord
from ..engine.run_info import RunInfo
from ..engine.task import TaskContext, train_task, validation_mean
from ..errors import InputError
from ..metrics import rmse, weighted_crps_loss, weighted_mse_loss
from ..models import ClimaX, GridRegion
from ..models.variables import CONSTANTS
from .rollout import forecast_steps


# ---------------------------------------------------------------- building
def build_sources(cfg: DictConfig, split: str) -> list[ClimaXShardReader]:
    """Readers of the task's sources: ``data`` and, for pretraining, ``data.extra_sources``."""
    task = cfg.task
    windows = parse_windows(task.windows) if task.get("windows") else None
    specs = [cfg.data] + list(cfg.data.get("extra_sources") or [])
    forcings = list(cfg.data.get("forcings") or [])  # one set for the model, every source
    readers = []
    for i, spec in enumerate(specs):
        key = "data" if i == 0 else f"data.extra_sources[{i - 1}]"
        try:
            variables = list(spec.variables) if spec.get("variables") else None
            out_variables = list(spec.out_variables) if spec.get("out_variables") else None
            if out_variables is None:  # every non-constant, non-forcing input (needed for rollouts)
                inputs = variables or open_store(spec.root, spec.get("hours_per_step")).variables(split)
                out_variables = [v for v in inputs if v not in CONSTANTS and v not in forcings]
            readers.append(
                ClimaXShardReader(
                    spec.root,
                    split,
                    variables=variables,
                    out_variables=out_variables,
                    lead_hours=task.lead_hours,
                    lead_range=tuple(task.lead_range or (6, 168)),
                    lead_step=task.lead_step,
                    rollout_steps=task.rollout_steps,
                    hours_per_step=spec.get("hours_per_step"),
                    forcings=forcings,
                    windows=windows,
                    shuffle_block=spec.get("shuffle_block", "auto"),
                    chunk_cache_gb=spec.get("chunk_cache_gb"),
                    chunk_memory_gb=spec.get("chunk_memory_gb"),
                )
            )
        except StoreError as err:  # names the store and the variables
            raise ConfigError(f"{key}: {err}") from err
        except InputError as err:  # unknown forcings
            raise ConfigError(str(err)) from err
        except ValueError as err:
            raise ConfigError(
                f"task.lead_hours={task.lead_hours}, task.lead_range={list(task.lead_range or [])}, "
                f"task.rollout_steps={task.rollout_steps}: {err}"
            ) from err
    return readers


def model_variables(readers: list[ClimaXShardReader]) -> list[str]:
    """All variables of all sources, in first-seen order."""
    return list(dict.fromkeys(v for r in readers for v in r.variables + r.out_variables))


def build_model(cfg: DictConfig, readers: list[ClimaXShardReader]) -> ClimaX:
    """ClimaX for the data's grid and variables, optionally initialised from ``cfg.init``."""
    store = readers[0].store
    args = OmegaConf.to_container(cfg.model, resolve=True)
    args.pop("_target_", None)
    args.update(
        variables=model_variables(readers), img_size=list(store.grid), lat=store.lat.tolist(), lon=store.lon.tolist()
    )
    try:
        model = ClimaX.from_pretrained(str(cfg.init), **args) if cfg.get("init") else ClimaX(**args)
    except (KeyError, ValueError) as err:
        raise ConfigError(f"init={cfg.init}: {err}") from err
    if model.residual and readers[0].windows:
        raise config_error(
            "model.residual",
            True,
            "a residual ClimaX forecasts around the persisted anomaly of a state at a lead, not of a "
            "time mean over a window (task.windows)",
        )
    if model.residual:  # anomaly persistence of the training split (a resume reloads it)
        set_anomalies(model, readers[0], cfg.task.lead_hours or max(cfg.task.lead_range))
    return model


def set_anomalies(model: ClimaX, reader: ClimaXShardReader, max_lead_hours: float) -> None:
    """A residual model's statistics (:mod:`..data.anomalies`) from the training split of the
    reader's store, up to the longest trained lead; forcings, never outputs, keep the defaults."""
    computed = reader.forcings.names if reader.forcings is not None else ()
    read = [v for v in model.variables if v not in computed]
    stats = anomaly_statistics(reader.store, read, max_lead_hours, model.anomaly_corr.shape[-1])
    rows = [read.index(v) if v in read else None for v in model.variables]
    clim, std, corr = (
        model.climatology.clone().numpy(),
        model.anomaly_std.clone().numpy(),
        model.anomaly_corr.clone().numpy(),
    )
    for row, j in enumerate(rows):
        if j is not None:
            clim[row], std[row], corr[row] = stats.climatology[j], stats.std[j], stats.corr[j]
    model.set_anomalies(clim, std, corr, stats.hours)


def check_config(
    cfg: DictConfig, model: ClimaX, readers: list[ClimaXShardReader], loader: str = "threads"
) -> GridRegion:
    """Errors naming key and value, before any training step; returns the task's region."""
    if cfg.data.get("forcings") and cfg.task.rollout_steps > 1 and loader.startswith("dali"):
        raise config_error(
            "train.loader",
            loader,
            "the DALI pipeline does not carry the valid times that "
            "data.forcings need at every rollout step; use threads or processes",
        )
    if cfg.train.loss == "crps" and not model.stochastic:
        raise config_error(
            "train.loss",
            "crps",
            "a deterministic ClimaX (model.noise_dim=0) forecasts one member whatever the count; "
            "set model.noise_dim (e.g. 8) for a stochastic one",
        )
    try:
        region = model.resolve_region(cfg.task.region)
    except (KeyError, ValueError) as err:
        raise config_error("task.region", cfg.task.region, err) from err
    for reader in readers:
        unknown = [v for v in reader.out_variables if v not in model.variables]
        if unknown:
            raise config_error("data.out_variables", unknown, "not variables of the model")
    if cfg.task.get("windows") and cfg.task.rollout_steps > 1:
        raise config_error("task.rollout_steps", cfg.task.rollout_steps, "a time-mean window is never rolled out")
    if cfg.task.rollout_steps > 1 and not region.is_global:
        raise config_error("task.region", cfg.task.region, "rollout training is global only")
    if cfg.task.rollout_steps > 1:
        for reader in readers:
            if not set(reader.out_variables) >= {v for v in reader.state_variables if v not in CONSTANTS}:
                raise config_error(
                    "data.out_variables",
                    reader.out_variables,
                    "rollout training feeds predictions back: predict every non-constant input",
                )
    return region


def run_info(cfg: DictConfig, readers: list[ClimaXShardReader], model: ClimaX, region: GridRegion) -> RunInfo:
    """What evaluation and the forecast API need besides the weights (``run.json``)."""
    store, task, windows = readers[0].store, cfg.task, readers[0].windows
    stats = {}
    for reader in readers:
        for key, names in (("x", reader.variables), ("y", reader.out_variables)):
            for v, m, s in zip(names, *reader.stats[key]):
                stats[v] = {"mean": float(m), "std": float(s)}
    return RunInfo(
        task=task.name,
        variables=tuple(readers[0].variables),
        out_variables=tuple(readers[0].out_variables),
        model_variables=tuple(model.variables),
        statistics=stats,
        units=(store.manifest or {}).get("units", {}),
        lat=tuple(store.lat.tolist()),
        lon=tuple(store.lon.tolist()),
        hours_per_step=store.hours_per_step,
        **(window_leads(windows, store.hours_per_step) if windows else trained_leads(task)),
        data_root=str(store.root.resolve()),
        data_fingerprint=store.fingerprint,
        region=region.spec,
        forcings=tuple(readers[0].forcings.names) if readers[0].forcings is not None else (),
    )


def trained_leads(task: DictConfig) -> dict:
    """The leads of ``run.json``: one fixed lead, or a range sampled every ``lead_step`` hours."""
    return {
        "lead_hours": task.lead_hours,
        "max_lead_hours": task.lead_hours or max(task.lead_range),
        "lead_range": None if task.lead_hours else tuple(task.lead_range),
        "lead_step": task.lead_step,
    }


def window_leads(windows, hours_per_step: float) -> dict:
    """The leads of ``run.json`` for time-mean windows: the windows, and the lead inputs the
    model saw (their starts, as a range on the data's step, so each start is a direct forecast)."""
    starts = [w.start_hours for w in windows]
    return {
        "windows": tuple((w.start_hours, w.end_hours) for w in windows),
        "lead_hours": None,
        "max_lead_hours": max(starts),
        "lead_range": (min(starts), max(starts)),
        "lead_step": hours_per_step,
    }


# ---------------------------------------------------------------- loss and validation
@dataclass(frozen=True)
class Loss:
    """The training loss (``train.loss``, ``train.members``, ``train.crps_alpha``): the
    latitude-weighted MSE of one forecast, or the almost-fair CRPS of ``members`` forecasts of
    each sample (:func:`..metrics.weighted_crps_loss`)."""

    kind: str = "mse"
    members: int = 1
    alpha: float = 1.0

    @classmethod
    def of(cls, t) -> Loss:
        """The loss of the ``train`` settings ``t`` (:class:`..engine.settings.TrainSettings`)."""
        return cls(t.loss, t.members, t.crps_alpha)


MSE = Loss()


def predictions(net, batch, region: GridRegion, forcings: Forcings | None = None) -> list[torch.Tensor]:
    """The forecast of each target step of ``batch``: one direct step (the reader computed its
    forcings), or a rollout (targets ``[B, S, V, H, W]``) chained through the model, with the
    ``forcings`` of every step's valid time."""
    if batch.y.ndim == 4:
        return [net(batch.x, batch.lead_time, batch.variables, batch.out_variables, region=region)]
    steps = batch.y.shape[1]
    return forecast_steps(
        net,
        batch.x,
        batch.variables,
        batch.out_variables,
        [batch.lead_time] * steps,
        forcings=forcings,
        init_time=batch.time,
    )


def member_predictions(
    net, batch, region: GridRegion, members: int, forcings: Forcings | None = None
) -> list[torch.Tensor]:
    """:func:`predictions` of ``members`` members of every sample, ``[M, B, V, h, w]`` each step:
    the batch's states repeated, member-major, in one forward pass (a stochastic model draws
    each row's noise; a rollout feeds each member its own forecast)."""
    b = batch.x.shape[0]
    repeated = replace(
        batch,
        x=batch.x.repeat(members, 1, 1, 1),
        lead_time=batch.lead_time.repeat(members),
        time=None if batch.time is None else batch.time.repeat(members),
    )  # y stays: predictions read only its steps
    return [p.reshape(members, b, *p.shape[1:]) for p in predictions(net, repeated, region, forcings)]


def forecast_loss(net, batch, region: GridRegion, forcings: Forcings | None = None, loss: Loss = MSE) -> torch.Tensor:
    """The ``loss`` on the region (latitude-weighted MSE, or the CRPS of members), averaged over
    the target steps."""
    if loss.kind == "mse":
        return loss_of(predictions(net, batch, region, forcings), batch, region)
    return loss_of(member_predictions(net, batch, region, loss.members, forcings), batch, region, loss)


def loss_of(preds: list[torch.Tensor], batch, region: GridRegion, loss: Loss = MSE) -> torch.Tensor:
    """The ``loss`` of the forecasts ``preds`` of each target step (``[B, V, h, w]``, or
    ``[M, B, V, h, w]`` for the CRPS) against ``batch.y``."""
    targets = [batch.y] if batch.y.ndim == 4 else batch.y.unbind(1)
    if loss.kind == "mse":
        return sum(weighted_mse_loss(p, region.crop(y), region.lat) for p, y in zip(preds, targets)) / len(preds)
    scores = [weighted_crps_loss(p, region.crop(y), region.lat, loss.alpha) for p, y in zip(preds, targets)]
    return sum(scores) / len(scores)


def validate(net, readers, t, region: GridRegion, manager, seed: int, loader: str) -> dict[str, float]:
    """Validation loss (the training loss, :class:`Loss`) and RMSE (normalized units; of the
    members' mean with the CRPS) of each output variable, over ``t.val_batches``, read by worker
    processes when the run ``loader`` is ``processes``, else by threads (a few batches: no DALI
    pipeline)."""
    batches = ForecastBatches(
        readers, t.batch_size, manager.rank, manager.world_size, seed=seed, shuffle=False, even=True
    )
    backend = "processes" if loader == "processes" else "threads"

    loss = Loss.of(t)

    def scores(batch) -> dict[str, float]:
        batch = batch.to(manager.device)
        forcings = readers[batch.source].forcings
        if loss.kind == "mse":
            preds = predictions(net, batch, region, forcings)
        else:
            preds = member_predictions(net, batch, region, loss.members, forcings)
        out = {"loss": loss_of(preds, batch, region, loss).item()}
        if batch.y.ndim == 4:
            mean = preds[0].float() if loss.kind == "mse" else preds[0].float().mean(dim=0)
            for v, score in zip(batch.out_variables, rmse(mean, region.crop(batch.y), region.lat)):
                out[f"rmse/{v}"] = score.item()
        return out

    return validation_mean(make_loader(batches, t.num_workers, backend), scores, manager, t.val_batches)


# ---------------------------------------------------------------- the task
def train(cfg: DictConfig) -> Path:
    """Run (or resume) the training the config describes; returns the run folder."""
    return fit(cfg)[0]


def fit(cfg: DictConfig) -> tuple[Path, ClimaX]:
    """:func:`train`, also returning this rank's trained model."""
    return train_task(cfg, forecast_job, name="climax.train", losses=("mse", "crps"))


def forecast_job(ctx: TaskContext) -> tuple[Trainable, RunRecord]:
    """The forecasting task's part (:func:`..engine.task.train_task` does the rest): the sources,
    the model and its region, the loss (latitude-weighted MSE, or the CRPS of members) and
    validation, and the run's record."""
    cfg, t, plan = ctx.cfg, ctx.train, ctx.plan
    readers = build_sources(cfg, "train")
    val_readers = build_sources(cfg, "val") if cfg.data.val else []
    model = build_model(cfg, readers)
    region = check_config(cfg, model, readers, plan.loader).to(ctx.device)

    def validation(net) -> dict[str, float]:
        return validate(net, val_readers, t, region, ctx.manager, cfg.seed, plan.loader)

    batches = ForecastBatches(readers, t.batch_size, ctx.rank, ctx.world_size, seed=cfg.seed)
    loss = Loss.of(t)
    job = Trainable(
        model,
        lambda net, batch: forecast_loss(net, batch, region, readers[batch.source].forcings, loss),
        forecast_epochs(batches, plan.loader, ctx.device, t.num_workers),
        validation if val_readers else None,
        fsdp_units=model.blocks,
        grad_checkpointing=model.set_grad_checkpointing,
    )
    return job, RunRecord(cfg, run_info(cfg, readers, model, region))
