# SPDX-License-Identifier: Apache-2.0
"""CorrDiff's two training stages on the shared loop (:func:`..engine.task.train_task`).

``model.name`` picks the stage:

* ``regression``: the conditional mean, with PhysicsNeMo's ``RegressionLoss``
  (a CorrDiff UNet or, with ``model.backbone=climax``, ClimaX);
* ``diffusion``: the residual of the frozen regression net
  (``model.regression_checkpoint_path``, checked against the data before the
  first step) with ``ResidualLoss``, on random patches when
  ``model.patch_shape_x/y`` are smaller than the domain.

Losses are averaged over pixels and channels (upstream sums them and divides
by the batch); Adam's update is invariant to that scale, so the recipe's
learning rates carry over.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import DictConfig
from physicsnemo.diffusion.metrics import RegressionLoss, ResidualLoss
from physicsnemo.diffusion.multi_diffusion import RandomPatching2D

from ..data.epochs import dataset_epochs, validation_batches
from ..engine.checks import config_error
from ..engine.loop import Trainable, to_device
from ..engine.plan import TORCH_LOADERS, RunPlan
from ..engine.run_folder import RunRecord
from ..engine.run_info import RunInfo
from ..engine.task import TaskContext, train_task, validation_mean
from . import models, net_files
from .data import build_dataset, validation_spec
from .domain import Domain

STAGES = ("regression", "diffusion")


def check_config(cfg: DictConfig) -> None:
    """``model.name`` is a stage (the engine checks ``train``)."""
    if cfg.model.name not in STAGES:
        raise config_error("model.name", cfg.model.name, f"choose from {list(STAGES)}")


def regression_stage(cfg: DictConfig, domain: Domain, plan: RunPlan) -> tuple[torch.nn.Module, Callable]:
    """The regression net and its loss ``loss_fn(net, batch)``."""
    model, loss = models.build_regression(cfg, domain, plan), RegressionLoss()

    def loss_fn(net, batch):
        x, y = _layout(batch["input"], plan.apex_group_norm), _layout(batch["target"], plan.apex_group_norm)
        return loss(net, y, x).mean()

    return model, loss_fn


def diffusion_stage(
    cfg: DictConfig, domain: Domain, plan: RunPlan, device, sample: dict
) -> tuple[torch.nn.Module, Callable]:
    """The residual diffusion net and its loss, around the frozen regression net."""
    path = cfg.model.get("regression_checkpoint_path")
    if not path:
        raise config_error(
            "model.regression_checkpoint_path",
            path,
            "the diffusion stage needs a trained regression net (.mdlus or its run folder)",
        )
    regression = net_files.load_frozen(
        path, "model.regression_checkpoint_path", domain, device, sample, apex=plan.apex_group_norm
    )  # loaded once, as the plan says
    if net_files.lead_time_steps(regression) is not None:
        raise config_error(
            "model.regression_checkpoint_path",
            path,
            "a lead-time-aware regression net; training a diffusion stage on it is not supported",
        )
    models.set_amp_mode(regression, plan.precision)
    model = models.build_diffusion(cfg, domain, plan)
    loss = ResidualLoss(
        regression,
        P_mean=cfg.model.P_mean,
        P_std=cfg.model.P_std,
        sigma_data=cfg.model.sigma_data,
        hr_mean_conditioning=cfg.model.hr_mean_conditioning,
    )
    shape = models.patch_shape(cfg, domain)
    patching = None if shape is None else RandomPatching2D(domain.shape, shape, cfg.model.patch_num)

    def loss_fn(net, batch):
        x, y = _layout(batch["input"], plan.apex_group_norm), _layout(batch["target"], plan.apex_group_norm)
        if patching is not None:
            patching.reset_patch_indices()  # drawn from the step's seeded generator
        return loss(net, y, x, patching=patching).mean()

    return model, loss_fn


def train(cfg: DictConfig) -> Path:
    """Run (or resume) the stage the config describes; returns the run folder."""
    return fit(cfg)[0]


def fit(cfg: DictConfig):
    """:func:`train`, also returning the trained network."""
    check_config(cfg)
    return train_task(cfg, stage_job, name="corrdiff.train", loaders=TORCH_LOADERS)


def stage_job(ctx: TaskContext) -> tuple[Trainable, RunRecord]:
    """The stage's part (:func:`..engine.task.train_task` does the rest): the datasets, the net
    and its loss, validation on ``validation`` data when given, and the run's record."""
    cfg, t, plan, world = ctx.cfg, ctx.train, ctx.plan, ctx.world_size
    dataset = build_dataset(cfg.dataset)
    domain: Domain = dataset.domain
    val_spec = validation_spec(cfg)
    val_set = build_dataset(val_spec, domain.stats) if val_spec is not None else None
    if len(dataset) < t.batch_size * world:
        raise config_error(
            "train.batch_size", t.batch_size, f"the dataset has only {len(dataset)} samples for {world} rank(s)"
        )
    stage = cfg.model.name
    model, loss_fn = (
        regression_stage(cfg, domain, plan)
        if stage == "regression"
        else diffusion_stage(cfg, domain, plan, ctx.device, dataset[0])
    )
    ctx.logger.info(
        f"{stage} stage: {type(model).__name__}, {sum(p.numel() for p in model.parameters()):,} "
        f"parameters; {len(dataset)} samples {domain.input_channels} -> {domain.output_variables} "
        f"on {domain.shape}"
    )

    def validate(net) -> dict[str, float]:
        batches = validation_batches(val_set, t.batch_size, ctx.rank, world, shuffle=True)
        return validation_mean(
            batches,
            lambda batch: {"loss": loss_fn(net, to_device(batch, ctx.device)).item()},
            ctx.manager,
            t.val_batches,
        )

    epochs = dataset_epochs(dataset, t.batch_size, ctx.rank, world, cfg.seed, t.num_workers, ctx.device.type == "cuda")
    blocks = model.climax.blocks if isinstance(model, models.ClimaXRegression) else ()  # UNets: one FSDP unit
    job = Trainable(
        model,
        loss_fn,
        epochs,
        validate if val_set is not None else None,
        fsdp_units=blocks,
        grad_checkpointing=models.grad_checkpointing(model),
    )
    return job, RunRecord(cfg, RunInfo(task=f"corrdiff_{stage}"), [domain.save])


def _layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
