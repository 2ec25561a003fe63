# SPDX-License-Identifier: Apache-2.0
"""Downscaling samples: the coarse input brought to the fine grid, and the fine target.

Two sources:

* the CorrDiff-Mini (HRRR-Mini) NetCDF file of PhysicsNeMo's CorrDiff example:
  groups ``input`` (``[N, h, w]`` per coarse variable), ``output``
  (``[N, H, W]`` per fine variable), ``invariant`` (2-D fields on a larger
  fine grid), root ``time`` ``[N]`` and ``coord`` ``[N, 2]`` (the window's
  top-left corner in the invariant grid), and ``stats.json`` as
  ``{group: {variable: {"mean": m, "std": s}}}``;
* any coarse/fine pair of xarray datasets, or one fine dataset coarsened by an
  area mean (:class:`CoarseFineDataset`).

A sample is ``{"input": [C_in + C_inv, H, W], "target": [C_out, H, W]}``,
normalized per channel.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import xarray as xr


def upsampling_matrix(n: int, factor: int) -> np.ndarray:
    """Linear interpolation from ``n`` cell centres to ``n * factor``, ``[n f, n]``.

    Fine centre ``i`` sits at coarse coordinate ``(i + 1/2) / f - 1/2``; beyond
    the outermost coarse centres the line through the two nearest is
    extended (linear extrapolation, as the CorrDiff-Mini reader does), so a
    field linear in space is reproduced exactly up to the borders.
    """
    if n < 2:
        raise ValueError(f"need at least 2 coarse cells to interpolate, got {n}")
    src = (np.arange(n * factor) + 0.5) / factor - 0.5
    low = np.clip(np.floor(src).astype(int), 0, n - 2)
    t = src - low
    m = np.zeros((n * factor, n))
    m[np.arange(n * factor), low] = 1 - t
    m[np.arange(n * factor), low + 1] = t
    return m


def upsample(x: np.ndarray, factor: int) -> np.ndarray:
    """Bilinear upsampling with linear extrapolation at the borders, ``[..., h, w] -> [..., h f, w f]``."""
    my, mx = upsampling_matrix(x.shape[-2], factor), upsampling_matrix(x.shape[-1], factor)
    return (my @ x.astype(np.float64) @ mx.T).astype(np.float32)


def load_stats(path: str | Path, group: str, variables: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std ``[C]`` of ``variables`` in ``stats.json``'s ``group``.

    Raises
    ------
    KeyError
        Naming the file, group and missing variables.
    """
    stats = json.loads(Path(path).read_text())
    table = stats.get(group, {})
    missing = [v for v in variables if v not in table]
    if missing:
        raise KeyError(f"{path}: no statistics for {missing} in group {group!r} (has {sorted(table)})")
    mean = np.array([table[v]["mean"] for v in variables], dtype=np.float32)
    std = np.array([table[v]["std"] for v in variables], dtype=np.float32)
    return mean, std


