# SPDX-License-Identifier: Apache-2.0
"""Variable tokenization: one ``p x p`` patch embedding per known variable."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class VariableTokens:
    """Variable tokens kept in factored form.

    A single-channel patch embedding is linear and the variable embedding is
    additive, so every token is an affine function of its ``p^2`` patch
    values: ``tokens[b, v, l] = weight[v] @ patches[b, v, l] + offset[v]``.
    Consumers that only need linear maps of the tokens (the fused variable
    aggregation) never build the ``[B, V, L, D]`` tensor.

    Attributes
    ----------
    patches : torch.Tensor
        ``[B, V, L, p*p]`` patch values.
    weight : torch.Tensor
        ``[V, D, p*p]`` each variable's patch kernel.
    offset : torch.Tensor
        ``[V, D]`` patch-embedding bias plus variable embedding.
    """

    patches: torch.Tensor
    weight: torch.Tensor
    offset: torch.Tensor

    def materialize(self) -> torch.Tensor:
        """The tokens, ``[B, V, L, D]``."""
        tokens = torch.einsum("bvlk,vdk->bvld", self.patches, self.weight)
        return tokens + self.offset[None, :, None, :]


class PatchEmbed(nn.Module):
    """Single-channel ``p x p`` patch embedding (a strided convolution).

    Kept as a module with a ``proj`` convolution so that parameter names match
    the reference (``token_embeds.{i}.proj.weight``).
    """

    def __init__(self, patch_size: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(1, embed_dim, kernel_size=patch_size, stride=patch_size)


class VariableTokenizer(nn.ModuleList):
    """Per-variable patch embeddings, evaluated as one batched product.

    The reference runs one convolution per variable. Here the chosen variables'
    kernels are stacked and returned with the unfolded patches as
    :class:`VariableTokens`, to be applied in one batched product (or folded
    into the aggregation).

    Parameters
    ----------
    num_variables : int
        Number of variables the model knows.
    patch_size : int
        Patch edge ``p`` in grid cells.
    embed_dim : int
        Token width ``D``.
    """

    def __init__(self, num_variables: int, patch_size: int, embed_dim: int):
        super().__init__(PatchEmbed(patch_size, embed_dim) for _ in range(num_variables))
        self.patch_size = patch_size

    def forward(self, x: torch.Tensor, var_ids: list[int], var_embed: torch.Tensor) -> VariableTokens:
        """Embed each variable's patches with that variable's kernel.

        Parameters
        ----------
        x : torch.Tensor
            ``[B, V, H, W]``, channel ``i`` being variable ``var_ids[i]``.
        var_ids : list of int
            Index of each input channel among the known variables.
        var_embed : torch.Tensor
            ``[V, D]`` variable embedding of each channel.

        Returns
        -------
        VariableTokens
            ``[B, V, L, D]`` tokens in factored form, ``L = (H/p) * (W/p)``
            patches in row-major order.
        """
        p = self.patch_size
        b, v, h, w = x.shape
        patches = (
            x.reshape(b, v, h // p, p, w // p, p).permute(0, 1, 2, 4, 3, 5).reshape(b, v, (h // p) * (w // p), p * p)
        )
        weight = torch.stack([self[i].proj.weight.reshape(-1, p * p) for i in var_ids])
        bias = torch.stack([self[i].proj.bias for i in var_ids])
        return VariableTokens(patches, weight, bias + var_embed)
