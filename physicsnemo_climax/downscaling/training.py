# SPDX-License-Identifier: Apache-2.0
"""CorrDiff's two training stages on the shared loop (:func:`..engine.task.train_task`).

``model.name`` picks the stage:

* ``regression``: the conditional mean, by the mean squared error of the
  net's output (a CorrDiff UNet or, with ``model.backbone=climax``, ClimaX);
  PhysicsNeMo's current diffusion API has no regression loss, and its legacy
  ``RegressionLoss`` is that error with weight 1;
* ``diffusion``: the residual of the frozen regression net
  (``model.regression_checkpoint_path``, checked against the data before the
  first step), denoised with PhysicsNeMo's current ``MSEDSMLoss`` under an
  ``EDMNoiseScheduler`` (log-normal noise levels ``P_mean``, ``P_std``, EDM's
  weight with ``sigma_data``): the legacy ``ResidualLoss``'s draws and
  weights, tested equal to it; on random patches when
  ``model.patch_shape_x/y`` are smaller than the domain.

Validation runs on ``validation``'s data or, without them, on the last
``holdout`` fraction of the training samples, held out of training
(:func:`training_sets`); the engine keeps the checkpoint of the lowest
validation loss in ``checkpoints/best``.

The diffusion net is called through its own (file) class's forward, which
applies the EDM preconditioner: DDP and FSDP synchronise gradients through the
wrapped net's forward, so the loss may not reach around it to the inner UNet.

Losses are averaged over pixels and channels (upstream sums them and divides
by the batch); Adam's update is invariant to that scale, so the recipe's
learning rates carry over.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import DictConfig
from physicsnemo.diffusion.metrics import MSEDSMLoss
from physicsnemo.diffusion.multi_diffusion import RandomPatching2D
from physicsnemo.diffusion.noise_schedulers import EDMNoiseScheduler, StudentTEDMNoiseScheduler

from ..data.epochs import dataset_epochs, validation_batches
from ..engine import checkpointing
from ..engine.checks import config_error
from ..engine.loop import Trainable, to_device
from ..engine.plan import TORCH_LOADERS, RunPlan
from ..engine.run_folder import RunRecord
from ..engine.run_info import RunInfo
from ..engine.task import TaskContext, train_task, validation_mean
from . import models, net_files, warm_start
from .datasets import build_dataset, split_holdout, validation_spec
from .domain import Domain

STAGES = ("regression", "diffusion")


def check_config(cfg: DictConfig) -> None:
    """``model.name`` is a stage (the engine checks ``train``)."""
    if cfg.model.name not in STAGES:
        raise config_error("model.name", cfg.model.name, f"choose from {list(STAGES)}")


def regression_stage(cfg: DictConfig, domain: Domain, plan: RunPlan) -> tuple[torch.nn.Module, Callable]:
    """The regression net and its loss ``loss_fn(net, batch)``: the mean squared error."""
    model = models.build_regression(cfg, domain, plan)
    if cfg.model.backbone == "unet" and cfg.model.get("init"):  # a ClimaX backbone reads its own init
        _start_from_init(model, cfg, "regression", domain)
    aware = net_files.lead_time_steps(model) is not None

    def loss_fn(net, batch):
        x, y = _layout(batch["input"], plan.apex_group_norm), _layout(batch["target"], plan.apex_group_norm)
        return regression_loss(net, y, x, batch_lead_time_labels(batch, [model]) if aware else None)

    return model, loss_fn


def regression_loss(net, target: torch.Tensor, img_lr: torch.Tensor, labels: torch.Tensor | None = None):
    """The mean squared error of the regression net's output ``[B, C_out, H, W]`` (its ``x``
    argument is unused and given zeros) against ``target``, from inputs ``img_lr`` (and, for a
    lead-time-aware net, the ``[B]`` integer lead-time ``labels``)."""
    kwargs = {} if labels is None else {"lead_time_label": labels}
    return (net(torch.zeros_like(target), img_lr, **kwargs) - target).square().mean()


def batch_lead_time_labels(batch: dict, nets) -> torch.Tensor:
    """The batch's ``[B]`` lead-time labels, checked against the lead-time-aware ``nets``.

    Raises
    ------
    CheckpointMismatch
        When the dataset gives no ``lead_time_label``, or one outside a net's lead-time steps.
    """
    labels = batch.get("lead_time_label")
    labels = None if labels is None else torch.as_tensor(labels).reshape(-1).long()
    net_files.check_lead_time(nets, labels)
    return labels


def noise_scheduler(cfg: DictConfig) -> EDMNoiseScheduler | StudentTEDMNoiseScheduler:
    """The diffusion stage's training noise: EDM's log-normal noise levels (``P_mean``, ``P_std``) and
    weights (``sigma_data``), with Gaussian noise, or Student-t noise of ``model.student_t_nu``."""
    m, nu = cfg.model, models.asked_student_t_nu(cfg)
    if nu is None:
        return EDMNoiseScheduler(P_mean=m.P_mean, P_std=m.P_std, sigma_data=m.sigma_data)
    return StudentTEDMNoiseScheduler(nu=nu, P_mean=m.P_mean, P_std=m.P_std, sigma_data=m.sigma_data)


def _start_from_init(model: torch.nn.Module, cfg: DictConfig, stage: str, domain: Domain) -> None:
    """``model.init`` into a new run's net (:func:`.warm_start.start_from`). A run that resumes
    from its own checkpoints skips it: they replace the weights, so a source moved or changed
    since must not stop the resume."""
    if cfg.train.get("resume", True) and checkpointing.checkpoint_steps(Path(cfg.run_dir) / "checkpoints"):
        return
    warm_start.start_from(model, cfg.model.init, stage, domain)


def diffusion_stage(
    cfg: DictConfig, domain: Domain, plan: RunPlan, device, sample: dict
) -> tuple[torch.nn.Module, Callable]:
    """The residual diffusion net and its loss, around the frozen regression net (either may be
    lead-time-aware; the labels then come from the batch)."""
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
    models.set_amp_mode(regression, plan.precision)
    model = models.build_diffusion(cfg, domain, plan)
    if cfg.model.get("init"):
        _start_from_init(model, cfg, "diffusion", domain)
    scheduler = noise_scheduler(cfg)
    shape = models.patch_shape(cfg, domain)
    patching = None if shape is None else RandomPatching2D(domain.shape, shape, cfg.model.patch_num)
    aware = [net for net in (regression, model) if net_files.lead_time_steps(net) is not None]

    def loss_fn(net, batch):
        x, y = _layout(batch["input"], plan.apex_group_norm), _layout(batch["target"], plan.apex_group_norm)
        if patching is not None:
            patching.reset_patch_indices()  # drawn from the step's seeded generator
        labels = batch_lead_time_labels(batch, aware) if aware else None
        hr_mean = cfg.model.hr_mean_conditioning
        return residual_loss(net, regression, scheduler, y, x, hr_mean, patching, labels, model in aware)

    return model, loss_fn


def residual_loss(
    net,
    regression,
    scheduler: EDMNoiseScheduler | StudentTEDMNoiseScheduler,
    target: torch.Tensor,
    img_lr: torch.Tensor,
    hr_mean_conditioning: bool,
    patching: RandomPatching2D | None = None,
    labels: torch.Tensor | None = None,
    net_takes_labels: bool = False,
) -> torch.Tensor:
    """The diffusion stage's loss: EDM's weighted denoising error of the residual ``target - mean``.

    Parameters
    ----------
    net : Module
        The diffusion net (its file class: ``net(x, condition, sigma, **kwargs)``), possibly wrapped
        by DDP or FSDP.
    regression : Module
        The frozen regression net, giving the mean (given ``labels`` when it is lead-time-aware).
    scheduler : EDMNoiseScheduler or StudentTEDMNoiseScheduler
        The noise levels, the noise and the weights (:func:`noise_scheduler`).
    target, img_lr : torch.Tensor
        ``[B, C_out, H, W]`` fine fields and ``[B, C_in, H, W]`` network inputs.
    patching : RandomPatching2D, optional
        The patches this step trains on (each also sees the whole input, resized).
    labels : torch.Tensor, optional
        ``[B]`` lead-time labels, for the lead-time-aware nets.
    net_takes_labels : bool
        Whether ``net`` is lead-time-aware.

    Returns
    -------
    torch.Tensor
        The loss averaged over samples, channels and pixels.
    """
    with torch.no_grad():
        aware = labels is not None and net_files.lead_time_steps(regression) is not None
        mean = regression(torch.zeros_like(target), img_lr, **({"lead_time_label": labels} if aware else {}))
    residual, condition = target - mean, img_lr
    if hr_mean_conditioning:
        condition = torch.cat((mean, img_lr), dim=1)
    kwargs = {"lead_time_label": labels} if net_takes_labels else {}
    if patching is not None:
        kwargs["global_index"] = patching.global_index(target.shape[0], target.device)
        residual, condition = patching.apply(residual), patching.apply(condition, additional_input=img_lr)

    def denoised(x, t, condition=None, **kw):  # the current loss's model protocol, on the file's forward
        # a copy of the noise level: a t-EDM net scales its argument in place, and the loss
        # weights the unscaled one
        return net(x, condition, t.reshape(-1, 1, 1, 1).clone(), embedding_selector=None, **kw)

    return MSEDSMLoss(denoised, scheduler)(residual, condition=condition, **kwargs)


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
    dataset, val_set = training_sets(cfg, t.batch_size * world)
    domain: Domain = dataset.domain
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


def training_sets(cfg: DictConfig, minimum: int):
    """The training dataset and the validation one: ``validation``'s data when given (normalised
    with the training statistics), else the last ``holdout`` fraction of the training samples, held
    out of training; ``None`` for no validation (``holdout: 0``)."""
    dataset = build_dataset(cfg.dataset)
    val_spec = validation_spec(cfg)
    if val_spec is not None:
        return dataset, build_dataset(val_spec, dataset.domain.stats)
    if not cfg.get("holdout"):
        return dataset, None
    return split_holdout(dataset, cfg.holdout, minimum)


def _layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
