# SPDX-License-Identifier: Apache-2.0
"""Downscaling samples: the coarse input brought to the fine grid, and the fine target.

Readers of the two layouts below live here; :func:`.datasets.build_dataset`
makes these, forecasts as inputs (:mod:`.forecast_data`), the upstream
``cwb`` (:mod:`.cwb`) and ``gefs_hrrr`` (:mod:`.gefs_hrrr`) datasets and
user classes (:mod:`.interface`). Two sources, one sample
format ``{"input": [C_in + C_inv, H, W], "target": [C_out, H, W], "index":
int}`` (normalized per channel; see :class:`Domain`):

* :class:`HRRRMiniDataset`, the CorrDiff-Mini (HRRR-Mini) NetCDF file of
  PhysicsNeMo's CorrDiff example: groups ``input`` (``[N, h, w]`` per coarse
  variable), ``output`` (``[N, H, W]`` per fine variable), ``invariant``
  (2-D fields on a larger fine grid), root ``time`` ``[N]`` and ``coord``
  ``[N, 2]`` (the window's top-left corner in the invariant grid), and
  ``stats.json``;
* :class:`CoarseFineDataset`, any coarse/fine pair of xarray datasets, or one
  fine dataset coarsened by an area mean, with optional invariants.

"""

from __future__ import annotations

import glob
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr

from ..data.wb2 import from_wb2
from ..engine.checks import ConfigError
from ..errors import DataError, UnknownName
from ..files import write_atomic, write_netcdf
from .channel_units import converted, data_units, to_trained
from .domain import Domain, upsample

log = logging.getLogger(__name__)


class HRRRMiniDataset(torch.utils.data.Dataset):
    """Samples of a CorrDiff-Mini (HRRR-Mini) file, held in memory.

    Parameters
    ----------
    data_path, stats_path : str or Path
        The NetCDF file and its ``stats.json``.
    input_variables, output_variables : sequence of str, optional
        Channels of the ``input`` / ``output`` groups (default: all, in file order).
    invariant_variables : sequence of str
        Channels of the ``invariant`` group appended to the input.
    """

    def __init__(
        self,
        data_path,
        stats_path,
        input_variables=None,
        output_variables=None,
        invariant_variables: Sequence[str] = ("elev_mean", "lsm_mean"),
    ):
        self.path = Path(data_path)
        groups, root, (inputs, outputs, invariants) = _read_mini_file(
            self.path, input_variables, output_variables, invariant_variables
        )
        self.coarse = np.stack([groups["input"][v].values for v in inputs], axis=1)
        self.fine = np.stack([groups["output"][v].values for v in outputs], axis=1)
        self.invariants = (
            np.stack([groups["invariant"][v].values for v in invariants])
            if invariants
            else np.zeros((0, 1, 1), np.float32)
        )
        self.times = root["time"].values
        self.coords = root["coord"].values.astype(int)

        (h, w), (big_h, big_w) = self.coarse.shape[-2:], self.fine.shape[-2:]
        if big_h % h or big_w % w or big_h // h != big_w // w:
            raise DataError(
                f"{self.path}: fine grid {big_h}x{big_w} is not a common multiple of the coarse grid {h}x{w}"
            )
        if len(self.coarse) != len(self.fine) or len(self.coords) != len(self.fine):
            raise DataError(
                f"{self.path}: {len(self.coarse)} inputs, {len(self.fine)} outputs, {len(self.coords)} coords"
            )
        stats_path = Path(stats_path)
        if not stats_path.exists():
            raise FileNotFoundError(f"dataset.stats_path={stats_path}: no such file")
        try:
            self.domain = Domain(
                input_variables=inputs,
                output_variables=outputs,
                invariant_variables=invariants,
                stats=json.loads(stats_path.read_text()),
                factor=big_h // h,
                shape=(big_h, big_w),
            )
        except KeyError as err:
            raise UnknownName(f"{stats_path}: {err.args[0]}") from None

    def __len__(self) -> int:
        return len(self.fine)

    def __getitem__(self, index: int) -> dict:
        big_h, big_w = self.domain.shape
        i, j = self.coords[index]
        invariants = self.invariants[:, i : i + big_h, j : j + big_w]
        if invariants.shape[-2:] != (big_h, big_w) and self.domain.invariant_variables:
            raise DataError(
                f"{self.path}: sample {index} window at {(i, j)} leaves the invariant grid {self.invariants.shape[-2:]}"
            )
        x = self.domain.make_input(self.coarse[index], invariants)
        y = self.domain.normalize_output(self.fine[index])
        return {"input": torch.from_numpy(x), "target": torch.from_numpy(y), "index": index}

    def fine_fields(self, index: int) -> np.ndarray:
        """Fine target ``[C_out, H, W]`` in physical units."""
        return self.fine[index]


