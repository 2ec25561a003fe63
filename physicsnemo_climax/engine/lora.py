# SPDX-License-Identifier: Apache-2.0
"""LoRA (Hu et al. 2021): low-rank adapters on chosen linear layers, merged into plain weights
whenever the model is saved, so a ``.mdlus`` stays the plain model it was.

A wrapped layer computes ``base(x) + (x A^T B^T) * alpha / rank`` with ``A``
``[rank, in]`` (Kaiming-uniform) and ``B`` ``[out, rank]`` (zeros, so training
starts from the base model); the base weight and bias are frozen. Checkpoints
hold the merged model (``W + B A alpha / rank``) and, in the training state,
the adapters; a resume takes the base back as the merged weight minus the
saved update, so training goes on where it stopped.
"""

from __future__ import annotations

import copy
import fnmatch
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

#: The attention and MLP linears of timm's ViT blocks (ClimaX's backbone).
DEFAULT_TARGETS = ("blocks.*.attn.qkv", "blocks.*.attn.proj", "blocks.*.mlp.fc1", "blocks.*.mlp.fc2")


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base, self.scale = base, alpha / rank
        for p in base.parameters():
            p.requires_grad_(False)
        self.lora_a = nn.Parameter(
            torch.empty(rank, base.in_features, device=base.weight.device, dtype=base.weight.dtype)
        )
        self.lora_b = nn.Parameter(
            torch.zeros(base.out_features, rank, device=base.weight.device, dtype=base.weight.dtype)
        )
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + F.linear(F.linear(x, self.lora_a), self.lora_b) * self.scale

    def update(self) -> torch.Tensor:
        """``B A alpha / rank``, ``[out, in]``."""
        return (self.lora_b @ self.lora_a) * self.scale

    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` with the update added to its weight."""
        linear = copy.deepcopy(self.base)
        with torch.no_grad():
            linear.weight += self.update().to(linear.weight.dtype)
        for p in linear.parameters():
            p.requires_grad_(True)
        return linear


def add_lora(model: nn.Module, targets=DEFAULT_TARGETS, rank: int = 8, alpha: float = 16.0) -> list[str]:
    """Wrap the ``nn.Linear`` layers of ``model`` whose names match ``targets`` (fnmatch); returns them.

    Raises
    ------
    ConfigError
        For a rank below 1, or a target pattern that matches no linear layer.
    """
    if rank < 1:
        raise ConfigError(f"train.lora.rank={rank}: give 1 or more (0 turns LoRA off)")
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    for pattern in targets:
        if not fnmatch.filter(linears, pattern):
            raise ConfigError(f"train.lora.targets: {pattern!r} matches no linear layer (e.g. {linears[:3]})")
    wrapped = [n for n in linears if any(fnmatch.fnmatchcase(n, p) for p in targets)]
    for name in wrapped:
        parent, _, child = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        setattr(owner, child, LoRALinear(getattr(owner, child), rank, alpha))
    return wrapped


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """The wrapped layers of ``model`` by name (empty: no LoRA)."""
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}


def merged_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every adapter merged: the plain model, what checkpoints hold."""
    plain = copy.deepcopy(model)
    for name, layer in lora_layers(plain).items():
        parent, _, child = name.rpartition(".")
        setattr(plain.get_submodule(parent) if parent else plain, child, layer.merged())
    return plain


def adapters(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapters' values (``{layer}.lora_a`` / ``.lora_b``), detached, for the training state."""
    return {
        f"{n}.{k}": getattr(m, k).detach().clone() for n, m in lora_layers(model).items() for k in ("lora_a", "lora_b")
    }


def restore(model: nn.Module, merged_state: dict[str, torch.Tensor], saved: dict[str, torch.Tensor]) -> None:
    """Load a merged checkpoint into the wrapped ``model``: adapters from ``saved``, each base weight
    the merged weight minus the saved update, everything else as saved."""
    layers = lora_layers(model)
    state = {}
    for key, value in merged_state.items():
        layer = next((n for n in layers if key in (f"{n}.weight", f"{n}.bias")), None)
        state[key if layer is None else f"{layer}.base.{key[len(layer) + 1 :]}"] = value
    for name, layer in layers.items():
        a, b = saved[f"{name}.lora_a"], saved[f"{name}.lora_b"]
        state[f"{name}.lora_a"], state[f"{name}.lora_b"] = a, b
        state[f"{name}.base.weight"] = merged_state[f"{name}.weight"] - (b @ a) * layer.scale
    model.load_state_dict(state)
