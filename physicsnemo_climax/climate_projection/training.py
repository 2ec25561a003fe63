# SPDX-License-Identifier: Apache-2.0
"""Climate projection on ClimateBench (``task=climatebench``) on the shared loop.

Training reads the training scenarios (SSP runs take their first years'
history from ``historical``), normalizes the inputs with their statistics,
holds out a seeded fraction of the windows for validation, and fits
:class:`.model.ClimaXClimateBench` with the plain MSE of the reference.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from ..data.epochs import dataset_epochs, validation_batches
from ..engine.checks import ConfigError, config_error
from ..engine.loop import Trainable, to_device
from ..engine.plan import TORCH_LOADERS
from ..engine.run_folder import RunRecord
from ..engine.run_info import RunInfo
from ..engine.task import TaskContext, train_task, validation_mean
from ..files import write_atomic
from ..grid import regular_grid
from .data import ClimateBenchDataset, Scenario, input_statistics, read_scenario
from .model import ClimaXClimateBench

STATS_FILE = "climatebench_stats.json"


def model_args(cfg: DictConfig) -> dict:
    """ClimaX preset arguments for the ClimateBench model (its head is one linear layer)."""
    args = OmegaConf.to_container(cfg.model, resolve=True)
    if args.pop("residual", False):
        raise ConfigError(
            "model.residual=true: ClimateBench's model predicts climate fields from forcings, "
            "not forecasts of its inputs; leave model.residual=false"
        )
    if args.pop("overlapping_head", False):
        raise ConfigError(
            "model.overlapping_head=true: ClimateBench's head maps one summary token to the "
            "whole grid, with no patches to overlap; leave model.overlapping_head=false"
        )
    if args.pop("noise_dim", 0):
        raise ConfigError(
            "model.noise_dim > 0: the stochastic ClimaX is a forecasting model, trained for its "
            "ensembles; leave model.noise_dim=0"
        )
    for key in ("_target_", "decoder_depth", "variables"):
        args.pop(key, None)
    return dict(args, out_variables=list(cfg.task.targets), history=cfg.task.history)


def read_scenarios(cfg: DictConfig, names) -> dict[str, Scenario]:
    """Scenarios on the model grid, errors naming the file and item."""
    lat, lon = regular_grid(tuple(cfg.model.img_size))
    out = {}
    for name in dict.fromkeys(names):
        try:
            out[name] = read_scenario(cfg.data.root, name, (lat, lon), cfg.task.targets, cfg.data.regrid_method)
        except (KeyError, FileNotFoundError, ValueError) as err:
            raise ConfigError(f"data.root={cfg.data.root}: {err.args[0]}") from err
    return out


def windows(cfg: DictConfig) -> tuple[torch.utils.data.Dataset, torch.utils.data.Dataset, tuple]:
    """Training and validation windows (a seeded split, as the reference) and the input statistics."""
    task = cfg.task
    if task.history < 1:
        raise config_error("task.history", task.history, "must be >= 1")
    scenarios = read_scenarios(cfg, list(task.train_scenarios) + ["historical"])
    training = [scenarios[n] for n in task.train_scenarios]
    stats = input_statistics(training)
    try:
        full = ClimateBenchDataset(
            training, task.targets, history=task.history, stats=stats, historical=scenarios["historical"]
        )
    except ValueError as err:
        raise config_error("task.history", task.history, err) from err
    order = np.random.default_rng(cfg.seed).permutation(len(full)).tolist()
    n_val = int(round(task.val_fraction * len(full)))
    train_set, val_set = (torch.utils.data.Subset(full, part) for part in (order[n_val:], order[:n_val]))
    return train_set, val_set, stats


def build_model(cfg: DictConfig) -> ClimaXClimateBench:
    """The model, from ``cfg.init`` when given; the encoder frozen when ``task.freeze_encoder``."""
    args = model_args(cfg)
    if cfg.get("init"):
        return ClimaXClimateBench.from_pretrained(str(cfg.init), freeze=cfg.task.freeze_encoder, **args)
    model = ClimaXClimateBench(**args)
    if cfg.task.freeze_encoder:
        model.freeze_encoder()
    return model


def train(cfg: DictConfig) -> Path:
    """Fit the ClimateBench model the config describes; returns the run folder."""
    return train_task(cfg, climatebench_job, name="climatebench.train", loaders=TORCH_LOADERS)[0]


def climatebench_job(ctx: TaskContext) -> tuple[Trainable, RunRecord]:
    """The ClimateBench task's part (:func:`..engine.task.train_task` does the rest): the windows,
    the model, the plain MSE and its validation over held-out windows, and the run's record."""
    cfg, t = ctx.cfg, ctx.train
    train_set, val_set, stats = windows(cfg)
    model = build_model(cfg)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    ctx.logger.info(
        f"ClimateBench: {len(train_set)} training and {len(val_set)} validation windows of "
        f"{cfg.task.history} years, targets {list(cfg.task.targets)}, {trainable:,} trainable parameters"
    )
    variables = list(model.variables)

    def loss_fn(net, batch):
        return (net(batch["x"], variables) - batch["y"]).square().mean()

    def validate(net):
        batches = validation_batches(val_set, t.batch_size, ctx.rank, ctx.world_size)
        return validation_mean(
            batches,
            lambda batch: {"loss": loss_fn(net, to_device(batch, ctx.device)).item()},  # the MSE
            ctx.manager,
            t.val_batches,
            weight=lambda batch: len(batch["x"]),
        )

    epochs = dataset_epochs(
        train_set, t.batch_size, ctx.rank, ctx.world_size, cfg.seed, t.num_workers, ctx.device.type == "cuda"
    )
    job = Trainable(
        model,
        loss_fn,
        epochs,
        validate if len(val_set) else None,
        fsdp_units=model.blocks,
        grad_checkpointing=model.set_grad_checkpointing,
    )
    saved_stats = json.dumps({"mean": stats[0].tolist(), "std": stats[1].tolist()})
    info = RunInfo(
        task=cfg.task.name, input_statistics=json.loads(saved_stats), data_root=str(Path(cfg.data.root).resolve())
    )
    return job, RunRecord(cfg, info, [lambda folder: write_atomic(folder / STATS_FILE, saved_stats)])