class HRRRMiniDataset(torch.utils.data.Dataset):
    """Samples of a CorrDiff-Mini (HRRR-Mini) file (see the module docstring).

    Parameters
    ----------
    data_path, stats_path : str or Path
        The NetCDF file and its ``stats.json``.
    input_variables, output_variables : sequence of str, optional
        Channels of the ``input`` / ``output`` groups (default: all, in file order).
    invariant_variables : sequence of str
        Channels of the ``invariant`` group appended to the input.
    """

    def __init__(self, data_path, stats_path, input_variables=None, output_variables=None,
                 invariant_variables: Sequence[str] = ("elev_mean", "lsm_mean")):
        self.path = Path(data_path)
        groups = {}
        for group in ("input", "output", "invariant"):
            try:
                groups[group] = xr.open_dataset(self.path, group=group).load()
            except OSError as err:
                raise ValueError(f"{self.path}: cannot read group {group!r} ({err})") from err
        root = xr.open_dataset(self.path).load()
        self.input_variables = list(input_variables or groups["input"].data_vars)
        self.output_variables = list(output_variables or groups["output"].data_vars)
        self.invariant_variables = list(invariant_variables)
        for group, names in (("input", self.input_variables), ("output", self.output_variables),
                             ("invariant", self.invariant_variables)):
            missing = [v for v in names if v not in groups[group]]
            if missing:
                raise KeyError(f"{self.path}: group {group!r} has no {missing} (has {list(groups[group].data_vars)})")
        self.coarse = np.stack([groups["input"][v].values for v in self.input_variables], axis=1)
        self.fine = np.stack([groups["output"][v].values for v in self.output_variables], axis=1)
        self.invariants = np.stack([groups["invariant"][v].values for v in self.invariant_variables]) \
            if self.invariant_variables else np.zeros((0, 1, 1), np.float32)
        self.times = root["time"].values
        self.coords = root["coord"].values.astype(int)

        (h, w), (big_h, big_w) = self.coarse.shape[-2:], self.fine.shape[-2:]
        if big_h % h or big_w % w or big_h // h != big_w // w:
            raise ValueError(f"{self.path}: fine grid {big_h}x{big_w} is not a common multiple "
                             f"of the coarse grid {h}x{w}")
        if len(self.coarse) != len(self.fine) or len(self.coords) != len(self.fine):
            raise ValueError(f"{self.path}: {len(self.coarse)} inputs, {len(self.fine)} outputs, "
                             f"{len(self.coords)} coords")
        self.factor = big_h // h
        stats_in = load_stats(stats_path, "input", self.input_variables)
        stats_inv = load_stats(stats_path, "invariant", self.invariant_variables)
        self.input_stats = tuple(np.concatenate([a, b]) for a, b in zip(stats_in, stats_inv))
        self.output_stats = load_stats(stats_path, "output", self.output_variables)

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(self.fine.shape[-2:])

    def __len__(self) -> int:
        return len(self.fine)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        big_h, big_w = self.image_shape
        i, j = self.coords[index]
        invariants = self.invariants[:, i : i + big_h, j : j + big_w]
        if invariants.shape[-2:] != (big_h, big_w) and self.invariant_variables:
            raise ValueError(f"{self.path}: sample {index} window at {(i, j)} leaves the invariant grid "
                             f"{self.invariants.shape[-2:]}")
        x = np.concatenate([upsample(self.coarse[index], self.factor), invariants.astype(np.float32)])
        mean, std = self.input_stats
        x = (x - mean[:, None, None]) / std[:, None, None]
        mean, std = self.output_stats
        y = (self.fine[index] - mean[:, None, None]) / std[:, None, None]
        return {"input": torch.as_tensor(x, dtype=torch.float32), "target": torch.as_tensor(y, dtype=torch.float32)}

    def denormalize_output(self, y: torch.Tensor) -> torch.Tensor:
        """Normalized ``[..., C_out, H, W]`` back to physical units."""
        mean, std = (torch.as_tensor(a, device=y.device)[:, None, None] for a in self.output_stats)
        return y * std + mean


def write_mini_file(path, stats_path, samples: int = 8, shape=(64, 64), factor: int = 8,
                    inputs=("10u", "10v", "2t", "tp"), outputs=("10u", "10v"),
                    invariants=("elev_mean", "lsm_mean"), invariant_shape=(96, 96), seed: int = 0) -> None:
    """Write a small file in the CorrDiff-Mini layout, and its ``stats.json``.

    Fields are smooth random waves; each fine output is a coarse input wave
    plus fine-scale detail tied to the invariants, so that downscaling is
    learnable.
    """
    rng = np.random.default_rng(seed)
    big_h, big_w = shape
    h, w = big_h // factor, big_w // factor
    gy, gx = np.meshgrid(np.arange(invariant_shape[0]), np.arange(invariant_shape[1]), indexing="ij")
    inv = {name: np.sin(gy / (7 + k) + k) * np.cos(gx / (5 + k)) for k, name in enumerate(invariants)}
    coords = np.stack([rng.integers(0, invariant_shape[0] - big_h + 1, samples),
                       rng.integers(0, invariant_shape[1] - big_w + 1, samples)], axis=1)
    yy, xx = np.meshgrid(np.arange(big_h) / big_h, np.arange(big_w) / big_w, indexing="ij")
    fine, coarse = {}, {}
    for k, name in enumerate(sorted(set(inputs) | set(outputs))):
        phase = rng.uniform(0, 2 * np.pi, (samples, 1, 1))
        field = 3 * np.sin(2 * np.pi * (yy + k * xx) + phase) + k
        detail = np.stack([sum(inv[n][i:i + big_h, j:j + big_w] for n in invariants) for i, j in coords])
        fine[name] = (field + 0.5 * detail).astype(np.float32)
        coarse[name] = fine[name].reshape(samples, h, factor, w, factor).mean(axis=(2, 4))
    root = xr.Dataset({"time": ("sample", np.arange(samples) * np.timedelta64(1, "h") + np.datetime64("2020-01-01")),
                       "coord": (("sample", "xy"), coords)})
    root.to_netcdf(path, mode="w")
    for group, names, source, dims in (("input", inputs, coarse, ("sample", "y_lr", "x_lr")),
                                       ("output", outputs, fine, ("sample", "y", "x")),
                                       ("invariant", invariants, inv, ("y_inv", "x_inv"))):
        xr.Dataset({n: (dims, np.asarray(source[n], np.float32)) for n in names}).to_netcdf(path, mode="a", group=group)
    stats = {group: {n: {"mean": float(np.mean(src[n])), "std": float(np.std(src[n]))} for n in names}
             for group, names, src in (("input", inputs, coarse), ("output", outputs, fine),
                                       ("invariant", invariants, inv))}
    Path(stats_path).write_text(json.dumps(stats, indent=1))
