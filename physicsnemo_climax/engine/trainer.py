# SPDX-License-Identifier: Apache-2.0
"""The one training engine behind every ClimaX task.

Tasks (pretraining with random leads on several sources, global, regional
and rollout fine-tuning) differ only in their Hydra config (``conf/task``);
this module reads the config, builds data and model, checks the config, and
hands a latitude-weighted MSE to the shared loop (:mod:`.loop`), which also
runs both CorrDiff stages.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from physicsnemo.utils.logging import PythonLogger, RankZeroLoggingWrapper

from ..data import ClimaXShardReader, ForecastBatches, ShardStore, StoreError, make_loader
from ..data.dali import forecast_loader
from ..doctor import LOADERS, resolve
from ..metrics import rmse, weighted_mse_loss
from ..models import ClimaX
from ..models.checkpoint import per_variable_keys, read_pretrained, transfer_variable_weights
from ..models.variables import CONSTANTS
from . import fast_paths
from .distributed import all_reduce_mean, setup_distributed
from .loop import run_loop
from .rollout import forecast_steps
from .run import RUN_INFO


class ConfigError(ValueError):
    """A configuration value that cannot work; raised before training starts."""


def config_error(key: str, value, why) -> ConfigError:
    return ConfigError(f"{key}={value!r}: {why}")


# ---------------------------------------------------------------- building
def build_sources(cfg: DictConfig, split: str) -> list[ClimaXShardReader]:
    """Readers of the task's sources: ``data`` and, for pretraining, ``data.extra_sources``."""
    task = cfg.task
    specs = [cfg.data] + list(cfg.data.get("extra_sources") or [])
    readers = []
    for i, spec in enumerate(specs):
        key = "data" if i == 0 else f"data.extra_sources[{i - 1}]"
        try:
            variables = list(spec.variables) if spec.get("variables") else None
            out_variables = list(spec.out_variables) if spec.get("out_variables") else None
            if out_variables is None:  # every non-constant input (needed for rollouts)
                inputs = variables or ShardStore(spec.root, spec.get("hours_per_step")).variables(split)
                out_variables = [v for v in inputs if v not in CONSTANTS]
            readers.append(ClimaXShardReader(
                spec.root, split, variables=variables, out_variables=out_variables,
                lead_hours=task.lead_hours,
                lead_range=tuple(task.lead_range or (6, 168)),
                lead_step=task.lead_step,
                rollout_steps=task.rollout_steps,
                hours_per_step=spec.get("hours_per_step"),
            ))
        except StoreError as err:  # names the store and the variables
            raise ConfigError(f"{key}: {err}") from err
        except ValueError as err:
            raise ConfigError(
                f"task.lead_hours={task.lead_hours}, task.lead_range={list(task.lead_range or [])}, "
                f"task.rollout_steps={task.rollout_steps}: {err}") from err
    return readers


def model_variables(readers: list[ClimaXShardReader]) -> list[str]:
    """All variables of all sources, in first-seen order."""
    return list(dict.fromkeys(v for r in readers for v in r.variables + r.out_variables))


def build_model(cfg: DictConfig, readers: list[ClimaXShardReader]) -> ClimaX:
    """ClimaX for the data's grid and variables, optionally initialised from ``cfg.init``."""
    store = readers[0].store
    args = OmegaConf.to_container(cfg.model, resolve=True)
    args.pop("_target_", None)
    args.update(variables=model_variables(readers), img_size=list(store.grid),
                lat=store.lat.tolist(), lon=store.lon.tolist())
    if cfg.get("init"):
        return load_pretrained(str(cfg.init), args)
    return ClimaX(**args)


