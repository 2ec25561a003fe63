# SPDX-License-Identifier: Apache-2.0
"""The training loop every task runs: ClimaX forecasting, climate projection
and both CorrDiff stages.

A task hands over a :class:`Trainable` (through :func:`.task.train_task`,
which does the setup every task shares): its model, a loss
``loss_fn(net, batch) -> scalar``, its batches of an epoch and, optionally,
a validation function. The loop::

    lock the run folder, check a relaunch against the run it resumes
    net = wrap(model)                       apex LayerNorm, DDP or FSDP2, compile
    resume the newest usable checkpoint     weights, optimizer, data position, samples seen
    write the run's record                  config.yaml, run.json, the task's files
    while step < train.steps:
        loss = train_step(net, grad_accum micro-batches)
        every log_every steps: log;  every val_every: validate, keep the best;  every ckpt_every: checkpoint

Losses stay on the device: the host reads them, and stops on a non-finite
one, every ``log_every`` steps on a GPU (every step on the CPU, where reading
costs nothing), and always before a checkpoint, so no checkpoint holds a
diverged model. Dropout and noise draws depend on ``(seed, rank, step)``
only, and the data position is saved with each checkpoint, so a resumed run
repeats the same batches and draws as an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ConfigError
from . import checkpointing
from .distributed import all_reduce
from .lora import DEFAULT_TARGETS, adapters, add_lora, lora_layers, merged_copy, restore
from .optim import Optimization, freeze
from .plan import RunPlan
from .run_folder import BEST, RunRecord, relaunch_changes, run_lock, write_run_record
from .settings import TrainSettings
from .tracking import TrainingReport
from .wrap import wrap

#: The folder of the best checkpoint, inside ``checkpoints`` (:class:`BestCheckpoint`).
Epochs = Callable[[int], Iterable]
"""``epochs(e)``: this rank's batches of epoch ``e``, the same on a resumed run."""


def to_device(batch, device: torch.device):
    """A batch (an object with ``.to``, or a dict of tensors) on ``device``."""
    if isinstance(batch, dict):
        return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
    return batch.to(device)


@dataclass
class Trainable:
    """What a task hands the loop.

    Attributes
    ----------
    model : physicsnemo.core.Module
        On its device; the module saved in checkpoints.
    loss_fn : callable
        ``loss_fn(net, batch)``: the scalar loss of a batch (``net`` may wrap ``model``).
    epochs : callable
        ``epochs(e)``: this rank's batches of epoch ``e``, the same on a resumed run.
    validate : callable, optional
        ``validate(net)``: scores averaged over ranks, logged as ``val/*``.
    fsdp_units : iterable of nn.Module
        Submodules sharded on their own with ``train.fsdp`` (the transformer blocks).
    grad_checkpointing : callable, optional
        ``grad_checkpointing()``: makes ``model`` recompute its blocks' activations
        in the backward pass (``train.grad_checkpointing``); ``None`` where the
        model cannot, and the key is refused (:func:`.task.use_grad_checkpointing`).
    """

    model: torch.nn.Module
    loss_fn: Callable[[torch.nn.Module, object], torch.Tensor]
    epochs: Epochs
    validate: Callable[[torch.nn.Module], dict[str, float]] | None = None
    fsdp_units: Iterable[torch.nn.Module] = ()
    grad_checkpointing: Callable[[], None] | None = None


