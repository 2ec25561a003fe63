# SPDX-License-Identifier: Apache-2.0
"""A trained downscaling run applied to coarse fields: the task's "forecast".

:func:`downscale_coarse` takes an ``xarray.Dataset`` of the run's input variables on
the input store's grid and returns the target variables on the fine grid, in
physical units, with the time coordinate kept. :func:`write_downscaled` is
``climax forecast --run RUN --input coarse.nc --output fine.nc`` for a
downscaling run: the output is written atomically, and an existing file is
replaced only with ``overwrite``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from omegaconf import OmegaConf

from ..data.sources import open_file
from ..data.streamed import open_store
from ..engine import checkpointing
from ..engine.plan import decide_device
from ..engine.run_folder import read_run_record
from ..engine.run_info import RunInfo
from ..errors import ConfigError, InputError
from ..files import check_file_output, sha256, write_netcdf
from ..models import ClimaX, mdlus
from .data import bilinear_matrices, interpolate
from .model import ResidualMap, predict, residual_map

#: The ``task.package`` of a downscaling run's saved config.
DOWNSCALING_PACKAGE = "climate_downscaling"


def is_downscaling_run(path: str | Path) -> bool:
    """Whether ``path`` is the folder of a run of this task (its ``config.yaml`` names the package)."""
    saved = Path(path) / "config.yaml"
    if not saved.is_file():
        return False
    return OmegaConf.select(OmegaConf.load(saved), "task.package") == DOWNSCALING_PACKAGE


@dataclass
class DownscalingRun:
    """The model and ``run.json`` of a downscaling run folder.

    Attributes
    ----------
    model : ClimaX
        In eval mode, on ``device``.
    info : RunInfo
    run_dir, checkpoint : Path
        The run folder and the model file the weights came from.
    device : torch.device
    """

    model: ClimaX
    info: RunInfo
    run_dir: Path
    checkpoint: Path
    device: torch.device

    @classmethod
    def load(cls, run_dir: str | Path, device=None, device_option: str = "device") -> DownscalingRun:
        """The newest checkpoint that loads (:func:`..engine.checkpointing.load_model`), on ``device``
        (:func:`..engine.plan.decide_device`).

        Raises
        ------
        ConfigError
            ``run_dir`` is not a downscaling run, or a device this machine lacks (naming ``device_option``).
        """
        device = decide_device(device, device_option)
        if not is_downscaling_run(run_dir):
            raise ConfigError(f"{run_dir} is not a climate_downscaling run folder (its config.yaml names another task)")
        info = read_run_record(run_dir)
        load = lambda file: mdlus.load_module(file, ClimaX)
        model, file = checkpointing.load_model(Path(run_dir) / "checkpoints", load)
        return cls(model.to(device).eval(), info, Path(run_dir), file, device)

    @property
    def facts(self) -> dict:
        """The task's own record (``run.json``'s ``downscaling``)."""
        return self.info.extra["downscaling"]

    @property
    def statistics(self) -> dict:
        """``{"input": ..., "target": ...}`` as :class:`.data.StorePair` holds them."""
        return {"input": self.facts["input_statistics"], "target": dict(self.info.statistics)}

    @property
    def residual(self) -> ResidualMap | None:
        if not self.facts["residual"]:
            return None
        return residual_map(self.facts["model_inputs"], self.info.out_variables, self.statistics)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized targets ``[B, V_out, H, W]`` from model inputs ``x`` ``[B, V, H, W]``."""
        return predict(
            self.model, x.to(self.device), self.facts["model_inputs"], self.info.out_variables, self.residual
        )

    def provenance(self) -> dict:
        """What made an output: the run folder, the model file and its SHA-256, the device."""
        return {
            "run_dir": str(self.run_dir.resolve()),
            "checkpoint": str(self.checkpoint.resolve()),
            "checkpoint_sha256": sha256(self.checkpoint),
            "device": str(self.device),
        }


