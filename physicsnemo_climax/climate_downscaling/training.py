# SPDX-License-Identifier: Apache-2.0
"""Climate-model downscaling (``task=climate_downscaling``) on the shared loop.

Training pairs the two stores by valid time (:mod:`.pairing`), builds ClimaX
for the target grid (:mod:`.model`, optionally from ``init=``) and fits it
with the latitude-weighted MSE of the normalized targets; validation scores
the held-out split. ``run.json`` records both stores, the variables, their
statistics, both grids, the residual switch and the calendar rule's outcome
per split: what evaluation and :func:`.inference.downscale_coarse` read.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig

from ..data.epochs import dataset_epochs, validation_batches
from ..engine.loop import Trainable, to_device
from ..engine.plan import TORCH_LOADERS
from ..engine.run_folder import RunRecord
from ..engine.run_info import RunInfo
from ..engine.task import TaskContext, train_task, validation_mean
from ..metrics import rmse, weighted_mse_loss
from .data import PairedFields, StorePair, store_pair
from .model import ResidualMap, build_model, model_names, predict, residual_map
from .pairing import Pairs, pair_times, store_calendar, store_splits


def train(cfg: DictConfig) -> Path:
    """Fit the downscaling model the config describes; returns the run folder."""
    return train_task(cfg, downscaling_job, name="climate_downscaling.train", loaders=TORCH_LOADERS)[0]


def downscaling_job(ctx: TaskContext) -> tuple[Trainable, RunRecord]:
    """The task's part (:func:`..engine.task.train_task` does the rest): the paired samples, the
    model, the latitude-weighted MSE and its validation, and the run's record."""
    cfg, t = ctx.cfg, ctx.train
    pair = store_pair(cfg)
    splits = checked_splits(cfg, pair)
    tt = pair.target_store
    model = build_model(cfg, pair.model_inputs, pair.out_variables, tt.lat.tolist(), tt.lon.tolist())
    residual = residual_map(pair.model_inputs, pair.out_variables, pair.statistics) if cfg.task.residual else None
    lat = torch.as_tensor(tt.lat, dtype=torch.float32)
    log_setup(ctx, pair, splits, model)

    def loss_fn(net, batch):
        pred = predict(net, batch["x"], pair.model_inputs, pair.out_variables, residual)
        return weighted_mse_loss(pred, batch["y"], lat)

    train_set = PairedFields(pair, splits["train"])
    val_set = PairedFields(pair, splits["val"]) if "val" in splits else None
    job = Trainable(
        model,
        loss_fn,
        dataset_epochs(
            train_set, t.batch_size, ctx.rank, ctx.world_size, cfg.seed, t.num_workers, ctx.device.type == "cuda"
        ),
        (lambda net: validate_downscaling(net, val_set, ctx, residual, lat)) if val_set is not None else None,
        fsdp_units=model.blocks,
        grad_checkpointing=model.set_grad_checkpointing,
    )
    return job, RunRecord(cfg, downscaling_run_info(cfg, pair, splits))


def checked_splits(cfg: DictConfig, pair: StorePair) -> dict[str, Pairs]:
    """The pairs of every split, checked before training: ``train``, ``val`` when ``data.val``, and
    ``test`` when both stores have one (evaluation's split), so a mismatch stops the run now."""
    both = set(store_splits(pair.input_store)) & set(store_splits(pair.target_store))
    names = ["train"] + (["val"] if cfg.data.val else []) + (["test"] if "test" in both else [])
    return {name: pair_times(pair.input_store, pair.target_store, name) for name in names}


def log_setup(ctx: TaskContext, pair: StorePair, splits: dict[str, Pairs], model) -> None:
    """One line on what is trained, and the calendar rule's outcome."""
    counts = ", ".join(f"{s}: {p.summary()['samples']}" for s, p in splits.items())
    ctx.logger.info(
        f"climate downscaling: {list(pair.variables)} on {pair.input_store.grid} -> {list(pair.out_variables)} "
        f"on {pair.target_store.grid}; samples {counts}; "
        f"{sum(p.numel() for p in model.parameters() if p.requires_grad):,} trainable parameters"
    )
    for split, pairs in splits.items():
        if pairs.dropped_leap_days:
            ctx.logger.warning(
                f"{split}: {pairs.dropped_leap_days} target times on 29 February dropped "
                f"(the input's noleap calendar has no such day)"
            )


def validate_downscaling(
    net, val_set: PairedFields, ctx: TaskContext, residual: ResidualMap | None, lat
) -> dict[str, float]:
    """Validation loss and RMSE (normalized units) of each output over ``train.val_batches``."""
    pair = val_set.pair
    batches = validation_batches(val_set, ctx.train.batch_size, ctx.rank, ctx.world_size)

    def scores(batch) -> dict[str, float]:
        batch = to_device(batch, ctx.device)
        pred = predict(net, batch["x"], pair.model_inputs, pair.out_variables, residual).float()
        out = {"loss": weighted_mse_loss(pred, batch["y"], lat).item()}
        for v, score in zip(pair.out_variables, rmse(pred, batch["y"], lat)):
            out[f"rmse/{v}"] = score.item()
        return out

    return validation_mean(batches, scores, ctx.manager, ctx.train.val_batches, weight=lambda b: len(b["x"]))


def downscaling_run_info(cfg: DictConfig, pair: StorePair, splits: dict[str, Pairs]) -> RunInfo:
    """What evaluation and :func:`.inference.downscale_coarse` need besides the weights (``run.json``).

    The target side fills the shared fields (``data_root``, ``out_variables``, ``statistics``,
    ``units``, ``lat``/``lon``); the input side and the task's facts are under ``extra``'s
    ``downscaling``. ``variables`` stays empty: the run is no forecasting run, and
    :meth:`..forecasting.Run.load` refuses it by that.
    """
    source, target = pair.input_store, pair.target_store
    facts = {
        "input_root": str(source.root.resolve()),
        "input_fingerprint": source.fingerprint,
        "input_variables": list(pair.variables),
        "constants": list(pair.constants),
        "model_inputs": pair.model_inputs,
        "input_statistics": pair.statistics["input"],
        "input_units": {v: u for v, u in (source.manifest or {}).get("units", {}).items() if v in pair.variables},
        "input_lat": source.lat.tolist(),
        "input_lon": source.lon.tolist(),
        "input_hours_per_step": source.hours_per_step,
        "residual": bool(cfg.task.residual),
        "interpolation": "bilinear",
        "calendars": {"input": store_calendar(source), "target": store_calendar(target)},
        "pairs": {split: p.summary() for split, p in splits.items()},
    }
    return RunInfo(
        task=cfg.task.name,
        data_root=str(target.root.resolve()),
        data_fingerprint=target.fingerprint,
        out_variables=tuple(pair.out_variables),
        model_variables=tuple(model_names(pair.model_inputs, pair.out_variables)),
        statistics=pair.statistics["target"],
        units=(target.manifest or {}).get("units", {}),
        lat=tuple(target.lat.tolist()),
        lon=tuple(target.lon.tolist()),
        hours_per_step=target.hours_per_step,
        extra={"downscaling": facts},
    )