def run_loop(
    t: TrainSettings, plan: RunPlan, job: Trainable, record: RunRecord, *, run_dir: Path, manager, seed: int, logger
) -> torch.nn.Module:
    """Train ``job.model`` for ``t.steps`` optimizer steps (``t``: the ``train`` section,
    :class:`.settings.TrainSettings`) as ``plan`` says, in ``run_dir``.

    The folder is locked for the launch; a relaunch is checked against the
    run it resumes (:func:`.run_folder.relaunch_changes`); the task's
    ``record`` is written only after the checkpoint has loaded, so a launch
    that fails before leaves the folder as it was.
    """
    run_dir, device = Path(run_dir), manager.device
    with run_lock(run_dir) if manager.rank == 0 else nullcontext():
        changes = relaunch_changes(run_dir, record, plan)
        adapt(job.model, t, logger)
        net = wrap(job.model, plan, manager, t.fsdp, job.fsdp_units)
        optim = Optimization.build(job.model, t, plan, device)
        step, position, seen = resume(run_dir / "checkpoints", job.model, optim, manager, t.resume, logger)
        if manager.rank == 0:
            write_run_record(run_dir, record, plan, step, changes)
        logger.info(plan.describe(device))
        start = ResumePoint(step, position, seen)
        optimize(t, plan, job, net, optim, start, run_dir=run_dir, manager=manager, seed=seed, logger=logger)
    if manager.world_size > 1:
        torch.distributed.barrier()
    return job.model


def optimize(
    t: TrainSettings,
    plan: RunPlan,
    job: Trainable,
    net,
    optim: Optimization,
    start: ResumePoint,
    *,
    run_dir: Path,
    manager,
    seed: int,
    logger,
) -> None:
    """The steps from ``start`` (a step, its data position, the samples seen) to ``t.steps``:
    train, log, validate, checkpoint."""
    model, device, rank = job.model, manager.device, manager.rank
    step, position = start.step, start.position
    ckpt_dir = run_dir / "checkpoints"
    watch = LossWatch(device, manager, check_every=1 if device.type == "cpu" else t.log_every, last_good=step)
    per_step = t.batch_size * t.grad_accum * manager.world_size  # samples over all ranks
    # a checkpoint saved before samples were counted: its steps are taken at today's samples per step
    seen = step * per_step if start.samples_seen is None else start.samples_seen
    report = TrainingReport(run_dir, t, step=step, samples_per_step=per_step, rank=rank, logger=logger)
    best = BestCheckpoint(ckpt_dir, t.best_metric) if job.validate is not None else None
    stream = micro_batches(job.epochs, *position)

    def due(every: int) -> bool:
        return step % every == 0 or step == t.steps

    try:
        while step < t.steps:
            group = [next(stream) for _ in range(t.grad_accum)]
            batches, draws = [batch for batch, _ in group], (seed, rank, step)
            loss = train_step(net, batches, job.loss_fn, optim, plan, device, draws, t.clip_grad, model.parameters())
            step, position, seen = step + 1, group[-1][1], seen + per_step
            watch.add(loss, step)
            report.step_done()
            if due(watch.check_every) or due(t.ckpt_every):
                watch.check(ckpt_dir)
            if due(t.log_every):
                report.train(step, watch.mean(), optim.lr)
            if job.validate is not None and due(t.val_every):
                scores = run_validation(net, job.validate, plan, device)
                report.validation(step, scores)
                best.offer(step, scores, model, t, manager, logger)
            if due(t.ckpt_every):
                save_checkpoint(ckpt_dir, model, optim, step, position, seen, t, manager)
                watch.last_good = step
    finally:
        stream.close()
        report.close()


def adapt(model, t: TrainSettings, logger) -> None:
    """What of ``model`` trains: LoRA adapters (``train.lora``), frozen patterns (``train.freeze``).
    Before wrapping: DDP must know which parameters have gradients."""
    lora = t.lora
    if lora.rank:
        if t.fsdp:
            raise ConfigError("train.lora with train.fsdp=true is not supported: use DDP (train.fsdp=false)")
        wrapped = add_lora(model, list(lora.targets or DEFAULT_TARGETS), lora.rank, lora.alpha)
        logger.info(f"LoRA rank {lora.rank} on {len(wrapped)} linear layers")
    frozen = freeze(model, list(t.freeze))
    if frozen:
        logger.info(f"{len(frozen)} parameter tensors frozen by train.freeze")


