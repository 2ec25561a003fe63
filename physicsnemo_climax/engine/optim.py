# SPDX-License-Identifier: Apache-2.0
"""AdamW with the reference's parameter groups, its schedule, and the loss scaler; frozen
parameters (``train.freeze``) and per-pattern learning rates (``train.lr_scale``) for fine-tuning.

The cosine decays every group towards ``train.lr * train.min_lr_ratio``.

The kernels come from the run plan (:mod:`.plan`): apex ``FusedAdam`` in
AdamW mode, torch's fused AdamW on a GPU, or torch's foreach AdamW.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from .plan import RunPlan
from .settings import TrainSettings

#: Parameters without weight decay, as in the reference.
NO_DECAY = ("pos_embed", "var_embed", "var_query", "lead_time_embed")


def freeze(model: nn.Module, patterns) -> list[str]:
    """Keep the parameters whose names match any of ``patterns`` (``fnmatch``, e.g. ``"blocks.*"``)
    fixed, LoRA adapters excepted; returns their names. Call before wrapping the model (DDP needs
    to know).

    Raises
    ------
    ConfigError
        For a pattern that matches no parameter, or when nothing would be left to train.
    """
    names = [n for n, _ in model.named_parameters()]
    for pattern in patterns:
        if not fnmatch.filter(names, pattern):
            raise ConfigError(f"train.freeze: {pattern!r} matches no parameter (e.g. {names[:3]}, ...)")
    frozen = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns) and ".lora_" not in n]
    if frozen and len(frozen) == len(names):
        raise ConfigError(f"train.freeze={list(patterns)} freezes every parameter: nothing would train")
    for name, p in model.named_parameters():
        if name in frozen:
            p.requires_grad_(False)
    return frozen


def scale_rules(lr_scale) -> dict[str, float]:
    """``train.lr_scale`` as ``{pattern: factor}``: given as a mapping or a list of ``[pattern, factor]``
    pairs (``train.lr_scale=[[token_embeds.*,10],[var_embed,10]]`` on the command line).

    Raises
    ------
    ConfigError
        For an item that is not a pattern and a positive number.
    """
    items = list(lr_scale.items()) if isinstance(lr_scale, Mapping) else list(lr_scale or [])
    rules = {}
    for item in items:
        try:
            pattern, factor = item
            rules[str(pattern)] = float(factor)
        except (TypeError, ValueError):
            raise ConfigError(f"train.lr_scale: {item!r} is not a [pattern, factor] pair") from None
        if rules[str(pattern)] <= 0:
            raise ConfigError(f"train.lr_scale: the factor of {pattern!r} must be positive")
    return rules


def parameter_groups(model: nn.Module, weight_decay: float, lr_scale=None) -> list[dict]:
    """AdamW groups: no decay on biases, norms and the embeddings in :data:`NO_DECAY`; with
    ``lr_scale`` (:func:`scale_rules`: pattern -> factor of the learning rate, the first match
    wins), one group per factor, each with its ``lr_scale``. Frozen parameters are left out."""
    lr_scale = scale_rules(lr_scale)
    groups: dict[tuple[bool, float], list] = {(True, 1.0): [], (False, 1.0): []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = not (p.ndim < 2 or any(key in name for key in NO_DECAY) or "norm" in name)
        scale = next((float(f) for pat, f in lr_scale.items() if fnmatch.fnmatchcase(name, pat)), 1.0)
        groups.setdefault((decay, scale), []).append(p)
    return [
        {"params": params, "weight_decay": weight_decay if decay else 0.0, "lr_scale": scale}
        for (decay, scale), params in groups.items()
        if params or scale == 1.0
    ]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, betas, fused: str, lr_scale=None):
    """AdamW: apex ``FusedAdam`` (``fused="apex"``), torch's fused AdamW on a GPU, else foreach."""
    groups = parameter_groups(model, weight_decay, lr_scale)
    for group in groups:
        group["lr"] = lr * group.pop("lr_scale")
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
    cosine = CosineAnnealingLR(optimizer, T_max=max(1, total_steps - warmup_steps), eta_min=base * min_lr_ratio)
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
    def build(cls, model: nn.Module, t: TrainSettings, plan: RunPlan, device: torch.device) -> Optimization:
        """From the ``train`` section; build it after sharding (FSDP2 replaces the parameters)."""
        optimizer = build_optimizer(model, t.lr, t.weight_decay, t.betas, plan.fused, t.lr_scale)
        return cls(
            optimizer,
            build_scheduler(optimizer, t.warmup_steps, t.steps, t.min_lr_ratio),
            torch.amp.GradScaler(device.type, enabled=plan.precision == "fp16"),
        )

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
