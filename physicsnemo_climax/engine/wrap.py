# SPDX-License-Identifier: Apache-2.0
"""The network the loop trains: the model with the plan's kernels, sharded or
replicated over ranks, optionally compiled. Checkpoints save the model itself."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from .plan import RunPlan


def use_fused_layer_norm(model: nn.Module) -> int:
    """Swap every ``nn.LayerNorm`` for apex's ``FusedLayerNorm`` (same parameters); returns the count."""
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


def wrap(
    model: nn.Module, plan: RunPlan, manager, fsdp: bool = False, fsdp_units: Iterable[nn.Module] = ()
) -> nn.Module:
    """``model`` ready to train: apex LayerNorm, then DDP or FSDP2 on several ranks, then compile.

    Parameters
    ----------
    model : nn.Module
        On its device; changed in place by the LayerNorm swap and FSDP2.
    plan : RunPlan
        ``fused == "apex"`` swaps LayerNorms; ``compile`` compiles.
    manager : DistributedManager
    fsdp : bool
        Shard with FSDP2 (``fully_shard`` on each of ``fsdp_units``, then the
        root) instead of replicating with DDP.
    """
    if plan.fused == "apex":
        use_fused_layer_norm(model)
    net = model
    if manager.world_size > 1:
        if fsdp:
            from torch.distributed.fsdp import fully_shard

            for unit in fsdp_units:
                fully_shard(unit)
            net = fully_shard(model)
        else:
            device = manager.device
            net = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )
    return torch.compile(net) if plan.compile else net
