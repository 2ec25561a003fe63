# SPDX-License-Identifier: Apache-2.0
"""Climate projection on ClimateBench (``task=climatebench``) on the shared loop.

Training reads the training scenarios (SSP runs take their first years'
history from ``historical``), normalizes the inputs with their statistics,
holds out a seeded fraction of the windows for validation, and fits
:class:`~physicsnemo_climax.models.climatebench.ClimaXClimateBench` with the
plain MSE of the reference. Evaluation predicts the test scenario, scores the
whole ``eval_years`` period at once with ClimateBench's NRMSEs, next to a
linear pattern-scaling baseline, and draws the period-mean maps.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from physicsnemo.utils.logging import PythonLogger, RankZeroLoggingWrapper

from ..data.climatebench import ClimateBenchDataset, Scenario, input_statistics, read_scenario
from ..data.loader import epoch_batches, partition
from ..doctor import TORCH_LOADERS, resolve
from ..grid import regular_grid
from ..metrics import climatebench_nrmse
from ..models.climatebench import ClimaXClimateBench
from .distributed import all_reduce_mean, setup_distributed
from .loop import run_loop, to_device
from .trainer import ConfigError, check_train, config_error

STATS_FILE = "climatebench_stats.json"


def model_args(cfg: DictConfig) -> dict:
    """ClimaX preset arguments for the ClimateBench model (its head is one linear layer)."""
    args = OmegaConf.to_container(cfg.model, resolve=True)
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


def pattern_scaling(train: list[Scenario], test: Scenario, target: str) -> np.ndarray:
    """Linear pattern scaling: per cell, ``y = a + b CO2 + c CH4`` fitted by least squares
    on the training scenarios' yearly global-mean CO2 and CH4; returns ``[T_test, H, W]``."""
    def design(s):  # CO2, CH4 are global: any cell holds them
        return np.stack([np.ones(len(s.years)), s.inputs[:, 0, 0, 0], s.inputs[:, 2, 0, 0]], axis=1).astype(np.float64)

    a = np.concatenate([design(s) for s in train])
    y = np.concatenate([s.outputs[target].reshape(len(s.years), -1) for s in train]).astype(np.float64)
    coef, *_ = np.linalg.lstsq(a, y, rcond=None)
    return (design(test) @ coef).reshape(len(test.years), *test.outputs[target].shape[1:]).astype(np.float32)


def train(cfg: DictConfig) -> Path:
    """Fit the ClimateBench model the config describes; returns the run folder."""
    check_train(cfg.train, loaders=TORCH_LOADERS)
    cfg = resolve(cfg)
    manager = setup_distributed()
    device, rank, world = manager.device, manager.rank, manager.world_size
    logger = RankZeroLoggingWrapper(PythonLogger("climatebench.train"), manager)
    t, task = cfg.train, cfg.task
    if task.history < 1:
        raise config_error("task.history", task.history, "must be >= 1")
    torch.manual_seed(cfg.seed)
    scenarios = read_scenarios(cfg, list(task.train_scenarios) + ["historical"])
    training = [scenarios[n] for n in task.train_scenarios]
    stats = input_statistics(training)
    try:
        full = ClimateBenchDataset(training, task.targets, task.history, stats, scenarios["historical"])
    except ValueError as err:
        raise config_error("task.history", task.history, err) from err
    order = np.random.default_rng(cfg.seed).permutation(len(full)).tolist()  # windows, as the reference
    n_val = int(round(task.val_fraction * len(full)))
    train_set, val_set = (torch.utils.data.Subset(full, part) for part in (order[n_val:], order[:n_val]))

    args = model_args(cfg)
    if cfg.get("init"):
        model = ClimaXClimateBench.from_pretrained(str(cfg.init), freeze=task.freeze_encoder, **args)
    else:
        model = ClimaXClimateBench(**args)
        if task.freeze_encoder:
            model.freeze_encoder()
    model.to(device)
    run_dir = Path(cfg.run_dir)
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
        (run_dir / STATS_FILE).write_text(json.dumps({"mean": stats[0].tolist(), "std": stats[1].tolist()}))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info(f"ClimateBench: {len(train_set)} training and {len(val_set)} validation windows of "
                f"{task.history} years, targets {list(task.targets)}, {trainable:,} trainable parameters")

    variables = list(model.variables)

    def loss_fn(net, batch):
        return (net(batch["x"], variables) - batch["y"]).square().mean()

    def validate(net):
        picks = partition(len(val_set), rank, world, shuffle=False)
        total, count = 0.0, 0
        for batch in torch.utils.data.DataLoader(torch.utils.data.Subset(val_set, picks.tolist()), batch_size=t.batch_size):
            total += loss_fn(net, to_device(batch, device)).item() * len(batch["x"])
            count += len(batch["x"])
        return {"mse": all_reduce_mean(torch.tensor(total / max(count, 1)), manager).item()}

    run_loop(t, model, loss_fn, epoch_batches(train_set, t.batch_size, rank, world, cfg.seed, t.num_workers),
             run_dir=run_dir, manager=manager, seed=cfg.seed, logger=logger,
             validate=validate if len(val_set) else None, fsdp_units=model.blocks)
    return run_dir