def _read_mini_file(path: Path, input_variables, output_variables, invariant_variables):
    """A CorrDiff-Mini file's groups, loaded, and the channels chosen of each.

    Parameters
    ----------
    path : Path
        The NetCDF file.
    input_variables, output_variables : sequence of str or None
        Channels of the ``input`` / ``output`` groups (``None``: all, in file order).
    invariant_variables : sequence of str
        Channels of the ``invariant`` group.

    Returns
    -------
    groups : dict of str to xr.Dataset
        ``input`` (``[N, h, w]`` per variable), ``output`` (``[N, H, W]``) and ``invariant`` (2-D).
    root : xr.Dataset
        ``time`` ``[N]`` and ``coord`` ``[N, 2]``.
    names : tuple of three lists of str
        The input, output and invariant channels.

    Raises
    ------
    FileNotFoundError, DataError, UnknownName
        No such file; a group that cannot be read; a channel a group lacks.
    """
    if not path.exists():
        raise FileNotFoundError(f"dataset.data_path={path}: no such file")
    groups = {}
    for group in ("input", "output", "invariant"):
        try:
            groups[group] = xr.open_dataset(path, group=group).load()
        except OSError as err:
            raise DataError(f"{path}: cannot read group {group!r} ({err})") from err
    root = xr.open_dataset(path).load()
    inputs = list(input_variables or groups["input"].data_vars)
    outputs = list(output_variables or groups["output"].data_vars)
    invariants = list(invariant_variables)
    for group, names in (("input", inputs), ("output", outputs), ("invariant", invariants)):
        missing = [v for v in names if v not in groups[group]]
        if missing:
            raise UnknownName(f"{path}: group {group!r} has no {missing} (has {list(groups[group].data_vars)})")
    return groups, root, (inputs, outputs, invariants)


def _open(source) -> xr.Dataset:
    """An xarray dataset from a Dataset, a file, a glob pattern or a list of files (lazy)."""
    if isinstance(source, xr.Dataset):
        return source
    paths = [source] if isinstance(source, (str, Path)) else list(source)
    files = sorted(f for p in paths for f in (glob.glob(str(p)) or [str(p)]))
    missing = [f for f in files if not os.path.exists(f)]
    if missing:
        raise FileNotFoundError(f"no such file: {missing}")
    parts = [xr.open_zarr(f) if f.endswith(".zarr") else xr.open_dataset(f) for f in files]
    if len(parts) == 1:
        return parts[0]
    # Downloads often come as one folder per variable (ERA5, WeatherBench 2): files holding the
    # same variables are periods to join in time, files holding others are merged beside them.
    by_variables: dict[frozenset, list[xr.Dataset]] = {}
    for part in parts:
        by_variables.setdefault(frozenset(part.data_vars), []).append(part)
    joined = [group[0] if len(group) == 1 else xr.concat(group, dim="time") for group in by_variables.values()]
    if len(joined) == 1:
        return joined[0]
    try:
        return xr.merge(joined, join="exact", compat="override")
    except ValueError as err:
        raise DataError(
            f"{source}: the files of different variables do not share their times and grid ({err})"
        ) from err


