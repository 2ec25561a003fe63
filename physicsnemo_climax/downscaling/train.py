# SPDX-License-Identifier: Apache-2.0
"""CorrDiff's two training stages on the shared loop (:mod:`..engine.loop`).

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

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from physicsnemo.diffusion.metrics import RegressionLoss, ResidualLoss
from physicsnemo.diffusion.multi_diffusion import RandomPatching2D
from physicsnemo.utils.logging import PythonLogger, RankZeroLoggingWrapper

from ..data.loader import epoch_batches, partition
from ..doctor import TORCH_LOADERS, resolve
from ..engine.distributed import all_reduce_mean, setup_distributed
from ..engine.loop import run_loop, to_device
from ..engine.trainer import ConfigError, check_train, config_error
from . import models
from .data import CoarseFineDataset, HRRRMiniDataset
from .domain import Domain

STAGES = ("regression", "diffusion")


def build_dataset(spec: DictConfig, stats: dict | None = None):
    """The dataset ``spec.type`` names: ``hrrr_mini`` or ``coarse_fine``."""
    args = OmegaConf.to_container(spec, resolve=True)
    kind = args.pop("type")
    if kind == "hrrr_mini":
        return HRRRMiniDataset(args["data_path"], args["stats_path"], args.get("input_variables"),
                               args.get("output_variables"), args.get("invariant_variables") or ())
    if kind == "coarse_fine":
        if stats is not None:
            args["stats"] = stats
        return CoarseFineDataset(**args)
    raise ConfigError(f"dataset.type={kind!r}: choose hrrr_mini or coarse_fine")


def validation_spec(cfg: DictConfig) -> DictConfig | None:
    """``dataset`` with the ``validation`` overrides on top (upstream's convention), or ``None``."""
    if not cfg.get("validation"):
        return None
    return OmegaConf.merge(cfg.dataset, cfg.validation)


def check_config(cfg: DictConfig) -> None:
    if cfg.model.name not in STAGES:
        raise config_error("model.name", cfg.model.name, f"choose from {list(STAGES)}")
    check_train(cfg.train, loaders=TORCH_LOADERS)


def train(cfg: DictConfig) -> Path:
    """Run (or resume) the stage the config describes; returns the run folder."""
    return fit(cfg)[0]


def fit(cfg: DictConfig):
    """:func:`train`, also returning the trained network."""
    check_config(cfg)
    cfg = resolve(cfg)  # mixed precision, apex GroupNorm: present, or fallback allowed
    manager = setup_distributed()
    device, rank, world = manager.device, manager.rank, manager.world_size
    logger = RankZeroLoggingWrapper(PythonLogger("corrdiff.train"), manager)
    t = cfg.train
    torch.manual_seed(cfg.seed)

    dataset = build_dataset(cfg.dataset)
    domain: Domain = dataset.domain
    val_spec = validation_spec(cfg)
    val_set = build_dataset(val_spec, domain.stats) if val_spec is not None else None
    if len(dataset) < t.batch_size * world:
        raise config_error("train.batch_size", t.batch_size, f"the dataset has only {len(dataset)} samples "
                           f"for {world} rank(s)")

    stage = cfg.model.name
    channels_last = models.use_apex_group_norm(cfg)
    if stage == "regression":
        model = models.build_regression(cfg, domain)
        regression_loss = RegressionLoss()

        def loss_fn(net, batch):
            x, y = _layout(batch["input"], channels_last), _layout(batch["target"], channels_last)
            return regression_loss(net, y, x).mean()
    else:
        path = cfg.model.get("regression_checkpoint_path")
        if not path:
            raise config_error("model.regression_checkpoint_path", path, "the diffusion stage needs a trained "
                               "regression net (.mdlus or its run folder)")
        regression = models.load_frozen(path, "model.regression_checkpoint_path", domain, device, dataset[0])
        models.set_amp_mode(regression, t.precision)
        model = models.build_diffusion(cfg, domain)
        residual_loss = ResidualLoss(regression, P_mean=cfg.model.get("P_mean", 0.0),
                                     P_std=cfg.model.get("P_std", 1.2), sigma_data=cfg.model.get("sigma_data", 0.5),
                                     hr_mean_conditioning=cfg.model.hr_mean_conditioning)
        shape = models.patch_shape(cfg, domain)
        patching = None if shape is None else RandomPatching2D(domain.shape, shape, cfg.model.get("patch_num", 4))

        def loss_fn(net, batch):
            x, y = _layout(batch["input"], channels_last), _layout(batch["target"], channels_last)
            if patching is not None:
                patching.reset_patch_indices()  # drawn from the step's seeded generator
            return residual_loss(net, y, x, patching=patching).mean()

    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    run_dir = Path(cfg.run_dir)
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        domain.save(run_dir)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    params = sum(p.numel() for p in model.parameters())
    logger.info(f"{stage} stage: {type(model).__name__}, {params:,} parameters; {len(dataset)} samples "
                f"{domain.input_channels} -> {domain.output_variables} on {domain.shape}")

    def validate(net) -> dict[str, float]:
        batches = torch.utils.data.DataLoader(
            torch.utils.data.Subset(val_set, partition(len(val_set), rank, world).tolist()), batch_size=t.batch_size)
        total, count = 0.0, 0
        for i, batch in enumerate(batches):
            if i >= t.val_batches:
                break
            total += loss_fn(net, to_device(batch, device)).item()
            count += 1
        return {"loss": all_reduce_mean(torch.tensor(total / max(count, 1)), manager).item()}

    run_loop(t, model, loss_fn, epoch_batches(dataset, t.batch_size, rank, world, cfg.seed, t.num_workers),
             run_dir=run_dir, manager=manager, seed=cfg.seed, logger=logger,
             validate=validate if val_set is not None else None)
    return run_dir, model


def _layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
