# SPDX-License-Identifier: Apache-2.0
"""GEFS forecasts -> HRRR forecasts with lead times (upstream CorrDiff's ``gefs_hrrr``).

Layout (as upstream's ``datasets/gefs_hrrr.py`` reads it), under ``data_path``:

* ``gefs/*surface*<period>.zarr`` and ``gefs/*isobaric*<period>.zarr``;
* ``hrrr_forecast/*<period>.zarr``;

where ``<period>`` is the last 10 characters of the name, starting with the
year (``2021_01_06``). Each store holds ``values`` ``[time, channel, ., .]``
with coordinates ``channel`` (names), ``lat`` / ``lon`` (2-D) and ``time``:
sample names ``YYYYMMDDHHfFF`` (initial time, then the forecast hour). A
sample is a name present in the HRRR stores and in both GEFS stores of the
split's years (``train_years`` when ``train``, else ``valid_years``).

The GEFS fields are interpolated bilinearly (regular lat/lon axes, longitude
mod 360) to the HRRR points inside ``hrrr_window`` ``[[y0, y1], [x0, x1]]``,
then, for ``ds_factor`` > 1, coarsened as upstream does
(:func:`.domain.degrade`). Targets are the HRRR ``output_variables``; when
``prob_variables`` (precipitation-type categories) are given, a last channel
``cat_none`` (1 where none of them is set) is appended and the categories
plus ``cat_none`` are divided by their sum, so they are probabilities. Each
sample carries ``lead_time_label`` = forecast hour // 3, as upstream's.
Isobaric names missing from a file are looked up under the names upstream's
preprocessed files use (``z200`` -> ``z250``, ``t100`` -> ``t250``,
``rNNN`` -> ``qNNN``, ``r100`` -> ``q250``).
"""

from __future__ import annotations

import glob
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr

from ..engine.checks import ConfigError
from ..errors import DataError, UnknownName
from .domain import Domain, degrade

NAME = re.compile(r"\d{10}f\d{2}")
NON_PRECIP = "cat_none"


def period_stores(folder: Path, pattern: str, years: Sequence[int]) -> dict[str, Path]:
    """``{period: store}`` of the stores ``folder/pattern`` whose period starts with one of ``years``."""
    found = {}
    for path in sorted(glob.glob(str(folder / pattern))):
        stem = Path(path).name.removesuffix(".zarr")
        if "stats" in stem or "backup" in stem:
            continue
        if stem[-10:-6].isdigit() and int(stem[-10:-6]) in years:
            found[stem[-10:]] = Path(path)
    if not found:
        raise FileNotFoundError(f"no {folder / pattern} store for the years {list(years)}")
    return found


def file_name(name: str, channels: Sequence[str]) -> str:
    """The channel of a store that holds ``name`` (upstream's renamed isobaric channels included)."""
    if name in channels:
        return name
    alias = {"z200": "z250", "t100": "t250", "r100": "q250"}.get(name) or re.sub(r"^r(\d+)$", r"q\1", name)
    if alias in channels:
        return alias
    raise UnknownName(f"no channel {name!r} (has {list(channels)})")


