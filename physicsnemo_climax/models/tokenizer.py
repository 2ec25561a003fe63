# SPDX-License-Identifier: Apache-2.0
"""Variable tokenization: one ``p x p`` patch embedding per known variable."""

from __future__ import annotations

import torch
from torch import nn


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
    kernels are stacked and applied to the unfolded patches with a single
    einsum: the same result, one kernel launch instead of ``V``.

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

    def forward(self, x: torch.Tensor, var_ids: list[int]) -> torch.Tensor:
        """Embed each variable's patches with that variable's kernel.

        Parameters
        ----------
        x : torch.Tensor
            ``[B, V, H, W]``, channel ``i`` being variable ``var_ids[i]``.
        var_ids : list of int
            Index of each input channel among the known variables.

        Returns
        -------
        torch.Tensor
            ``[B, V, L, D]`` with ``L = (H/p) * (W/p)`` patches in row-major order.
        """
        p = self.patch_size
        b, v, h, w = x.shape
        patches = (
            x.reshape(b, v, h // p, p, w // p, p)
            .permute(0, 1, 2, 4, 3, 5)
            .reshape(b, v, (h // p) * (w // p), p * p)
        )
        weight = torch.stack([self[i].proj.weight.reshape(-1, p * p) for i in var_ids])
        bias = torch.stack([self[i].proj.bias for i in var_ids])
        return torch.einsum("bvlk,vdk->bvld", patches, weight) + bias[None, :, None, :]
