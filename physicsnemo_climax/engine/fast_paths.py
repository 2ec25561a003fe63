# SPDX-License-Identifier: Apache-2.0
"""Which fused kernels and precisions a run uses, and the optimizer built on them.

NVIDIA apex (``FusedAdam``, ``FusedLayerNorm``) lives in the NGC PhysicsNeMo
container and is never required: it is detected, used when the config asks
for it, and one log line states which path runs.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext

import torch
from torch import nn

from ..doctor import apex

logger = logging.getLogger(__name__)

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

#: Parameters without weight decay, as in the reference.
NO_DECAY = ("pos_embed", "var_embed", "var_query", "lead_time_embed")


def apex_available() -> bool:
    """Whether apex ``FusedAdam`` and ``FusedLayerNorm`` can run here (see :mod:`..doctor`)."""
    return apex("apex_adam").ok and apex("apex_layer_norm").ok


def resolve_fused(fused: str) -> str:
    """``auto`` -> ``apex`` when available, else ``torch``; ``apex`` must be available."""
    if fused not in ("auto", "apex", "torch", "none"):
        raise ValueError(f"train.fused must be auto, apex, torch or none, got {fused!r}")
    if fused == "apex" and not apex_available():
        raise RuntimeError(
            "train.fused=apex asks for NVIDIA apex fused kernels, but apex (with CUDA) is not "
            "importable here; use train.fused=auto or torch (`climax doctor` lists what is present)"
        )
    if fused == "auto":
        return "apex" if apex_available() else "torch"
    return fused


def use_fused_layer_norm(model: nn.Module) -> int:
    """Swap every ``nn.LayerNorm`` for apex's ``FusedLayerNorm`` (same parameters)."""
    from apex.normalization import FusedLayerNorm

    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.LayerNorm:
                fused = FusedLayerNorm(child.normalized_shape, child.eps, child.elementwise_affine)
                fused.load_state_dict(child.state_dict())
                setattr(parent, name, fused.to(child.weight.device))
                swapped += 1
    return swapped


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
    """AdamW (apex ``FusedAdam`` in AdamW mode, or torch's fused/foreach AdamW)."""
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


def autocast(device: torch.device, precision: str):
    """Autocast context for ``fp32`` (none), ``bf16`` or ``fp16``."""
    if precision not in PRECISIONS:
        raise ValueError(f"train.precision must be one of {list(PRECISIONS)}, got {precision!r}")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise RuntimeError("train.precision=fp16 needs a CUDA device; use bf16 on the CPU")
    return torch.autocast(device.type, dtype=dtype)


def describe(fused: str, precision: str, device: torch.device, compile: bool) -> str:
    """The one log line that says which fast paths run."""
    kernels = ("apex FusedAdam + FusedLayerNorm" if fused == "apex"
               else "torch fused AdamW + native LayerNorm" if fused == "torch" and device.type == "cuda"
               else "torch AdamW + native LayerNorm")
    return (f"fast paths: {kernels}; precision {precision}; device {device}; "
            f"torch.compile {'on' if compile else 'off'}; attention via SDPA")