@torch.no_grad()
def evaluate(cfg: DictConfig) -> pd.DataFrame:
    """NRMSE table (model and pattern scaling) on ``task.test_scenario`` over ``task.eval_years``, with maps."""
    from physicsnemo.core import Module

    from . import checkpointing

    task = cfg.task
    run_dir = Path(cfg.run_dir)
    model = Module.from_checkpoint(str(checkpointing.model_file(run_dir / "checkpoints"))).eval()
    saved = json.loads((run_dir / STATS_FILE).read_text())
    stats = (np.array(saved["mean"], np.float32), np.array(saved["std"], np.float32))
    scenarios = read_scenarios(cfg, [task.test_scenario, "historical", *task.train_scenarios])
    test = scenarios[task.test_scenario]
    first, last = task.eval_years
    period = (test.years >= first) & (test.years <= last)
    if not period.any():
        raise config_error("task.eval_years", list(task.eval_years),
                           f"outside the test years {test.years[0]}..{test.years[-1]}")
    data = ClimateBenchDataset([test], task.targets, task.history, stats, scenarios["historical"])
    wanted = [i for i, (_, _, year) in enumerate(data.index) if first <= year <= last]
    x = torch.stack([data[i]["x"] for i in wanted])
    # all years of the period are predicted before scoring: the NRMSEs see the whole period at once
    pred = torch.cat([model(chunk, model.variables) for chunk in x.split(cfg.eval.batch_size)]).numpy()
    rows, maps = [], {}
    train = [scenarios[n] for n in task.train_scenarios]
    for k, target in enumerate(task.targets):
        truth = test.outputs[target][period]
        baseline = pattern_scaling(train, test, target)[period]
        for method, field in (("climax", pred[:, k]), ("pattern_scaling", baseline)):
            rows.append({"method": method, "target": target, **climatebench_nrmse(field, truth, test.lat)})
        maps[target] = (truth.mean(0), pred[:, k].mean(0), baseline.mean(0))
    table = pd.DataFrame(rows)
    out = Path(cfg.eval.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "climatebench.csv", index=False)
    (out / "climatebench.json").write_text(json.dumps(
        {"test_scenario": task.test_scenario, "years": [first, last], "rows": rows}, indent=1))
    _plot_maps(maps, test.lat, test.lon, f"{task.test_scenario} {first}-{last} mean", out / "climatebench_maps.png")
    return table


def _plot_maps(maps: dict, lat, lon, title: str, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 2.6 * len(maps)), layout="constrained")
    axes = fig.subplots(len(maps), 4, squeeze=False)
    for row, (target, (truth, model, baseline)) in zip(axes, maps.items()):
        lo, hi = min(a.min() for a in (truth, model, baseline)), max(a.max() for a in (truth, model, baseline))
        for ax, field, name in zip(row, (truth, model, baseline), ("truth", "ClimaX", "pattern scaling")):
            image = ax.pcolormesh(lon, lat, field, vmin=lo, vmax=hi, cmap="RdBu_r" if lo < 0 < hi else "viridis")
            ax.set_title(f"{target}: {name}", fontsize=9)
        fig.colorbar(image, ax=row[:3], shrink=0.8)
        err = model - truth
        bound = float(np.abs(err).max()) or 1.0
        image = row[3].pcolormesh(lon, lat, err, vmin=-bound, vmax=bound, cmap="RdBu_r")
        row[3].set_title(f"{target}: ClimaX - truth", fontsize=9)
        fig.colorbar(image, ax=row[3], shrink=0.8)
    fig.suptitle(title)
    fig.savefig(path, dpi=90)
