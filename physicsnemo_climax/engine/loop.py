# SPDX-License-Identifier: Apache-2.0
"""The training loop every task runs: ClimaX forecasting and both CorrDiff stages.

A task hands over its model, a loss ``loss_fn(net, batch) -> scalar``, the
batches of this rank for an epoch and, optionally, a validation function;
the loop does the rest, the same way for all: DDP or FSDP2, AdamW with
warm-up and cosine decay, autocast and GradScaler, gradient accumulation and
clipping, a stop on a non-finite loss, progress, metrics, periodic
validation, atomic checkpoints and resume from the last one (the data
position included, so a resumed run repeats the same batches and dropout
draws).
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Iterable

import torch
from omegaconf import DictConfig

from . import checkpointing, fast_paths
from .distributed import all_reduce_mean


def to_device(batch, device: torch.device):
    """A batch (an object with ``.to``, or a dict of tensors) on ``device``."""
    if isinstance(batch, dict):
        return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
    return batch.to(device)


def run_loop(
    t: DictConfig,
    model: torch.nn.Module,
    loss_fn: Callable[[torch.nn.Module, object], torch.Tensor],
    batches: Callable[[int], Iterable],
    *,
    run_dir: Path,
    manager,
    seed: int,
    logger,
    validate: Callable[[torch.nn.Module], dict[str, float]] | None = None,
    fsdp_units: Iterable[torch.nn.Module] = (),
    batch_size: int | None = None,
) -> torch.nn.Module:
    """Train ``model`` for ``t.steps`` optimizer steps (resuming in ``run_dir/checkpoints``).

    Parameters
    ----------
    t : DictConfig
        The ``train`` section (``conf/train/default.yaml``).
    model : physicsnemo.core.Module
        The model, on its device; the one saved in checkpoints.
    loss_fn : callable
        ``loss_fn(net, batch)``: the scalar loss of a batch (``net`` may be
        the DDP/FSDP/compiled wrapper of ``model``).
    batches : callable
        ``batches(epoch)``: this rank's batches of one epoch, the same on a
        resumed run.
    validate : callable, optional
        ``validate(net)``: scores (averaged over ranks) logged as ``val/*``.
    fsdp_units : iterable of nn.Module
        Submodules sharded on their own under FSDP (the transformer blocks).
    batch_size : int, optional
        Samples per batch on one rank, for the samples/s figure (default ``t.batch_size``).
    """
    device, rank, world = manager.device, manager.rank, manager.world_size
    fused = fast_paths.resolve_fused(t.fused)
    if fused == "apex":
        fast_paths.use_fused_layer_norm(model)
    ckpt_dir = Path(run_dir) / "checkpoints"

    net = model
    if world > 1:
        if t.fsdp:
            from torch.distributed.fsdp import fully_shard

            for unit in fsdp_units:
                fully_shard(unit)
            net = fully_shard(model)
        else:
            net = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None)
    # after sharding: FSDP2 replaces the parameters the optimizer must hold
    optimizer = fast_paths.build_optimizer(model, t.lr, t.weight_decay, t.betas, fused)
    scheduler = fast_paths.build_scheduler(optimizer, t.warmup_steps, t.steps, t.min_lr_ratio)
    scaler = torch.amp.GradScaler(device.type, enabled=t.precision == "fp16")
    step, meta = checkpointing.load(ckpt_dir, model, optimizer, scheduler, scaler, device) if t.resume else (0, {})
    if step:
        logger.info(f"resumed from step {step} in {ckpt_dir}")
    if t.compile:
        net = torch.compile(net)
    logger.info(fast_paths.describe(fused, t.precision, device, t.compile))

    epoch, position = meta.get("epoch", 0), meta.get("position", 0)
    metrics = MetricSink(Path(run_dir), t.tensorboard, t.mlflow) if rank == 0 else None
    progress = _progress(t.steps, step, rank == 0 and t.progress)
    samples = (batch_size or t.batch_size) * t.grad_accum * world
    last_good, accumulated, start = step, 0, time.perf_counter()

    while step < t.steps:
        seen = 0
        for i, batch in enumerate(batches(epoch)):
            seen += 1
            if i < position:  # resumed mid-epoch: skip what was already trained on
                continue
            batch = to_device(batch, device)
            # dropout and noise draws depend on (seed, rank, step) only: a resumed run repeats them
            torch.manual_seed(hash((seed, rank, step, accumulated)) % 2**63)
            sync = nullcontext() if accumulated + 1 == t.grad_accum or not hasattr(net, "no_sync") else net.no_sync()
            with sync, fast_paths.autocast(device, t.precision):
                loss = loss_fn(net, batch) / t.grad_accum
            scaler.scale(loss).backward()
            accumulated += 1
            if accumulated < t.grad_accum:
                continue
            loss_value = all_reduce_mean(loss.detach() * t.grad_accum, manager).item()
            if not math.isfinite(loss_value):
                raise FloatingPointError(
                    f"loss is {loss_value} at step {step + 1}; stopping. The last good checkpoint "
                    f"(step {last_good}) is in {ckpt_dir}")
            scaler.unscale_(optimizer)
            if t.clip_grad:
                torch.nn.utils.clip_grad_norm_(net.parameters(), t.clip_grad)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            step, accumulated, position = step + 1, 0, i + 1
            if progress is not None:
                seconds = time.perf_counter() - start
                progress.set_postfix(loss=f"{loss_value:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}",
                                     samples_s=f"{samples / max(seconds, 1e-9):.1f}")
                progress.update(1)
                start = time.perf_counter()
            if metrics is not None and (step % t.log_every == 0 or step == t.steps):
                metrics.log({"train/loss": loss_value, "train/lr": scheduler.get_last_lr()[0]}, step)
            if validate is not None and (step % t.val_every == 0 or step == t.steps):
                net.eval()
                with torch.no_grad(), fast_paths.autocast(device, t.precision):
                    scores = validate(net)
                net.train()
                logger.info(f"step {step} validation: " + ", ".join(f"{k} {v:.4g}" for k, v in scores.items()))
                if metrics is not None:
                    metrics.log({f"val/{k}": v for k, v in scores.items()}, step)
            if step % t.ckpt_every == 0 or step == t.steps:
                sharded = world > 1 and t.fsdp
                if rank == 0 or sharded:
                    checkpointing.save(ckpt_dir, model, optimizer, scheduler, scaler, step,
                                       {"epoch": epoch, "position": position}, keep=t.keep_checkpoints,
                                       rank=rank, collective=sharded)
                last_good = step
            if step >= t.steps:
                break
        else:  # an accumulation may span the end of an epoch
            if not seen:
                raise ValueError(f"epoch {epoch} has no batches: fewer samples than train.batch_size per rank")
            epoch, position = epoch + 1, 0
    if progress is not None:
        progress.close()
    if metrics is not None:
        metrics.close()
    if world > 1:
        torch.distributed.barrier()
    return model


def _progress(total: int, done: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc="train", unit="step", dynamic_ncols=True, mininterval=1.0)


class MetricSink:
    """Scalars to ``metrics.csv`` and, optionally, TensorBoard and MLflow (rank 0 only)."""

    def __init__(self, run_dir: Path, tensorboard: bool, mlflow: bool):
        self.csv = open(run_dir / "metrics.csv", "a")
        self.writer = self.mlflow = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tensorboard"))
        if mlflow:
            import mlflow as mlflow_module

            mlflow_module.start_run(run_name=run_dir.name)
            self.mlflow = mlflow_module

    def log(self, scores: dict[str, float], step: int) -> None:
        self.csv.writelines(f"{step},{key},{value:.8g}\n" for key, value in scores.items())
        self.csv.flush()
        for key, value in scores.items():
            if self.writer is not None:
                self.writer.add_scalar(key, value, step)
            if self.mlflow is not None:
                self.mlflow.log_metric(key.replace("/", "_"), value, step=step)

    def close(self) -> None:
        self.csv.close()
        if self.writer is not None:
            self.writer.close()
        if self.mlflow is not None:
            self.mlflow.end_run()