def train_step(
    net,
    batches: list,
    loss_fn,
    optim: Optimization,
    plan: RunPlan,
    device: torch.device,
    seed: tuple[int, int, int],
    clip_grad: float,
    parameters,
) -> torch.Tensor:
    """One optimizer step over ``batches`` (gradient accumulation); returns their mean loss, on the device.

    ``seed`` is ``(seed, rank, step)``: each micro-batch reseeds torch from it
    and its position, so dropout and noise draws are those of any other run.
    Gradients are all-reduced once, on the last micro-batch.
    """
    total = torch.zeros((), device=device)
    for k, batch in enumerate(batches):
        batch = to_device(batch, device)
        torch.manual_seed(hash((*seed, k)) % 2**63)
        last = k == len(batches) - 1
        with nullcontext() if last or not hasattr(net, "no_sync") else net.no_sync():
            with plan.autocast(device):
                loss = loss_fn(net, batch) / len(batches)
            optim.scaler.scale(loss).backward()
        total += loss.detach().float()
    optim.step(parameters, clip_grad)
    return total


def micro_batches(epochs: Epochs, epoch: int = 0, position: int = 0) -> Iterator[tuple[object, tuple[int, int]]]:
    """Batches from ``position`` in ``epoch`` on, epoch after epoch, each with the
    data position after it, ``(epoch, batches done in it)``."""
    while True:
        empty = True
        for i, batch in enumerate(epochs(epoch)):
            empty = False
            if i >= position:  # a resumed run skips what it trained on
                yield batch, (epoch, i + 1)
        if empty:
            raise ConfigError(f"epoch {epoch} has no batches: fewer samples than train.batch_size per rank")
        epoch, position = epoch + 1, 0


def resume(
    ckpt_dir: Path, model, optim: Optimization, manager, enabled: bool, logger
) -> tuple[int, tuple[int, int], int | None]:
    """The step, data position and samples seen of the newest usable checkpoint, restored into
    ``model`` and ``optim``; samples seen is ``None`` for a checkpoint that did not count them.

    Raises
    ------
    ConfigError
        ``train.resume=false`` in a folder holding checkpoints (they would be overwritten).
    """
    if not enabled:
        if checkpointing.checkpoint_steps(ckpt_dir):
            raise ConfigError(
                f"train.resume=false, but {ckpt_dir} holds checkpoints that a new run would "
                "overwrite: resume it, or train into a new run_dir"
            )
        return 0, (0, 0), 0
    plain = merged_copy(model) if lora_layers(model) else model  # checkpoints hold the merged model
    step, meta = checkpointing.load(
        ckpt_dir, plain, optim.optimizer, optim.scheduler, optim.scaler, manager.device, manager.rank
    )
    if step and plain is not model:
        restore(model, plain.state_dict(), meta["lora"])
    if step:
        logger.info(f"resumed from step {step} in {ckpt_dir}")
    return step, (meta.get("epoch", 0), meta.get("position", 0)), (meta.get("samples_seen") if step else 0)


def save_checkpoint(
    ckpt_dir: Path, model, optim: Optimization, step: int, position: tuple[int, int], seen: int, t, manager
) -> None:
    """Checkpoint ``step`` with its data position and the samples ``seen`` over all ranks since
    the run began (rank 0; every rank under FSDP)."""
    sharded = manager.world_size > 1 and t.fsdp
    if manager.rank == 0 or sharded:
        metadata = {"epoch": position[0], "position": position[1], "samples_seen": int(seen)}
        if lora_layers(model):  # the merged, plain model is saved; the adapters go with the training state
            metadata["lora"] = adapters(model)
            model = merged_copy(model)
        checkpointing.save(
            ckpt_dir,
            model,
            optim.optimizer,
            optim.scheduler,
            optim.scaler,
            step,
            metadata,
            keep=t.keep_checkpoints,
            rank=manager.rank,
            collective=sharded,
        )


