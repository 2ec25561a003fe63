# SPDX-License-Identifier: Apache-2.0
"""Prediction head: tokens back to per-variable patches, then to the grid.

The paper's head predicts each token's own ``p x p`` patch (:func:`unpatchify`).
A head with a wider ``window`` predicts a ``k x k`` window centred on the patch
and blends neighbouring windows with tent weights (:func:`overlap_add`), so the
fields are continuous across patch edges instead of showing the patch grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PredictionHead(nn.Sequential):
    """``[Linear(D, D), GELU] x decoder_depth`` then ``Linear(D, V k^2)``.

    The last layer's rows are laid out ``(k_row, k_col, variable)`` with the
    variable fastest, as in the reference (where ``k = p``). Only the rows of
    the requested output variables are computed.

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
    window : int, optional
        Edge ``k`` of the square each token predicts, centred on its patch:
        ``p`` (default) is the paper's head; ``p + 2 m`` overlaps each
        neighbour by ``m`` cells on every side (:meth:`to_grid`).
    """

    def __init__(self, embed_dim: int, num_variables: int, patch_size: int, decoder_depth: int,
                 window: int | None = None):
        window = patch_size if window is None else int(window)
        if window < patch_size or (window - patch_size) % 2:
            raise ValueError(f"head window {window} must be the patch size {patch_size} plus an even margin")
        layers: list[nn.Module] = []
        for _ in range(decoder_depth):
            layers += [nn.Linear(embed_dim, embed_dim), nn.GELU()]
        layers.append(nn.Linear(embed_dim, num_variables * window**2))
        super().__init__(*layers)
        self.num_variables = num_variables
        self.patch_size = patch_size
        self.window = window

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
            ``[B, L, k * k * len(out_ids)]``, layout ``(k_row, k_col, variable)``.
        """
        for layer in list(self)[:-1]:
            x = layer(x)
        last: nn.Linear = self[-1]
        k2, v, d = self.window**2, self.num_variables, last.in_features
        ids = torch.as_tensor(out_ids, device=x.device)
        weight = last.weight.reshape(k2, v, d)[:, ids].reshape(-1, d)
        bias = last.bias.reshape(k2, v)[:, ids].reshape(-1)
        return F.linear(x, weight, bias)

    def to_grid(self, x: torch.Tensor, grid: tuple[int, int], periodic: bool = False) -> torch.Tensor:
        """The head's windows ``[B, h * w, k * k * C]`` as fields ``[B, C, h p, w p]``:
        :func:`unpatchify` for the paper's head, :func:`overlap_add` for a wider window
        (``periodic``: the grid spans every longitude, so windows wrap east-west)."""
        if self.window == self.patch_size:
            return unpatchify(x, self.patch_size, grid)
        return overlap_add(x, self.patch_size, self.window, grid, periodic)


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


def tent(window: int, dtype=None, device=None) -> torch.Tensor:
    """``[k]`` weights ``1 - |i + 1/2 - k/2| / (k/2)``: highest at the window's centre, falling
    linearly to nearly zero at its edges. For ``k = 2 p`` two windows a patch apart sum to one."""
    centre = window / 2
    i = torch.arange(window, dtype=torch.float64)
    return (1 - (i + 0.5 - centre).abs() / centre).to(dtype=dtype, device=device)


def overlap_add(x: torch.Tensor, patch_size: int, window: int, grid: tuple[int, int],
                periodic: bool = False) -> torch.Tensor:
    """Windows centred on their patches to fields: at each cell, the tent-weighted mean
    (:func:`tent`, outer product over rows and columns) of the windows covering it.

    Parameters
    ----------
    x : torch.Tensor
        ``[B, h * w, k * k * C]``, channel layout ``(k_row, k_col, C)``.
    patch_size, window : int
        ``p`` and ``k = p + 2 m``.
    grid : tuple of int
        Patch grid ``(h, w)``.
    periodic : bool
        Wrap the ``m`` columns beyond the east and west edges round to the other
        side (a global grid); otherwise cells beyond the grid are dropped, as
        beyond the poles always are.

    Returns
    -------
    torch.Tensor
        ``[B, C, h * p, w * p]``.
    """
    (h, w), p, k = grid, patch_size, window
    m, b, c = (k - p) // 2, x.shape[0], x.shape[-1] // (k * k)
    weight = tent(k, x.dtype, x.device)
    weight = weight[:, None] * weight[None, :]  # [k, k]
    # F.fold sums the windows: columns [B, C k k, L] with the windows in token order.
    cols = (x.reshape(b, h * w, k, k, c) * weight[None, None, :, :, None]).permute(0, 4, 2, 3, 1)
    size = (h * p + 2 * m, w * p + 2 * m)
    total = F.fold(cols.reshape(b, c * k * k, h * w), size, k, stride=p)
    norm = F.fold(weight.reshape(1, k * k, 1).expand(1, k * k, h * w), size, k, stride=p)
    return _inner(total, m, periodic) / _inner(norm, m, periodic)


def _inner(x: torch.Tensor, margin: int, periodic: bool) -> torch.Tensor:
    """``[..., H + 2 m, W + 2 m]`` to the grid's ``[..., H, W]``, margins dropped or wrapped."""
    if margin == 0:
        return x
    inner = x[..., margin:-margin, :]
    core = inner[..., margin:-margin]
    if not periodic:
        return core
    west, east = inner[..., :margin], inner[..., -margin:]
    width = core.shape[-1]
    pad = core.new_zeros(core.shape[:-1] + (width - 2 * margin,))
    return core + torch.cat([east, pad, west], dim=-1)