def _named(ds: xr.Dataset, names: Sequence[str], what: str) -> xr.Dataset:
    """``ds`` holding ``names``: a name on a pressure level (``temperature_850``) is read from a
    variable on a ``level`` axis (``temperature``), as ERA5 and WeatherBench 2 files store them; a
    forecast in WeatherBench 2's layout gets ``lead_time`` for ``prediction_timedelta``.

    Raises
    ------
    UnknownName
        Naming ``what`` and the missing variables or levels.
    """
    if all(n in ds for n in names) and "prediction_timedelta" not in ds.dims:
        return ds
    try:
        return from_wb2(ds, list(names), what)
    except DataError as err:
        raise UnknownName(str(err)) from err


def same_orientation(coarse: xr.Dataset, fine: xr.Dataset, variable: str) -> xr.Dataset:
    """``coarse`` with its grid axes in the fine data's order (WeatherBench 2 writes latitudes
    south to north, ERA5 north to south), where both carry coordinates."""
    for axis in fine[variable].dims[-2:]:
        if axis in coarse.dims and axis in fine.coords and coarse.sizes[axis] > 1 and fine.sizes[axis] > 1:
            if _rising(coarse[axis].values) != _rising(fine[axis].values):
                coarse = coarse.isel({axis: slice(None, None, -1)})
    return coarse


def _rising(values: np.ndarray) -> bool:
    return bool(values[1] > values[0])


def _latitude(ds: xr.Dataset, dims: tuple[str, str]) -> np.ndarray | None:
    name = next((n for n in ("lat", "latitude") if n in ds.coords and ds[n].dims == (dims[0],)), None)
    return None if name is None else ds[name].values


def _longitude(ds: xr.Dataset, dims: tuple[str, str]) -> np.ndarray | None:
    name = next((n for n in ("lon", "longitude") if n in ds.coords and ds[n].dims == (dims[1],)), None)
    return None if name is None else ds[name].values


def _coarsening_factor(factor: int | None, fine_shape: tuple[int, int], dims: tuple[str, str]) -> int:
    """``factor``, checked to coarsen a fine grid of ``fine_shape``.

    Raises
    ------
    ConfigError
        No ``factor``, or one that does not divide the grid.
    """
    if not factor or factor < 1:
        raise ConfigError("dataset.factor is required when there is no coarse dataset")
    if fine_shape[0] % factor or fine_shape[1] % factor:
        raise ConfigError(
            f"upscaling factor {factor} does not divide the fine grid {fine_shape[0]}x{fine_shape[1]} "
            f"({dims[0]} x {dims[1]})"
        )
    return factor


def _grid_factor(fine_shape: tuple[int, int], coarse_shape: tuple[int, int], factor: int | None) -> int:
    """How many times finer the fine grid is than the coarse one, checked against ``factor``.

    Raises
    ------
    DataError
        Grids that are not a common multiple of each other, or not ``factor`` times.
    """
    (big_h, big_w), (h, w) = fine_shape, coarse_shape
    if big_h % h or big_w % w or big_h // h != big_w // w or (factor and factor != big_h // h):
        raise DataError(
            f"fine grid {big_h}x{big_w} is not {factor or 'a common multiple'} times the coarse grid {h}x{w}"
        )
    return big_h // h


