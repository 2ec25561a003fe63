# SPDX-License-Identifier: Apache-2.0
"""Prediction head: tokens back to per-variable patches, then to the grid."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PredictionHead(nn.Sequential):
    """``[Linear(D, D), GELU] x decoder_depth`` then ``Linear(D, V p^2)``.

    The last layer's rows are laid out ``(p_row, p_col, variable)`` with the
    variable fastest, as in the reference. Only the rows of the requested
    output variables are computed.

    Parameters
    ----------
    embed_dim : int
        Token width ``D``.
    num_variables : int
        Known variables ``V``.
    patch_size : int
        Patch edge ``p``.
    decoder_depth : int
        Hidden ``Linear + GELU`` layers.
    """

    def __init__(self, embed_dim: int, num_variables: int, patch_size: int, decoder_depth: int):
        layers: list[nn.Module] = []
        for _ in range(decoder_depth):
            layers += [nn.Linear(embed_dim, embed_dim), nn.GELU()]
        layers.append(nn.Linear(embed_dim, num_variables * patch_size**2))
        super().__init__(*layers)
        self.num_variables = num_variables
        self.patch_size = patch_size

    def forward(self, x: torch.Tensor, out_ids: list[int]) -> torch.Tensor:  # type: ignore[override]
        """
        Parameters
        ----------
        x : torch.Tensor
            ``[B, L, D]`` tokens.
        out_ids : list of int
            Indices of the output variables among the known ones.

        Returns
        -------
        torch.Tensor
            ``[B, L, p * p * len(out_ids)]``, layout ``(p_row, p_col, variable)``.
        """
        for layer in list(self)[:-1]:
            x = layer(x)
        last: nn.Linear = self[-1]
        p2, v, d = self.patch_size**2, self.num_variables, last.in_features
        ids = torch.as_tensor(out_ids, device=x.device)
        weight = last.weight.reshape(p2, v, d)[:, ids].reshape(-1, d)
        bias = last.bias.reshape(p2, v)[:, ids].reshape(-1)
        return F.linear(x, weight, bias)


def unpatchify(x: torch.Tensor, patch_size: int, grid: tuple[int, int]) -> torch.Tensor:
    """Patch predictions to fields.

    Parameters
    ----------
    x : torch.Tensor
        ``[B, h * w, p * p * C]``, channel layout ``(p_row, p_col, C)``.
    patch_size : int
        ``p``.
    grid : tuple of int
        Patch grid ``(h, w)``.

    Returns
    -------
    torch.Tensor
        ``[B, C, h * p, w * p]``.
    """
    (h, w), p = grid, patch_size
    b, c = x.shape[0], x.shape[-1] // (p * p)
    x = x.reshape(b, h, w, p, p, c).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, c, h * p, w * p)