def load_pretrained(path: str, args: dict) -> ClimaX:
    """A model with ``args`` holding the weights of an ``.mdlus`` or an official ``.ckpt``.

    Variables the checkpoint lacks keep their fresh initialisation (their
    token embeddings, variable embeddings and head rows); everything else
    must fit, or the mismatched keys are listed.
    """
    model = ClimaX(**args)
    source = read_pretrained(path, args.get("num_heads", 16))
    state, own = source.state_dict(), model.state_dict()
    head = f"head.{len(model.head) - 1}"
    shared = transfer_variable_weights(own, model.variables, state, source.variables, model.patch_size, head)
    if not shared:
        raise ConfigError(f"init={path}: no variable in common with the data ({model.variables})")
    skip = per_variable_keys(head)
    misfit = {k: (tuple(v.shape), tuple(own[k].shape)) for k, v in state.items()
              if not k.startswith(skip) and k in own and k != "pos_embed" and v.shape != own[k].shape}
    missing = [k for k in own if not k.startswith(skip) and k not in state]
    if misfit or missing:
        raise ValueError(f"init={path} does not fit the configured model: mis-shaped "
                         f"(checkpoint, model) {misfit}, missing {missing}")
    own.update({k: v for k, v in state.items() if not k.startswith(skip)})
    model.load_state_dict(own)  # resamples pos_embed for another grid
    return model


def check_train(t: DictConfig, loaders=LOADERS) -> None:
    """Errors naming key and value in the loop's ``train`` section (every task)."""
    for key in ("steps", "batch_size", "grad_accum"):
        if t[key] < 1:
            raise config_error(f"train.{key}", t[key], "must be >= 1")
    if t.precision not in fast_paths.PRECISIONS:
        raise config_error("train.precision", t.precision, f"choose from {list(fast_paths.PRECISIONS)}")
    if t.loader not in loaders:
        raise config_error("train.loader", t.loader, f"this task reads with {list(loaders)}")


def check_config(cfg: DictConfig, model: ClimaX, readers: list[ClimaXShardReader]) -> None:
    """Errors naming key and value, before any training step."""
    check_train(cfg.train)
    if cfg.task.region is not None:
        try:
            model.select_region(cfg.task.region if isinstance(cfg.task.region, str)
                                else tuple(cfg.task.region))
        except (KeyError, ValueError) as err:
            raise config_error("task.region", cfg.task.region, err) from err
    for reader in readers:
        unknown = [v for v in reader.out_variables if v not in model.variables]
        if unknown:
            raise config_error("data.out_variables", unknown, "not variables of the model")
    if cfg.task.rollout_steps > 1 and cfg.task.region is not None:
        raise config_error("task.region", cfg.task.region, "rollout training is global only")
    if cfg.task.rollout_steps > 1:
        for reader in readers:
            if not set(reader.out_variables) >= {v for v in reader.variables if v not in CONSTANTS}:
                raise config_error("data.out_variables", reader.out_variables,
                                   "rollout training feeds predictions back: predict every non-constant input")


def write_run_info(run_dir: Path, cfg: DictConfig, readers: list[ClimaXShardReader], model: ClimaX) -> None:
    """What evaluation and the forecast API need besides the weights."""
    store = readers[0].store
    names = model.variables
    stats = {}
    for reader in readers:
        for v, m, s in zip(reader.variables, *reader.stats["x"]):
            stats[v] = {"mean": float(m), "std": float(s)}
        for v, m, s in zip(reader.out_variables, *reader.stats["y"]):
            stats[v] = {"mean": float(m), "std": float(s)}
    info = {
        "variables": readers[0].variables, "out_variables": readers[0].out_variables,
        "model_variables": names, "statistics": stats,
        "units": (store.manifest or {}).get("units", {}),
        "lat": store.lat.tolist(), "lon": store.lon.tolist(),
        "hours_per_step": store.hours_per_step,
        "lead_hours": cfg.task.lead_hours,
        "max_lead_hours": cfg.task.lead_hours or max(cfg.task.lead_range),
        "data_root": str(store.root), "region": OmegaConf.to_object(cfg.task).get("region"),
    }
    (run_dir / RUN_INFO).write_text(json.dumps(info, indent=1))


# ---------------------------------------------------------------- the loop
def region_crop(model: ClimaX, region):
    """Function cropping targets and latitudes to the task's region (identity if global)."""
    if region is None:
        return (lambda y: y), torch.as_tensor(model.lat, dtype=torch.float32)
    selection = model.select_region(region if isinstance(region, str) else tuple(region))
    rows, cols = selection.pixel_index(model.patch_size)
    lat = torch.as_tensor(model.lat, dtype=torch.float32)[rows]
    return (lambda y: y[..., rows.to(y.device), :][..., cols.to(y.device)]), lat


