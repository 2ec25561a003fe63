# SPDX-License-Identifier: Apache-2.0
"""ClimateBench (Watson-Parris et al., 2022) files and samples.

Each scenario has two NetCDF files:

* ``inputs_<scenario>.nc``: yearly ``CO2`` (global cumulative emissions) and
  ``CH4`` (global emissions) on ``time``, ``SO2`` and ``BC`` maps on
  ``(time, latitude, longitude)``;
* ``outputs_<scenario>.nc``: ``tas``, ``diurnal_temperature_range``, ``pr``,
  ``pr90`` on ``(member, time, lat, lon)``; members are averaged.

Global inputs are broadcast to maps, every field is regridded to the model
grid (:func:`~physicsnemo_climax.data.regrid.regrid`), precipitation is given
in mm/day. The SSP scenarios start in 2015: their first years take their
history from the ``historical`` inputs. A sample is ``history`` consecutive
years of inputs and the target field of the last one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from ..data.regrid import regrid
from ..errors import ConfigError, DataError, UnknownName

INPUTS = ("CO2", "SO2", "CH4", "BC")
TARGETS = ("tas", "diurnal_temperature_range", "pr", "pr90")
TRAIN_SCENARIOS = ("ssp126", "ssp370", "ssp585", "historical", "hist-GHG", "hist-aer")
TEST_SCENARIO = "ssp245"
SECONDS_PER_DAY = 86400.0


@dataclass
class Scenario:
    """One scenario on the model grid.

    Attributes
    ----------
    name : str
    years : np.ndarray
        ``[T]`` calendar years.
    inputs : np.ndarray
        ``[T, V, H, W]`` in :data:`INPUTS` order, physical units.
    outputs : dict of str to np.ndarray
        ``[T, H, W]`` per target (``pr``, ``pr90`` in mm/day).
    lat, lon : np.ndarray
    """

    name: str
    years: np.ndarray
    inputs: np.ndarray
    outputs: dict
    lat: np.ndarray
    lon: np.ndarray


def _standard(ds: xr.Dataset) -> xr.Dataset:
    names = {"latitude": "lat", "longitude": "lon"}
    return ds.rename({k: v for k, v in names.items() if k in ds.dims or k in ds.coords})


def _years(ds: xr.Dataset) -> np.ndarray:
    t = ds["time"].values
    return t.astype("datetime64[Y]").astype(int) + 1970 if np.issubdtype(t.dtype, np.datetime64) else t.astype(int)


def read_scenario(
    root: str | Path,
    name: str,
    grid: tuple[np.ndarray, np.ndarray] | None = None,
    targets: Sequence[str] = TARGETS,
    method: str = "conservative",
) -> Scenario:
    """Read ``inputs_<name>.nc`` and ``outputs_<name>.nc`` from ``root``, on ``grid`` ``(lat, lon)``.

    Raises
    ------
    FileNotFoundError, KeyError, ValueError
        Naming the file and the missing variable or mismatched years.
    """
    paths = {kind: Path(root) / f"{kind}_{name}.nc" for kind in ("inputs", "outputs")}
    for path in paths.values():
        if not path.exists():
            raise FileNotFoundError(f"ClimateBench scenario {name!r}: {path} does not exist")
    with xr.open_dataset(paths["inputs"]) as raw_in, xr.open_dataset(paths["outputs"]) as raw_out:
        ins, outs = _standard(raw_in.load()), _standard(raw_out.load())
    for path, ds, names in ((paths["inputs"], ins, INPUTS), (paths["outputs"], outs, targets)):
        missing = [v for v in names if v not in ds]
        if missing:
            raise UnknownName(f"{path}: no variable {missing} (has {list(ds.data_vars)})")
    if "member" in outs.dims:
        outs = outs.mean("member", keep_attrs=True)
    years_in, years_out = _years(ins), _years(outs)
    if not np.array_equal(years_in, years_out):
        raise DataError(
            f"{paths['inputs']} has years {years_in[0]}..{years_in[-1]} ({len(years_in)}), "
            f"{paths['outputs']} has {years_out[0]}..{years_out[-1]} ({len(years_out)})"
        )
    lat, lon = (ins.lat.values, ins.lon.values) if grid is None else (np.asarray(grid[0]), np.asarray(grid[1]))
    maps = {}
    for v in ("SO2", "BC"):
        field = ins[v].transpose("time", "lat", "lon")
        maps[v] = field.values if grid is None else regrid(field, lat, lon, method).values
    shape = (len(years_in), len(lat), len(lon))
    inputs = np.stack(
        [np.broadcast_to(ins[v].values.reshape(-1, 1, 1), shape) if v in ("CO2", "CH4") else maps[v] for v in INPUTS],
        axis=1,
    ).astype(np.float32)
    outputs = {}
    for v in targets:
        field = outs[v].transpose("time", "lat", "lon")
        if grid is not None:
            field = regrid(field, lat, lon, method)
        values = field.values.astype(np.float32)
        if v in ("pr", "pr90") and outs[v].attrs.get("units", "kg m-2 s-1") != "mm/day":
            values = values * SECONDS_PER_DAY
        outputs[v] = values
    return Scenario(name=name, years=years_in, inputs=inputs, outputs=outputs, lat=lat, lon=lon)


def input_statistics(scenarios: Sequence[Scenario]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std ``[V]`` of each input over all years and cells of ``scenarios``."""
    data = np.concatenate([s.inputs for s in scenarios]).astype(np.float64)
    std = data.std(axis=(0, 2, 3))
    return data.mean(axis=(0, 2, 3)).astype(np.float32), np.where(std > 0, std, 1.0).astype(np.float32)


