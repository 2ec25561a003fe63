# SPDX-License-Identifier: Apache-2.0
"""Fixed sin-cos embeddings used to initialise ClimaX, and grid resizing of
the positional embedding."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import CheckpointMismatch, ConfigError


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """1-D sin-cos embedding of positions (MAE / ClimaX convention).

    Parameters
    ----------
    dim : int
        Embedding width, even.
    positions : torch.Tensor
        Positions, shape ``[N]``.

    Returns
    -------
    torch.Tensor
        ``[N, dim]``: sines in the first half of the channels, cosines in the
        second, frequencies ``1 / 10000**(k / (dim/2))``.
    """
    if dim % 2:
        raise ConfigError(f"sin-cos embedding width must be even, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = positions.to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


def sincos_2d(dim: int, grid_h: int, grid_w: int) -> torch.Tensor:
    """2-D sin-cos embedding of a ``grid_h x grid_w`` patch grid.

    The first half of the channels encodes the column (longitude) index, the
    second half the row (latitude) index, as in MAE and ClimaX.

    Returns
    -------
    torch.Tensor
        ``[grid_h * grid_w, dim]``, rows in row-major patch order.
    """
    if dim % 4:
        raise ConfigError(f"2-D sin-cos embedding width must be divisible by 4, got {dim}")
    rows, cols = torch.meshgrid(torch.arange(grid_h), torch.arange(grid_w), indexing="ij")
    return torch.cat([sincos_1d(dim // 2, cols.flatten()), sincos_1d(dim // 2, rows.flatten())], dim=1)


def resize_pos_embed(pos_embed: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]) -> torch.Tensor:
    """Bicubically resample a learned positional embedding to a new patch grid.

    Parameters
    ----------
    pos_embed : torch.Tensor
        ``[1, old_h * old_w, D]``.
    old_grid, new_grid : tuple of int
        Patch grids ``(h, w)``.

    Returns
    -------
    torch.Tensor
        ``[1, new_h * new_w, D]``.
    """
    (oh, ow), (nh, nw) = old_grid, new_grid
    if pos_embed.shape[1] != oh * ow:
        raise CheckpointMismatch(f"pos_embed has {pos_embed.shape[1]} tokens, not {oh}x{ow}={oh * ow}")
    if (oh, ow) == (nh, nw):
        return pos_embed
    dim = pos_embed.shape[-1]
    image = pos_embed.reshape(1, oh, ow, dim).permute(0, 3, 1, 2).float()
    image = F.interpolate(image, size=(nh, nw), mode="bicubic", align_corners=False)
    return image.permute(0, 2, 3, 1).reshape(1, nh * nw, dim).to(pos_embed.dtype)


def infer_patch_grid(num_tokens: int, aspect: float = 2.0) -> tuple[int, int]:
    """Patch grid ``(h, w)`` with ``h * w == num_tokens`` and ``w == aspect * h``.

    Global lat-lon grids have twice as many longitudes as latitudes, hence the
    default aspect.
    """
    h = round((num_tokens / aspect) ** 0.5)
    w = num_tokens // max(h, 1)
    if h * w != num_tokens:
        raise CheckpointMismatch(f"cannot infer a patch grid of aspect {aspect} from {num_tokens} tokens")
    return h, w
