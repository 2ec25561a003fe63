# SPDX-License-Identifier: Apache-2.0
"""The Taiwan CWA (``cwb``) dataset of upstream CorrDiff: one Zarr, ERA5 on the fine grid.

Layout (as upstream's ``datasets/cwb.py`` reads it):

* ``cwb`` ``[time, cwb_channel, south_north, west_east]``: the fine targets,
  stacked channels, with ``cwb_variable`` / ``cwb_pressure`` ``[cwb_channel]``
  (name, level or NaN) and ``cwb_center`` / ``cwb_scale`` (normalization);
* ``era5`` ``[time, era5_channel, south_north, west_east]``: the input,
  already interpolated to the same grid, with ``era5_variable``,
  ``era5_pressure``, ``era5_center``, ``era5_scale``;
* ``cwb_valid`` ``[time]`` and ``era5_valid`` ``[time, era5_channel]``: a time
  is used when the target and every ERA5 channel are valid;
* ``XLAT`` / ``XLONG`` ``[south_north, west_east]``, ``time`` ``[time]``.

Channels are chosen by index (``in_channels``, ``out_channels``, as upstream)
or by name (``temperature_500``: variable, then level when it has one). Both
fields are cut to ``img_shape_y x img_shape_x`` from the top-left corner.
Without ``all_times``, ``train=true`` takes the years not in ``test_years``
(upstream: 2021) and ``train=false`` those in it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr

from ..engine.checks import ConfigError
from ..errors import DataError, UnknownName
from .domain import Domain, degrade

#: Upstream's ``normalization: v2``: fixed centre and scale for these targets.
V2_TARGETS = {
    "maximum_radar_reflectivity": (25.0, 25.0),
    "eastward_wind_10m": (0.0, 20.0),
    "northward_wind_10m": (0.0, 20.0),
}

#: The variables a store must have to be read as the CWB layout (in the order they are reported missing).
_LAYOUT = (
    "cwb",
    "era5",
    "cwb_valid",
    "era5_valid",
    "cwb_variable",
    "era5_variable",
    "cwb_center",
    "cwb_scale",
    "era5_center",
    "era5_scale",
    "XLAT",
    "XLONG",
)


def channel_names(ds: xr.Dataset, group: str) -> list[str]:
    """``variable`` or ``variable_level`` of each channel of ``group`` (``cwb`` or ``era5``)."""
    names = [_text(v) for v in ds[f"{group}_variable"].values]
    if f"{group}_pressure" not in ds:
        return names
    levels = ds[f"{group}_pressure"].values
    return [n if np.isnan(p) else f"{n}_{p:g}" for n, p in zip(names, levels)]


def _text(value) -> str:
    """A channel name stored as text or bytes."""
    return value.decode() if isinstance(value, bytes) else str(value)


def pick(channels: Sequence, names: list[str], key: str) -> list[int]:
    """Indices of ``channels`` (indices or names) among ``names``; errors name ``key``."""
    out = []
    for c in channels:
        if isinstance(c, str):
            if c not in names:
                raise UnknownName(f"{key}: no channel {c!r} (has {names})")
            out.append(names.index(c))
        elif not 0 <= int(c) < len(names):
            raise UnknownName(f"{key}: channel index {c} out of range 0..{len(names) - 1} ({names})")
        else:
            out.append(int(c))
    return out


def file_stats(ds: xr.Dataset, group: str, names: list[str], normalization: str) -> dict:
    """``{name: {"mean", "std"}}`` from ``{group}_center`` / ``{group}_scale`` (``v2``: :data:`V2_TARGETS`)."""
    center, scale = ds[f"{group}_center"].values, ds[f"{group}_scale"].values
    variables = [_text(v) for v in ds[f"{group}_variable"].values]
    table = {}
    for k, name in enumerate(names):
        mean, std = float(center[k]), float(scale[k])
        if normalization == "v2" and group == "cwb" and variables[k] in V2_TARGETS:
            mean, std = V2_TARGETS[variables[k]]
        table[name] = {"mean": mean, "std": std}
    return table


class CWBDataset(torch.utils.data.Dataset):
    """Samples of upstream CorrDiff's Taiwan (CWA) Zarr (see the module docstring).

    Parameters
    ----------
    data_path : str or Path
        The Zarr store.
    in_channels, out_channels : sequence of int or str
        ERA5 input and CWB target channels, by index or name.
    img_shape_x, img_shape_y : int
        Width and height kept from the top-left corner.
    train, all_times : bool
        Training or test years (``all_times``: every valid time).
    test_years : sequence of int
        The held-out years (upstream: 2021).
    ds_factor : int
        > 1: the target is coarsened as upstream does (every ``ds_factor``-th
        point, bicubically back; :func:`.domain.degrade`).
    normalization : str
        ``v1`` (the file's centre/scale) or ``v2`` (upstream's fixed values for
        radar reflectivity and 10 m winds).
    add_grid : bool
        Kept for upstream configs: the grid embedding is the nets' (``N_grid_channels``).
    stats : dict, optional
        ``stats.json``-layout statistics of a training run, used instead of the file's.
    """

    def __init__(
        self,
        data_path,
        in_channels: Sequence = (0, 1, 2, 3, 4, 9, 10, 11, 12, 17, 18, 19),
        out_channels: Sequence = (0, 1, 2, 3),
        img_shape_x: int = 448,
        img_shape_y: int = 448,
        train: bool = True,
        all_times: bool = False,
        test_years: Sequence[int] = (2021,),
        ds_factor: int = 1,
        normalization: str = "v1",
        add_grid: bool = True,
        stats: dict | None = None,
    ):
        self.path = Path(data_path)
        if not self.path.exists():
            raise FileNotFoundError(f"dataset.data_path={self.path}: no such Zarr store")
        if normalization not in ("v1", "v2"):
            raise ConfigError(f"dataset.normalization={normalization!r}: choose v1 or v2")
        ds = self._open()
        self._check_layout(ds)
        self.ds_factor = int(ds_factor)
        inputs, outputs = channel_names(ds, "era5"), channel_names(ds, "cwb")
        self.in_index = pick(in_channels, inputs, "dataset.in_channels")
        self.out_index = pick(out_channels, outputs, "dataset.out_channels")
        self.rows = self._select_times(ds, train, all_times, test_years)
        self.times = ds["time"].values[self.rows]
        big_h, big_w = int(img_shape_y), int(img_shape_x)
        if ds.sizes["south_north"] < big_h or ds.sizes["west_east"] < big_w:
            raise DataError(
                f"{self.path}: grid {ds.sizes['south_north']}x{ds.sizes['west_east']} is smaller "
                f"than dataset.img_shape_y x img_shape_x = {big_h}x{big_w}"
            )
        in_names, out_names = [inputs[i] for i in self.in_index], [outputs[i] for i in self.out_index]
        if stats is None:
            stats = {
                "input": file_stats(ds, "era5", inputs, normalization),
                "output": file_stats(ds, "cwb", outputs, normalization),
                "invariant": {},
            }
        self.domain = Domain(
            input_variables=in_names,
            output_variables=out_names,
            invariant_variables=[],
            stats=stats,
            factor=1,
            shape=(big_h, big_w),
            lat=ds["XLAT"].values[:big_h, :big_w],
            lon=ds["XLONG"].values[:big_h, :big_w],
        )

    def _open(self) -> xr.Dataset:
        return xr.open_zarr(self.path)

    def _check_layout(self, ds: xr.Dataset) -> None:
        """Refuse a store without the variables of the CWB layout (:data:`_LAYOUT`).

        Raises
        ------
        UnknownName
            Naming the variables it lacks.
        """
        missing = [v for v in _LAYOUT if v not in ds]
        if missing:
            raise UnknownName(f"{self.path}: no {missing} (not the CWB layout)")

    def _select_times(self, ds, train, all_times, test_years) -> np.ndarray:
        """Rows of the valid times of this split."""
        valid = ds["cwb_valid"].values.astype(bool) & ds["era5_valid"].values.astype(bool).all(axis=-1)
        if not all_times:
            held_out = np.isin(pd.DatetimeIndex(ds["time"].values).year, list(test_years))
            valid &= ~held_out if train else held_out
        rows = np.flatnonzero(valid)
        if rows.size == 0:
            raise DataError(
                f"{self.path}: no valid time in the {'training' if train else 'test'} split "
                f"(test_years={list(test_years)}, all_times={all_times})"
            )
        return rows

    def __len__(self) -> int:
        return len(self.rows)

    def _fields(self, group: str, index: int, channels: list[int]) -> np.ndarray:
        if getattr(self, "_pid", None) != os.getpid():  # DataLoader workers open their own handles
            self._ds, self._pid = self._open(), os.getpid()
        return np.asarray(self._ds[group][self.rows[index]].values[channels], np.float32)

    def coarse_fields(self, index: int) -> np.ndarray:
        """ERA5 input ``[C_in, H, W]`` in physical units (on the fine grid)."""
        big_h, big_w = self.domain.shape
        return self._fields("era5", index, self.in_index)[:, :big_h, :big_w]

    def fine_fields(self, index: int) -> np.ndarray:
        """CWB target ``[C_out, H, W]`` in physical units (coarsened when ``ds_factor`` > 1)."""
        big_h, big_w = self.domain.shape
        return degrade(self._fields("cwb", index, self.out_index), self.ds_factor)[:, :big_h, :big_w]

    def __getitem__(self, index: int) -> dict:
        x = self.domain.make_input(self.coarse_fields(index))
        y = self.domain.normalize_output(self.fine_fields(index))
        return {"input": torch.from_numpy(x), "target": torch.from_numpy(y), "index": index}