def coarse_fields(run: DownscalingRun, coarse: xr.Dataset) -> xr.Dataset:
    """The run's inputs of ``coarse`` as ``(time, lat, lon)``, latitudes south to north, longitudes
    ascending in ``[0, 360)``, checked against the run's input grid and units.

    Raises
    ------
    InputError
        Naming the variables the dataset lacks, a grid other than the input store's, a unit
        other than the input store's, or a variable with non-finite values.
    """
    facts = run.facts
    coarse = coarse.rename({k: v for k, v in (("latitude", "lat"), ("longitude", "lon")) if k in coarse.dims})
    missing = [v for v in facts["input_variables"] if v not in coarse]
    if missing:
        raise InputError(f"the coarse dataset lacks the run's inputs {missing}; it holds {list(coarse.data_vars)}")
    fields = coarse[facts["input_variables"]]
    if "time" not in fields.dims:
        fields = fields.expand_dims("time")
    fields = fields.assign_coords(lon=fields.lon % 360).sortby("lat").sortby("lon").transpose("time", "lat", "lon")
    want_lat, want_lon = np.asarray(facts["input_lat"]), np.asarray(facts["input_lon"]) % 360
    if (
        fields.lat.shape != want_lat.shape
        or fields.lon.shape != want_lon.shape
        or not (np.allclose(fields.lat, want_lat, atol=1e-4) and np.allclose(fields.lon, np.sort(want_lon), atol=1e-4))
    ):
        raise InputError(
            f"the coarse dataset's grid ({fields.lat.size} x {fields.lon.size}) is not the run's input grid "
            f"({want_lat.size} x {want_lon.size}, that of {facts['input_root']}); regrid it to that grid first"
        )
    for name in facts["input_variables"]:
        have, want = fields[name].attrs.get("units"), facts["input_units"].get(name)
        if have is not None and want is not None and have != want:
            raise InputError(f"{name} is in {have!r}; the run's input store holds it in {want!r}")
        if not np.isfinite(fields[name].values).all():
            raise InputError(f"{name} holds non-finite values (NaN or inf); fill them before downscaling")
    return fields


def constant_fields(run: DownscalingRun) -> torch.Tensor:
    """The run's constants ``[C, H, W]`` from its target store, normalized (none: ``[0, H, W]``)."""
    names = run.facts["constants"]
    if not names:
        return torch.zeros(0, len(run.info.lat), len(run.info.lon))
    store = open_store(run.info.data_root)
    fields = store.shards("train")[0].read(names, 0)
    mean = np.array([run.info.statistics[n]["mean"] for n in names], np.float32)[:, None, None]
    std = np.array([run.info.statistics[n]["std"] for n in names], np.float32)[:, None, None]
    return torch.from_numpy((fields - mean) / std).float()


@torch.no_grad()
def downscale_coarse(run: DownscalingRun | str | Path, coarse: xr.Dataset, batch_size: int = 8) -> xr.Dataset:
    """The run's target variables on its fine grid from the coarse fields of ``coarse``.

    Parameters
    ----------
    run : DownscalingRun or path
        A loaded run, or its folder (loaded on the default device).
    coarse : xr.Dataset
        The run's input variables on its input grid (``lat``/``lon`` or ``latitude``/``longitude``),
        in the input store's units, with or without a ``time`` dimension.
    batch_size : int
        Times per model call.

    Returns
    -------
    xr.Dataset
        ``(time, lat, lon)`` per output variable, physical units, the input's times kept.
    """
    run = run if isinstance(run, DownscalingRun) else DownscalingRun.load(run)
    facts, info = run.facts, run.info
    fields = coarse_fields(run, coarse)
    stats = run.statistics["input"]
    mean = np.array([stats[v]["mean"] for v in facts["input_variables"]], np.float32)[:, None, None]
    std = np.array([stats[v]["std"] for v in facts["input_variables"]], np.float32)[:, None, None]
    values = np.stack([fields[v].values for v in facts["input_variables"]], 1).astype(np.float32)
    x = torch.from_numpy((values - mean) / std)
    matrices = bilinear_matrices(fields.lat.values, fields.lon.values, np.asarray(info.lat), np.asarray(info.lon))
    constants = constant_fields(run)
    outs = []
    for chunk in x.split(batch_size):
        fine = torch.cat([interpolate(chunk, matrices), constants.expand(len(chunk), -1, -1, -1)], 1)
        outs.append(run.predict(fine).float().cpu())
    pred = torch.cat(outs).numpy()
    data = {}
    for k, name in enumerate(info.out_variables):
        s = info.statistics[name]
        attrs = {"units": info.units[name]} if name in info.units else {}
        data[name] = (("time", "lat", "lon"), pred[:, k] * s["std"] + s["mean"], attrs)
    coords = {"lat": np.asarray(info.lat), "lon": np.asarray(info.lon)}
    if "time" in fields.coords:
        coords["time"] = fields.time.values
    return xr.Dataset(data, coords=coords, attrs=run.provenance())


def write_downscaled(
    run_path: str | Path, input_path: str | Path, output: str | Path, *, overwrite: bool = False, device=None
) -> xr.Dataset:
    """Downscale the coarse file ``input_path`` with the run ``run_path`` into the NetCDF ``output``.

    What may be replaced is decided before any work (never an input; an existing file only with
    ``overwrite``); the file is written atomically and records what made it.

    Returns
    -------
    xr.Dataset
        The fine fields as written.
    """
    check_file_output(output, overwrite=overwrite, inputs=[input_path, run_path])
    run = DownscalingRun.load(run_path, device)
    with open_file(input_path) as coarse:
        out = downscale_coarse(run, coarse.load())
    write_netcdf(output, out)  # atomic: an existing output stays intact if writing fails
    return out