class BestCheckpoint:
    """The checkpoint of the lowest validation score ``train.best_metric`` so far, in
    ``checkpoints/best``, kept beside the latest ones (never pruned by ``keep_checkpoints``).

    It holds the model file (``{class}.0.{step}.mdlus``, merged where LoRA trains) and a training
    state with the step's score but no optimizer: a model to use, not a point to resume from.
    Written as every checkpoint is (atomically, with checksums), replacing the one before. A
    relaunch reads the best score so far from it.
    """

    def __init__(self, ckpt_dir: Path, metric: str | None):
        self.folder, self.metric = ckpt_dir / BEST, metric
        steps = checkpointing.checkpoint_steps(self.folder) if metric is not None else []
        recorded = checkpointing.saved_metadata(self.folder, steps[-1]) if steps else {}
        self.value = float(recorded.get("best_value", math.inf))

    def offer(self, step: int, scores: dict[str, float], model, t: TrainSettings, manager, logger) -> None:
        """Save ``model`` as the best when its ``scores`` (averaged over ranks, so every rank decides
        alike) beat the best so far; a NaN score never does.

        Raises
        ------
        ConfigError
            When the validation reports no ``train.best_metric``, naming the scores it reports.
        """
        if self.metric is None:
            return
        if self.metric not in scores:
            raise ConfigError(
                f"train.best_metric={self.metric!r}: the validation reports {sorted(scores)}; "
                "give one of them, or null to keep no best checkpoint"
            )
        value = float(scores[self.metric])
        if not value < self.value:
            return
        sharded = manager.world_size > 1 and t.fsdp
        if manager.rank == 0 or sharded:
            plain = merged_copy(model) if lora_layers(model) else model
            metadata = {"best_metric": self.metric, "best_value": value}
            checkpointing.save(self.folder, plain, None, None, None, step, metadata, 1, manager.rank, sharded)
        self.value = value
        logger.info(f"step {step}: best {self.metric} so far ({value:.4g}), kept in {self.folder}")


def run_validation(net, validate, plan: RunPlan, device) -> dict[str, float]:
    """``validate(net)`` in eval mode, without gradients, under the plan's autocast."""
    net.eval()
    with torch.no_grad(), plan.autocast(device):
        scores = validate(net)
    net.train()
    return scores


@dataclass(frozen=True)
class ResumePoint:
    """Where a launch starts: the optimizer ``step``, the data ``position`` ``(epoch, batches done)``
    and the training samples seen over all ranks (``None``: not recorded by the checkpoint)."""

    step: int
    position: tuple[int, int]
    samples_seen: int | None


class LossWatch:
    """The training loss kept on the device: summed for the log, watched for
    non-finite values, read by the host only when asked."""

    def __init__(self, device: torch.device, manager, check_every: int, last_good: int = 0):
        self.manager, self.check_every, self.last_good = manager, check_every, last_good
        self.total = torch.zeros((), device=device, dtype=torch.float64)
        self.count = 0
        self.first_bad = torch.full((), math.inf, device=device)  # step of the first non-finite loss
        self.bad_value = torch.zeros((), device=device)

    def add(self, loss: torch.Tensor, step: int) -> None:
        self.total += loss
        self.count += 1
        bad = ~torch.isfinite(loss) & torch.isinf(self.first_bad)
        self.first_bad = torch.where(bad, torch.full_like(self.first_bad, step), self.first_bad)
        self.bad_value = torch.where(bad, loss, self.bad_value)

    def check(self, ckpt_dir: Path) -> None:
        """Raise ``FloatingPointError`` if any rank saw a non-finite loss."""
        first = all_reduce(self.first_bad.clone(), self.manager, torch.distributed.ReduceOp.MIN).item()
        if math.isfinite(first):
            value = self.bad_value.item() if math.isfinite(self.first_bad.item()) else "not finite (on another rank)"
            raise FloatingPointError(
                f"loss is {value} at step {int(first)}; stopping. The last good checkpoint "
                f"(step {self.last_good}) is in {ckpt_dir}"
            )

    def mean(self) -> float:
        """Mean loss over the steps and ranks since the last call."""
        total = all_reduce(self.total.clone(), self.manager).item() / max(self.count * self.manager.world_size, 1)
        self.total.zero_()
        self.count = 0
        return total
