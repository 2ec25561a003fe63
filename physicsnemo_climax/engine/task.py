# SPDX-License-Identifier: Apache-2.0
"""A task on the shared loop: the setup every task shares, done here once.

A task package hands :func:`train_task` a builder, ``build(ctx)``, that reads
its data and returns its :class:`~.loop.Trainable` (model, loss, epochs,
validation, FSDP units, gradient checkpointing) and its
:class:`~.run_folder.RunRecord`. Everything around it is the same for every
task, ClimaX and CorrDiff::

    check the train section                 train.steps, train.lr, ... (before anything runs)
    plan = resolve(cfg)                     precision, kernels, loader, compile
    ranks: setup_distributed, split_batch   train.total_batch_size, train.training_duration
    train.deterministic on for the run      restored afterwards
    torch.manual_seed(cfg.seed)             the same initial weights on every rank
    job, record = build(ctx)                the task's part
    model to the device                     channels-last for apex GroupNorm
    train.grad_checkpointing                the task's switch, or refused by name
    run_loop(...)

:func:`validation_mean` is the validation average the tasks share.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig
from physicsnemo.utils.logging import PythonLogger, RankZeroLoggingWrapper

from ..errors import ConfigError
from .checks import check_train, split_batch
from .distributed import all_reduce_mean, setup_distributed
from .loop import Trainable, run_loop
from .plan import LOADERS, RunPlan, resolve
from .run_folder import RunRecord
from .settings import TrainSettings


@dataclass(frozen=True)
class TaskContext:
    """What the engine hands a task's builder.

    Attributes
    ----------
    cfg : DictConfig
        The composed config; ``cfg.train`` already split over the ranks.
    train : TrainSettings
        ``cfg.train`` as typed settings: what the task reads of it.
    plan : RunPlan
        What runs here (:func:`.plan.resolve`).
    manager : DistributedManager
        This rank, the world size and the device.
    logger : RankZeroLoggingWrapper
        Logs on rank 0 only.
    """

    cfg: DictConfig
    train: TrainSettings
    plan: RunPlan
    manager: object
    logger: object

    @property
    def device(self) -> torch.device:
        return self.manager.device

    @property
    def rank(self) -> int:
        return self.manager.rank

    @property
    def world_size(self) -> int:
        return self.manager.world_size


TaskBuilder = Callable[[TaskContext], tuple[Trainable, RunRecord]]
"""``build(ctx)``: a task's data, model, loss and validation, and its record."""


def train_task(
    cfg: DictConfig,
    build: TaskBuilder,
    *,
    name: str,
    loaders: tuple[str, ...] = LOADERS,
    losses: tuple[str, ...] = ("mse",),
) -> tuple[Path, torch.nn.Module]:
    """Run (or resume) the training ``cfg`` describes, the task's part built by ``build``.

    Parameters
    ----------
    cfg : DictConfig
        The composed config: ``train``, ``seed``, ``run_dir`` and the task's sections.
    build : TaskBuilder
        Given the :class:`TaskContext`, the task's :class:`~.loop.Trainable` and record.
    name : str
        The logger's name (``climax.train``, ...).
    loaders : tuple of str
        The ``train.loader`` values the task reads with (:data:`.plan.LOADERS`).
    losses : tuple of str
        The ``train.loss`` values the task trains with (:data:`.checks.LOSSES`).

    Returns
    -------
    (Path, torch.nn.Module)
        The run folder and this rank's trained model.

    Raises
    ------
    ConfigError
        Naming the key, for a ``train`` value out of range or an ask the task cannot honour.
    """
    check_train(cfg.train)
    if cfg.train.loss not in losses:
        raise ConfigError(
            f"train.loss={cfg.train.loss}: the {name} task trains with {' or '.join(losses)} "
            "(the CRPS of members is ClimaX forecasting's)"
        )
    plan = resolve(cfg, loaders=loaders)
    manager = setup_distributed()
    split_batch(cfg.train, manager.world_size)  # config.yaml records the split, as it ran
    t = TrainSettings.from_config(cfg.train)
    logger = RankZeroLoggingWrapper(PythonLogger(name), manager)
    with deterministic_algorithms(t.deterministic):
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank (FSDP shards them as they are)
        job, record = build(TaskContext(cfg, t, plan, manager, logger))
        layout = torch.channels_last if plan.apex_group_norm else torch.preserve_format
        job.model.to(manager.device, memory_format=layout)
        if t.grad_checkpointing:
            use_grad_checkpointing(job, record.info.task or name)
        run_dir = Path(cfg.run_dir)
        run_loop(t, plan, job, record, run_dir=run_dir, manager=manager, seed=cfg.seed, logger=logger)
    return run_dir, job.model


@contextmanager
def deterministic_algorithms(enabled: bool):
    """``train.deterministic``: deterministic kernels for the run, the previous settings restored after.

    On: torch's deterministic algorithms (a warning, not an error, for an op
    that has none), cuDNN's deterministic convolutions without autotuning
    (autotuning may pick another algorithm each run), and the fixed cuBLAS
    workspace that deterministic cuBLAS needs (set for the process, unless
    already set). Off: nothing changes.
    """
    if not enabled:
        yield
        return
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]


def use_grad_checkpointing(job: Trainable, task: str) -> None:
    """``train.grad_checkpointing=true``: the task's switch, or refused when its model has none.

    Raises
    ------
    ConfigError
        Naming ``train.grad_checkpointing``, the task and its model.
    """
    if job.grad_checkpointing is None:
        raise ConfigError(
            f"train.grad_checkpointing=true: the {task} model ({type(job.model).__name__}) has no "
            "gradient checkpointing; set train.grad_checkpointing=false"
        )
    job.grad_checkpointing()


def validation_mean(
    batches: Iterable,
    score: Callable[[object], dict[str, float]],
    manager,
    limit: int | None = None,
    weight: Callable[[object], float] | None = None,
) -> dict[str, float]:
    """The scores of this rank's validation batches, averaged, then averaged over ranks.

    Parameters
    ----------
    batches : iterable
        This rank's validation batches; the first ``limit`` are scored (all for ``None``).
    score : callable
        ``score(batch) -> {name: value}``; a name missing from a batch counts 0 there.
    manager : DistributedManager
    limit : int, optional
        ``train.val_batches``.
    weight : callable, optional
        ``weight(batch)``: the batch's share of the mean (default 1 each; the
        sample count gives the mean over samples).
    """
    totals: dict[str, float] = {}
    count = 0.0
    for batch in itertools.islice(batches, limit):
        w = 1.0 if weight is None else float(weight(batch))
        for key, value in score(batch).items():
            totals[key] = totals.get(key, 0.0) + value * w
        count += w
    return {k: all_reduce_mean(torch.tensor(v / (count or 1.0)), manager).item() for k, v in totals.items()}
