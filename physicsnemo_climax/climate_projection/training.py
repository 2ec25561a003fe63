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
from physicsnemo.utils.logging import PythonLogger, RankZeroLoggingWrapper

from ..data.epochs import dataset_epochs
from ..data.loader import partition
from ..engine.checks import ConfigError, check_train, config_error, split_batch
from ..engine.distributed import all_reduce_mean, setup_distributed
from ..engine.loop import Trainable, run_loop, to_device
from ..engine.plan import TORCH_LOADERS, resolve
from ..engine.run_folder import RunRecord
from ..files import write_atomic
from ..grid import regular_grid
from .data import ClimateBenchDataset, Scenario, input_statistics, read_scenario
from .model import ClimaXClimateBench

STATS_FILE = "climatebench_stats.json"


def model_args(cfg: DictConfig) -> dict:
    """ClimaX preset arguments for the ClimateBench model (its head is one linear layer)."""
    args = OmegaConf.to_container(cfg.model, resolve=True)
    if args.pop("residual", False):
        raise ConfigError("model.residual=true: ClimateBench's model predicts climate fields from forcings, "
                          "not forecasts of its inputs; leave model.residual=false")
    if args.pop("overlapping_head", False):
        raise ConfigError("model.overlapping_head=true: ClimateBench's head maps one summary token to the "
                          "whole grid, with no patches to overlap; leave model.overlapping_head=false")
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
        full = ClimateBenchDataset(training, task.targets, task.history, stats, scenarios["historical"])
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
    check_train(cfg.train)
    plan = resolve(cfg, loaders=TORCH_LOADERS)
    manager = setup_distributed()
    split_batch(cfg.train, manager.world_size)  # train.total_batch_size, train.training_duration
    device, rank, world, t = manager.device, manager.rank, manager.world_size, cfg.train
    logger = RankZeroLoggingWrapper(PythonLogger("climatebench.train"), manager)
    torch.manual_seed(cfg.seed)
    train_set, val_set, stats = windows(cfg)
    model = build_model(cfg).to(device)
    run_dir = Path(cfg.run_dir)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info(f"ClimateBench: {len(train_set)} training and {len(val_set)} validation windows of "
                f"{cfg.task.history} years, targets {list(cfg.task.targets)}, {trainable:,} trainable parameters")
    variables = list(model.variables)

    def loss_fn(net, batch):
        return (net(batch["x"], variables) - batch["y"]).square().mean()

    def validate(net):
        picks = partition(len(val_set), rank, world, shuffle=False)
        total, count = 0.0, 0
        mine = torch.utils.data.Subset(val_set, picks.tolist())
        for batch in torch.utils.data.DataLoader(mine, batch_size=t.batch_size):
            total += loss_fn(net, to_device(batch, device)).item() * len(batch["x"])
            count += len(batch["x"])
        return {"mse": all_reduce_mean(torch.tensor(total / max(count, 1)), manager).item()}

    epochs = dataset_epochs(train_set, t.batch_size, rank, world, cfg.seed, t.num_workers, device.type == "cuda")
    job = Trainable(model, loss_fn, epochs, validate if len(val_set) else None, fsdp_units=model.blocks)
    saved_stats = json.dumps({"mean": stats[0].tolist(), "std": stats[1].tolist()})
    info = {"task": cfg.task.name, "input_statistics": json.loads(saved_stats),
            "data_root": str(Path(cfg.data.root).resolve())}
    record = RunRecord(cfg, info,
                       [lambda folder: write_atomic(folder / STATS_FILE, saved_stats)])
    run_loop(t, plan, job, record, run_dir=run_dir, manager=manager, seed=cfg.seed, logger=logger)
    return run_dir