def block_mean(x: np.ndarray, factor: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Area mean over ``factor x factor`` blocks, ``[..., H, W] -> [..., H/f, W/f]``.

    ``weights`` ``[H]`` are cell areas along the first axis (cos latitude on a
    regular latitude-longitude grid); uniform if ``None``.
    """
    *lead, big_h, big_w = x.shape
    w = np.ones(big_h) if weights is None else np.asarray(weights, np.float64)
    blocks = (np.asarray(x, np.float64) * w[:, None]).reshape(*lead, big_h // factor, factor, big_w // factor, factor)
    norm = w.reshape(big_h // factor, factor).sum(-1)[:, None] * factor
    return (blocks.sum(axis=(-3, -1)) / norm).astype(np.float32)


class CoarseFineDataset(torch.utils.data.Dataset):
    """Downscaling samples from xarray data: a coarse/fine pair, or a fine dataset coarsened.

    Variables are ``(time, y, x)`` arrays (the last two dimensions are the
    grid); files are read lazily, one sample at a time.

    Parameters
    ----------
    fine : xr.Dataset, path, glob or list of paths
        Fine-resolution data holding ``output_variables`` (and, without
        ``coarse``, ``input_variables``).
    output_variables : sequence of str
        Fine target channels.
    input_variables : sequence of str, optional
        Coarse input channels (default: ``output_variables``).
    coarse : xr.Dataset, path, glob or list, optional
        Coarse data on a grid ``factor`` times coarser, at the fine data's times.
        Without it the input is the fine data's area mean over ``factor x factor`` blocks
        (cos-latitude weighted when the grid has a latitude axis).
    factor : int, optional
        Upscaling factor; required without ``coarse``, checked with it.
    invariants : xr.Dataset or path, optional
        ``(y, x)`` fields on the fine grid (orography, land-sea mask).
    invariant_variables : sequence of str
        Which of them to append to the input.
    time_range : (start, end), optional
        Inclusive period to use, e.g. ``("2000-01-01", "2000-06-30")``.
    stats : dict or path, optional
        Statistics in the ``stats.json`` layout (validation and test data pass
        the training set's); computed from this data if ``None``.
    stats_samples : int
        Times (evenly spaced) used to compute statistics.
    units : dict, optional
        The training run's units (``{group: {variable: units}}``, :attr:`Domain.units`):
        channels whose data carry other units are converted to them (:mod:`.channel_units`).
    """

    def __init__(
        self,
        fine,
        output_variables: Sequence[str],
        input_variables: Sequence[str] | None = None,
        coarse=None,
        factor: int | None = None,
        invariants=None,
        invariant_variables: Sequence[str] = (),
        time_range=None,
        stats=None,
        stats_samples: int = 256,
        units: dict | None = None,
    ):
        self.sources = {"fine": fine, "coarse": coarse, "invariants": invariants}
        self.output_variables = list(output_variables)
        self.input_variables = list(input_variables or output_variables)
        self.invariant_variables = list(invariant_variables)
        self.time_range = time_range
        fine_ds, coarse_ds = self._datasets()
        self._check_variables(fine_ds, self.output_variables, "fine")
        self._check_variables(
            coarse_ds if coarse_ds is not None else fine_ds,
            self.input_variables,
            "coarse" if coarse_ds is not None else "fine",
        )
        big_h, big_w = self._read_grid(fine_ds, coarse_ds, factor)
        self.times = self._pair_times(fine_ds, coarse_ds)
        groups = {
            "input": (coarse_ds if coarse_ds is not None else fine_ds, self.input_variables),
            "output": (fine_ds, self.output_variables),
        }
        self.units, self.conversions = to_trained(
            data_units(groups), units, {g: n for g, (_, n) in groups.items()}, "dataset"
        )
        self.invariant_fields = self._read_invariants((big_h, big_w))
        self.domain = self._make_domain(stats, stats_samples, (big_h, big_w))

    def _pair_times(self, fine_ds: xr.Dataset, coarse_ds: xr.Dataset | None) -> np.ndarray:
        """The samples' (valid) times: the fine data's, each of which the coarse data must have.

        Raises
        ------
        UnknownName
            Naming fine times the coarse data lack.
        """
        times = fine_ds["time"].values
        if coarse_ds is not None:
            absent = np.setdiff1d(times, coarse_ds["time"].values)
            if absent.size:
                raise UnknownName(f"coarse data lack {absent.size} times of the fine data, e.g. {absent[:3]}")
        return times

    def _read_grid(self, fine_ds: xr.Dataset, coarse_ds: xr.Dataset | None, factor: int | None) -> tuple[int, int]:
        """Set the grids: ``dims``, ``lat``/``lon`` (``[H]``/``[W]`` or ``None``), ``coarse_lat``/
        ``coarse_lon`` (the coarse data's, else block means of the fine ones), ``factor``, the area
        ``weights`` (cos latitude) and ``coarsens_input``; return the fine grid's ``(H, W)``.

        Without coarse data the input is the fine data coarsened by ``factor``; coarse data on the
        fine grid (a model's output there) are coarsened the same way when ``factor`` > 1.

        Raises
        ------
        DataError, ConfigError
            A coarse grid the fine one is not ``factor`` times; no usable ``factor`` without one.
        """
        dims = fine_ds[self.output_variables[0]].dims[-2:]
        self.dims = dims
        fine_shape = tuple(fine_ds.sizes[d] for d in dims)
        self.lat, self.lon = _latitude(fine_ds, dims), _longitude(fine_ds, dims)
        self.weights = None if self.lat is None else np.cos(np.deg2rad(self.lat))
        coarse_dims = None if coarse_ds is None else coarse_ds[self.input_variables[0]].dims[-2:]
        coarse_shape = None if coarse_ds is None else tuple(coarse_ds.sizes[d] for d in coarse_dims)
        self.coarsens_input = coarse_ds is None or (bool(factor) and factor > 1 and coarse_shape == fine_shape)
        if self.coarsens_input:
            self.factor = _coarsening_factor(factor, fine_shape, dims)
            if coarse_ds is not None:
                log.info("dataset.coarse is on the fine grid %s: coarsened by dataset.factor=%d", fine_shape, factor)
            self.coarse_lat = None if self.lat is None else self.lat.reshape(-1, self.factor).mean(1)
            self.coarse_lon = None if self.lon is None else self.lon.reshape(-1, self.factor).mean(1)
        else:
            self.factor = _grid_factor(fine_shape, coarse_shape, factor)
            self.coarse_lat, self.coarse_lon = _latitude(coarse_ds, coarse_dims), _longitude(coarse_ds, coarse_dims)
        return fine_shape

    def _make_domain(self, stats, stats_samples: int, shape: tuple[int, int]) -> Domain:
        """The :class:`Domain` of these data: ``stats`` as given (a dict, or a ``stats.json`` path),
        or computed over ``stats_samples`` times; ``(H, W)`` ``shape``; 2-D ``lat``/``lon``
        ``[H, W]`` when the grid has both axes. Needs the grid, units and invariants set."""
        if stats is None:
            stats = self.compute_stats(stats_samples)
        elif not isinstance(stats, dict):
            stats = json.loads(Path(stats).read_text())
        lat2d = lon2d = None
        if self.lat is not None and self.lon is not None:
            lat2d, lon2d = np.meshgrid(self.lat, self.lon, indexing="ij")
        return Domain(
            input_variables=self.input_variables,
            output_variables=self.output_variables,
            invariant_variables=self.invariant_variables,
            stats=stats,
            factor=self.factor,
            shape=shape,
            lat=lat2d,
            lon=lon2d,
            coarse_lat=self.coarse_lat,
            coarse_lon=self.coarse_lon,
            invariants=self.invariant_fields,
            units=self.units,
        )

    # ------------------------------------------------------------ reading
    def _datasets(self):
        """The (lazily opened) fine and coarse datasets of this process, cut to ``time_range``."""
        if getattr(self, "_pid", None) != os.getpid():  # DataLoader workers open their own handles
            from_fine = self.output_variables + (self.input_variables if self.sources["coarse"] is None else [])
            from_fine = list(dict.fromkeys(from_fine))
            fine = _named(_open(self.sources["fine"]), from_fine, f"dataset.fine={self.sources['fine']}")
            coarse = None
            if self.sources["coarse"] is not None:
                what = f"dataset.coarse={self.sources['coarse']}"
                coarse = _named(_open(self.sources["coarse"]), self.input_variables, what)
                coarse = same_orientation(coarse, fine, self.output_variables[0])
            if self.time_range is not None:
                period = slice(*(pd.Timestamp(t) for t in self.time_range))
                fine = fine.sel(time=period)
                if len(fine.time) == 0:
                    raise ConfigError(f"dataset.time_range={list(self.time_range)}: no fine data in that period")
            self._fine, self._coarse, self._pid = fine, coarse, os.getpid()
        return self._fine, self._coarse

    @staticmethod
    def _check_variables(ds, names, which):
        missing = [v for v in names if v not in ds]
        if missing:
            raise UnknownName(f"{which} data have no {missing} (have {list(ds.data_vars)})")

    def _read_invariants(self, shape):
        if not self.invariant_variables:
            return None
        if self.sources["invariants"] is None:
            raise ConfigError(f"dataset.invariant_variables={self.invariant_variables} but no dataset.invariants")
        ds = _open(self.sources["invariants"])
        self._check_variables(ds, self.invariant_variables, "invariant")
        fields = np.stack([np.asarray(ds[v].squeeze().values, np.float32) for v in self.invariant_variables])
        if fields.shape[-2:] != shape:
            raise DataError(f"invariants of shape {fields.shape[-2:]} on a fine grid of {shape}")
        return fields

    def coarse_fields(self, index: int) -> np.ndarray:
        """Coarse input ``[C_in, h, w]`` in physical units (the training run's)."""
        values = self.input_values(index)
        if self.coarsens_input:
            values = block_mean(values, self.factor, self.weights)
        return converted(values, self.conversions["input"])

    def input_values(self, index: int) -> np.ndarray:
        """The input variables of sample ``index`` as stored, ``[C_in, h, w]`` (or ``[C_in, H, W]``
        when they are coarsened: the fine data, or coarse data on the fine grid)."""
        fine, coarse = self._datasets()
        sample = fine.isel(time=index) if coarse is None else coarse.sel(time=self.times[index])
        return np.stack([sample[v].values for v in self.input_variables])

    def fine_fields(self, index: int) -> np.ndarray:
        """Fine target ``[C_out, H, W]`` in physical units (the training run's)."""
        sample = self._datasets()[0].isel(time=self._fine_time_index(index))
        return converted(np.stack([sample[v].values for v in self.output_variables]), self.conversions["output"])

    def _fine_time_index(self, index: int) -> int:
        """The fine time of sample ``index``: the sample's own (a forecast's is its valid time)."""
        return index

    def compute_stats(self, samples: int) -> dict:
        """Mean and std per channel over ``samples`` evenly spaced times (``stats.json`` layout)."""
        picks = np.unique(np.linspace(0, len(self.times) - 1, min(samples, len(self.times))).astype(int))
        coarse = np.stack([self.coarse_fields(i) for i in picks])
        fine = np.stack([self.fine_fields(i) for i in picks])

        def table(names, arr):  # arr [..., C, H, W]; a constant field gets std 1
            return {
                v: {"mean": float(arr[..., k, :, :].mean()), "std": float(arr[..., k, :, :].std()) or 1.0}
                for k, v in enumerate(names)
            }

        inv = self.invariant_fields
        return {
            "input": table(self.input_variables, coarse),
            "output": table(self.output_variables, fine),
            "invariant": table(self.invariant_variables, inv) if inv is not None else {},
        }

    def __len__(self) -> int:
        return len(self.times)

    def __getitem__(self, index: int) -> dict:
        x = self.domain.make_input(self.coarse_fields(index))
        y = self.domain.normalize_output(self.fine_fields(index))
        return {"input": torch.from_numpy(x), "target": torch.from_numpy(y), "index": index}


def write_mini_file(
    path,
    stats_path,
    samples: int = 8,
    shape=(64, 64),
    factor: int = 8,
    inputs=("10u", "10v", "2t", "tp"),
    outputs=("10u", "10v"),
    invariants=("elev_mean", "lsm_mean"),
    invariant_shape=(96, 96),
    seed: int = 0,
) -> None:
    """Write a small file in the CorrDiff-Mini layout, and its ``stats.json``.

    Fields are smooth random waves; each fine output is a coarse input wave
    plus fine-scale detail tied to the invariants, so that downscaling is
    learnable.
    """
    inv, coords, fine, coarse = _mini_fields(
        np.random.default_rng(seed), samples, shape, factor, inputs, outputs, invariants, invariant_shape
    )
    root = xr.Dataset(
        {
            "time": ("sample", np.arange(samples) * np.timedelta64(1, "h") + np.datetime64("2020-01-01")),
            "coord": (("sample", "xy"), coords),
        }
    )
    write_netcdf(
        path,
        root,
        {
            group: xr.Dataset({n: (dims, np.asarray(source[n], np.float32)) for n in names})
            for group, names, source, dims in (
                ("input", inputs, coarse, ("sample", "y_lr", "x_lr")),
                ("output", outputs, fine, ("sample", "y", "x")),
                ("invariant", invariants, inv, ("y_inv", "x_inv")),
            )
        },
    )
    stats = {
        group: {n: {"mean": float(np.mean(src[n])), "std": float(np.std(src[n]))} for n in names}
        for group, names, src in (("input", inputs, coarse), ("output", outputs, fine), ("invariant", invariants, inv))
    }
    write_atomic(stats_path, json.dumps(stats, indent=1))


def _mini_fields(rng, samples, shape, factor, inputs, outputs, invariants, invariant_shape):
    """The synthetic fields of :func:`write_mini_file` (same arguments, ``rng`` seeded).

    Returns
    -------
    inv : dict of str to np.ndarray
        ``[H_inv, W_inv]`` invariant waves.
    coords : np.ndarray
        ``[N, 2]`` each sample's window corner in the invariant grid.
    fine, coarse : dict of str to np.ndarray
        ``[N, H, W]`` float32 per input and output variable, and their ``[N, H/f, W/f]`` block means.
    """
    big_h, big_w = shape
    gy, gx = np.meshgrid(np.arange(invariant_shape[0]), np.arange(invariant_shape[1]), indexing="ij")
    inv = {name: np.sin(gy / (1.3 + 0.4 * k) + k) * np.cos(gx / (1.1 + 0.3 * k)) for k, name in enumerate(invariants)}
    coords = np.stack(
        [
            rng.integers(0, invariant_shape[0] - big_h + 1, samples),
            rng.integers(0, invariant_shape[1] - big_w + 1, samples),
        ],
        axis=1,
    )
    yy, xx = np.meshgrid(np.arange(big_h) / big_h, np.arange(big_w) / big_w, indexing="ij")
    fine, coarse = {}, {}
    for k, name in enumerate(sorted(set(inputs) | set(outputs))):
        phase = rng.uniform(0, 2 * np.pi, (samples, 1, 1))
        field = 3 * np.sin(2 * np.pi * (yy + k * xx) + phase) + k
        # fine-scale detail tied to the invariants, so that downscaling is learnable
        detail = np.stack([sum(inv[n][i : i + big_h, j : j + big_w] for n in invariants) for i, j in coords])
        fine[name] = (field + 0.5 * detail).astype(np.float32)
        coarse[name] = block_mean(fine[name], factor)
    return inv, coords, fine, coarse


__all__ = ["HRRRMiniDataset", "CoarseFineDataset", "block_mean", "upsample", "write_mini_file"]