def forecast_loss(model, batch, lat, crop, region) -> torch.Tensor:
    """Latitude-weighted MSE; rollout targets ``[B, S, V, H, W]`` are chained."""
    if batch.y.ndim == 4:
        pred = model(batch.x, batch.lead_time, batch.variables, batch.out_variables, region=region)
        return weighted_mse_loss(pred, crop(batch.y), lat)
    steps = batch.y.shape[1]
    preds = forecast_steps(model, batch.x, batch.variables, batch.out_variables, [batch.lead_time] * steps)
    return sum(weighted_mse_loss(p, batch.y[:, k], lat) for k, p in enumerate(preds)) / steps


def train(cfg: DictConfig) -> Path:
    """Run (or resume) the training the config describes; returns the run folder."""
    if cfg.task.name == "climatebench":
        from .climatebench import train as train_climatebench

        return train_climatebench(cfg)
    return fit(cfg)[0]


def fit(cfg: DictConfig) -> tuple[Path, ClimaX]:
    """:func:`train`, also returning this rank's trained model."""
    cfg = resolve(cfg)
    manager = setup_distributed()
    device, rank, world = manager.device, manager.rank, manager.world_size
    logger = RankZeroLoggingWrapper(PythonLogger("climax.train"), manager)
    t = cfg.train
    if t.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank (FSDP shards them as they are)

    readers = build_sources(cfg, "train")
    val_readers = build_sources(cfg, "val") if cfg.data.get("val", True) else []
    model = build_model(cfg, readers)
    check_config(cfg, model, readers)
    region = cfg.task.region if cfg.task.region is None or isinstance(cfg.task.region, str) else tuple(cfg.task.region)
    crop, lat = region_crop(model, region)
    lat = lat.to(device)
    model.to(device)
    if t.grad_checkpointing:
        model.set_grad_checkpointing()
    run_dir = Path(cfg.run_dir)
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_run_info(run_dir, cfg, readers, model)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))

    batches = ForecastBatches(readers, t.batch_size, rank, world, seed=cfg.seed)
    dali = []  # one DALI pipeline for the whole run: it counts the epochs on from the first

    def epoch_batches(epoch: int):
        if t.loader.startswith("dali"):
            if not dali:
                device_id = device.index if t.loader == "dali_gpu" else None
                dali.append(forecast_loader(batches, True, device_id, t.num_workers, first_epoch=epoch))
            return dali[0]
        batches.set_epoch(epoch)
        return make_loader(batches, t.num_workers, t.loader)

    def validation(net) -> dict[str, float]:
        return validate(net, val_readers, t, device, cfg.seed, lat, crop, region, manager)

    run_loop(t, model, lambda net, batch: forecast_loss(net, batch, lat, crop, region), epoch_batches,
             run_dir=run_dir, manager=manager, seed=cfg.seed, logger=logger,
             validate=validation if val_readers else None, fsdp_units=model.blocks)
    return run_dir, model


def validate(net, readers, t, device, seed, lat, crop, region, manager) -> dict[str, float]:
    """Validation loss and RMSE (normalized units) of each output variable, over ``t.val_batches``."""
    batches = ForecastBatches(readers, t.batch_size, manager.rank, manager.world_size, seed=seed,
                              shuffle=False, even=True)
    totals: dict[str, float] = {}
    count = 0
    backend = "processes" if t.loader == "processes" else "threads"  # a few batches: no DALI pipeline
    for i, batch in enumerate(make_loader(batches, t.num_workers, backend)):
        if i >= t.val_batches:
            break
        batch = batch.to(device)
        totals["loss"] = totals.get("loss", 0.0) + forecast_loss(net, batch, lat, crop, region).item()
        if batch.y.ndim == 4:
            pred = net(batch.x, batch.lead_time, batch.variables, batch.out_variables, region=region)
            for v, score in zip(batch.out_variables, rmse(pred.float(), crop(batch.y), lat)):
                totals[f"rmse/{v}"] = totals.get(f"rmse/{v}", 0.0) + score.item()
        count += 1
    return {k: all_reduce_mean(torch.tensor(v / max(count, 1)), manager).item() for k, v in totals.items()}