class ClimateBenchDataset(torch.utils.data.Dataset):
    """``history``-year input windows and the target of their last year.

    Parameters
    ----------
    scenarios : sequence of Scenario
    targets : sequence of str
        Outputs of the scenarios to predict.
    history : int
        Years per sample (10 in ClimaX).
    stats : (mean, std)
        Input normalization ``[V]`` (outputs are not normalized).
    historical : Scenario, optional
        Supplies the years before an SSP scenario's start.

    Items are ``{"x": [history, V, H, W], "y": [len(targets), H, W], "year": int}``.
    """

    def __init__(
        self,
        scenarios: Sequence[Scenario],
        targets: Sequence[str],
        history: int,
        stats,
        historical: Scenario | None = None,
    ):
        self.targets, self.history = list(targets), history
        self.mean, self.std = (np.asarray(a, np.float32)[:, None, None] for a in stats)
        self.inputs, self.outputs, self.index = [], [], []
        for s in scenarios:
            missing = [v for v in self.targets if v not in s.outputs]
            if missing:
                raise UnknownName(f"scenario {s.name!r} has no target {missing}")
            inputs, first = s.inputs, 0
            if s.name.startswith("ssp") and historical is not None:
                before = historical.years < s.years[0]
                prefix = historical.inputs[before][-(history - 1) :] if history > 1 else historical.inputs[:0]
                inputs, first = np.concatenate([prefix, s.inputs]), len(prefix)
            start = max(first, history - 1)
            if len(inputs) - start < 1:
                raise ConfigError(f"scenario {s.name!r}: {len(s.years)} years cannot make a {history}-year history")
            k = len(self.inputs)
            self.inputs.append(inputs)
            self.outputs.append(np.stack([s.outputs[v] for v in self.targets], axis=1))
            self.index += [(k, t, int(s.years[t - first])) for t in range(start, len(inputs))]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        k, t, year = self.index[i]
        first = len(self.inputs[k]) - len(self.outputs[k])
        x = (self.inputs[k][t - self.history + 1 : t + 1] - self.mean) / self.std
        return {
            "x": torch.from_numpy(np.ascontiguousarray(x, np.float32)),
            "y": torch.from_numpy(self.outputs[k][t - first]),
            "year": year,
        }
