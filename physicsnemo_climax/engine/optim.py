# SPDX-License-Identifier: Apache-2.0
"""AdamW with the reference's parameter groups, its schedule, and the loss scaler.

The kernels come from the run plan (:mod:`.plan`): apex ``FusedAdam`` in
AdamW mode, torch's fused AdamW on a GPU, or torch's foreach AdamW.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn

from .plan import RunPlan

#: Parameters without weight decay, as in the reference.
NO_DECAY = ("pos_embed", "var_embed", "var_query", "lead_time_embed")


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: no decay on biases, norms and the embeddings in :data:`NO_DECAY`."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or any(key in name for key in NO_DECAY) or "norm" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, betas, fused: str):
    """AdamW: apex ``FusedAdam`` (``fused="apex"``), torch's fused AdamW on a GPU, else foreach."""
    groups = parameter_groups(model, weight_decay)
    if fused == "apex":
        from apex.optimizers import FusedAdam

        return FusedAdam(groups, lr=lr, betas=tuple(betas), adam_w_mode=True)
    on_gpu = next(model.parameters()).is_cuda
    kwargs = {"fused": True} if (fused == "torch" and on_gpu) else {}
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), **kwargs)


def build_scheduler(optimizer, warmup_steps: int, total_steps: int, min_lr_ratio: float):
    """Linear warm-up then cosine decay to ``min_lr_ratio * lr`` (torch schedulers)."""
    from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR

    warmup_steps = max(0, min(warmup_steps, total_steps - 1))
    base = optimizer.param_groups[0]["lr"]
    cosine = CosineAnnealingLR(optimizer, T_max=max(1, total_steps - warmup_steps),
                               eta_min=base * min_lr_ratio)
    if warmup_steps == 0:
        return cosine
    warmup = LinearLR(optimizer, start_factor=1.0 / (warmup_steps + 1), total_iters=warmup_steps)
    return SequentialLR(optimizer, [warmup, cosine], milestones=[warmup_steps])


@dataclass
class Optimization:
    """The optimizer, learning-rate schedule and loss scaler of one run."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler

    @classmethod
    def build(cls, model: nn.Module, t: DictConfig, plan: RunPlan, device: torch.device) -> "Optimization":
        """From the ``train`` section; build it after sharding (FSDP2 replaces the parameters)."""
        optimizer = build_optimizer(model, t.lr, t.weight_decay, t.betas, plan.fused)
        return cls(optimizer, build_scheduler(optimizer, t.warmup_steps, t.steps, t.min_lr_ratio),
                   torch.amp.GradScaler(device.type, enabled=plan.precision == "fp16"))

    @property
    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    def step(self, parameters, clip_grad: float) -> None:
        """Unscale, clip, step, zero the gradients and advance the schedule."""
        self.scaler.unscale_(self.optimizer)
        if clip_grad:
            torch.nn.utils.clip_grad_norm_(parameters, clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