def bilinear_weights(axis: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower neighbour index and weight of the upper one for ``points`` on a monotonic ``axis``
    (NaN weight outside it)."""
    ascending = axis[-1] > axis[0]
    a = axis if ascending else axis[::-1]
    low = np.clip(np.searchsorted(a, points, side="right") - 1, 0, len(a) - 2)
    w = (points - a[low]) / (a[low + 1] - a[low])
    w = np.where((points < a[0]) | (points > a[-1]), np.nan, w)
    if not ascending:  # index in the original order: the upper neighbour is the lower one there
        low, w = len(a) - 2 - low, 1 - w
    return low, w


class GefsHrrrDataset(torch.utils.data.Dataset):
    """Samples of the GEFS -> HRRR layout (see the module docstring).

    Parameters
    ----------
    data_path, stats_path : str or Path
        The folder holding ``gefs/`` and ``hrrr_forecast/``; ``stats.json``
        (``{"input": ..., "output": ...}``, ``cat_none`` included).
    input_surface_variables, input_isobaric_variables, output_variables : sequence of str
        GEFS input and HRRR target channels.
    prob_variables : sequence of str
        Precipitation categories among ``output_variables``; with them,
        ``output_variables`` ends with ``cat_none``.
    train : bool
        ``train_years`` or ``valid_years`` (upstream's default: ``false``).
    hrrr_window : [[y0, y1], [x0, x1]], optional
        The HRRR cut (default: the whole grid).
    ds_factor : int
        > 1: the GEFS input is coarsened as upstream does.
    normalize : bool
        ``false``: samples in physical units.
    sample_shape, shard, overfit
        Upstream's random crops, per-rank file split and one-sample debugging:
        only their defaults (``[-1, -1]``, ``false``, ``false``) are accepted.
    stats : dict, optional
        A training run's statistics, used instead of ``stats_path``.
    """

    def __init__(
        self,
        data_path,
        stats_path,
        input_surface_variables: Sequence[str],
        input_isobaric_variables: Sequence[str],
        output_variables: Sequence[str],
        prob_variables: Sequence[str] = (),
        train: bool = False,
        train_years: Sequence[int] = (2020, 2021, 2022, 2023),
        valid_years: Sequence[int] = (2024,),
        hrrr_window=None,
        ds_factor: int = 1,
        normalize: bool = True,
        sample_shape=(-1, -1),
        shard: bool = False,
        overfit: bool = False,
        stats: dict | None = None,
    ):
        for key, value, default in (
            ("sample_shape", list(sample_shape), [-1, -1]),
            ("shard", shard, False),
            ("overfit", overfit, False),
        ):
            if value != default:
                raise ConfigError(
                    f"dataset.{key}={value!r}: not offered here (only {default!r}); random crops "
                    "are model=patched_diffusion's patches, ranks split the samples themselves"
                )
        self.root = Path(data_path)
        years = list(train_years if train else valid_years)
        self.stores = {
            "surface": period_stores(self.root / "gefs", "*surface*.zarr", years),
            "hrrr": period_stores(self.root / "hrrr_forecast", "*.zarr", years),
        }
        self.stores["isobaric"] = {
            k: Path(str(p).replace("surface", "isobaric")) for k, p in self.stores["surface"].items()
        }
        self.surface, self.isobaric = list(input_surface_variables), list(input_isobaric_variables)
        self.outputs, self.prob = list(output_variables), list(prob_variables)
        self._check_outputs()
        self.ds_factor = int(ds_factor)
        self.where = self._index()
        self.sample_names = sorted(set.intersection(*(set(w) for w in self.where.values())))
        if not self.sample_names:
            raise DataError(f"{self.root}: no sample name is in the HRRR and both GEFS stores for {years}")
        init = pd.to_datetime([n[:10] for n in self.sample_names], format="%Y%m%d%H")
        self.times = (init + pd.to_timedelta([int(n[-2:]) for n in self.sample_names], unit="h")).values
        self._grid(hrrr_window)
        self.domain = Domain(
            input_variables=self.surface + self.isobaric,
            output_variables=self.outputs,
            invariant_variables=[],
            stats=self._stats(stats, stats_path, normalize),
            factor=1,
            shape=self.lat.shape,
            lat=self.lat,
            lon=self.lon,
        )

    def _check_outputs(self):
        absent = [p for p in self.prob if p not in self.outputs]
        if absent:
            raise ConfigError(f"dataset.prob_variables {absent} are not in dataset.output_variables {self.outputs}")
        if self.prob and self.outputs[-1] != NON_PRECIP:
            raise ConfigError(
                f"dataset.output_variables={self.outputs} must end with {NON_PRECIP} when "
                "dataset.prob_variables is set (the no-precipitation probability)"
            )
        self.stored_outputs = [v for v in self.outputs if not (self.prob and v == NON_PRECIP)]

    def _index(self) -> dict[str, dict[str, str]]:
        """``{store kind: {sample name: period}}`` from the stores' ``time`` coordinates."""
        where = {}
        for kind, stores in self.stores.items():
            where[kind] = {}
            for period, path in stores.items():
                if not path.exists():
                    raise FileNotFoundError(f"{path}: no such store (the {kind} pair of the GEFS surface store)")
                names = [str(t) for t in xr.open_zarr(path)["time"].values]
                bad = [n for n in names if not NAME.fullmatch(n)]
                if bad:
                    raise DataError(f"{path}: time names {bad[:3]} are not YYYYMMDDHHfFF")
                where[kind].update(dict.fromkeys(names, period))
        return where

    def _grid(self, window):
        """HRRR window, its lat/lon, and the GEFS -> HRRR interpolation weights."""
        with xr.open_zarr(next(iter(self.stores["hrrr"].values()))) as hrrr:
            lat, lon = hrrr["lat"].values, hrrr["lon"].values % 360
        ((y0, y1), (x0, x1)) = window if window is not None else ((0, lat.shape[0]), (0, lat.shape[1]))
        if not (0 <= y0 < y1 <= lat.shape[0] and 0 <= x0 < x1 <= lat.shape[1]):
            raise ConfigError(f"dataset.hrrr_window={window}: outside the HRRR grid {lat.shape}")
        self.window = ((y0, y1), (x0, x1))
        self.lat, self.lon = lat[y0:y1, x0:x1], lon[y0:y1, x0:x1]
        with xr.open_zarr(next(iter(self.stores["surface"].values()))) as gefs:
            glat, glon = gefs["lat"].values[:, 0], gefs["lon"].values[0, :] % 360
        self.weights = bilinear_weights(glat, self.lat), bilinear_weights(glon, self.lon)

    def _stats(self, stats, stats_path, normalize) -> dict:
        if not normalize:
            unit = {"mean": 0.0, "std": 1.0}
            return {
                "input": dict.fromkeys(self.surface + self.isobaric, unit),
                "output": dict.fromkeys(self.outputs, unit),
            }
        if stats is not None:
            return stats
        if not Path(stats_path).exists():
            raise FileNotFoundError(f"dataset.stats_path={stats_path}: no such file")
        return json.loads(Path(stats_path).read_text())

    # ------------------------------------------------------------ reading
    def _values(self, kind: str, name: str, channels: Sequence[str]) -> np.ndarray:
        """``values`` ``[C, ., .]`` of sample ``name`` in the ``kind`` store holding it."""
        if getattr(self, "_pid", None) != os.getpid():  # DataLoader workers open their own handles
            self._open, self._pid = {}, os.getpid()
        path = self.stores[kind][self.where[kind][name]]
        if path not in self._open:
            self._open[path] = xr.open_zarr(path, mask_and_scale=kind != "hrrr")
        ds = self._open[path]
        stored = [str(c) for c in ds["channel"].values]
        try:
            picked = [file_name(c, stored) for c in channels]
        except KeyError as err:
            raise UnknownName(f"{path}: {err.args[0]}") from None
        return np.asarray(ds["values"].sel(time=name, channel=picked).values, np.float32)

    def coarse_fields(self, index: int) -> np.ndarray:
        """GEFS input ``[C_in, H, W]`` on the HRRR window, physical units."""
        name = self.sample_names[index]
        gefs = np.concatenate(
            [self._values("surface", name, self.surface), self._values("isobaric", name, self.isobaric)]
        )
        (i, wy), (j, wx) = self.weights
        out = (
            (1 - wy) * (1 - wx) * gefs[:, i, j]
            + (1 - wy) * wx * gefs[:, i, j + 1]
            + wy * (1 - wx) * gefs[:, i + 1, j]
            + wy * wx * gefs[:, i + 1, j + 1]
        )
        return degrade(out, self.ds_factor).astype(np.float32)

    def fine_fields(self, index: int) -> np.ndarray:
        """HRRR target ``[C_out, H, W]``, physical units; categories as probabilities."""
        ((y0, y1), (x0, x1)) = self.window
        field = self._values("hrrr", self.sample_names[index], self.stored_outputs)[:, y0:y1, x0:x1]
        if not self.prob:
            return field
        cats = [self.stored_outputs.index(p) for p in self.prob]
        none = (field[cats].sum(0, keepdims=True) == 0).astype(np.float32)
        field = np.concatenate([field, none])
        cats.append(len(field) - 1)
        field[cats] /= field[cats].sum(0, keepdims=True)
        return field

    def lead_time_label(self, index: int) -> int:
        """Upstream's lead-time class of sample ``index``: forecast hour // 3."""
        return int(self.sample_names[index][-2:]) // 3

    def __len__(self) -> int:
        return len(self.sample_names)

    def __getitem__(self, index: int) -> dict:
        x = self.domain.make_input(self.coarse_fields(index))
        y = self.domain.normalize_output(self.fine_fields(index))
        return {
            "input": torch.from_numpy(x),
            "target": torch.from_numpy(y),
            "index": index,
            "lead_time_label": self.lead_time_label(index),
        }
