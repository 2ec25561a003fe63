# SPDX-License-Identifier: Apache-2.0
"""A forecast from an initial-condition file written to a file (``climax forecast``).

What may be replaced is decided before any work: never an input, never what
climax did not write (:mod:`..files`). The output is a NetCDF file, or with
``wb2=True`` a Zarr folder in WeatherBench 2's layout that WB2's tools read;
either way it records what made it (:meth:`.Run.provenance`: the package,
the run, the model file and its SHA-256, the device).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import xarray as xr

from ..data.sources import open_file
from ..data.wb2 import WB2_FORECAST, to_wb2, written_by_climax
from ..errors import InputError
from ..files import check_file_output, output_folder, write_netcdf
from .ensembles import EnsembleSpec
from .inference import forecast
from .run import Run


def write_forecast(
    run_path: str | Path,
    input_path: str | Path,
    lead_times: Sequence,
    output: str | Path,
    *,
    wb2: bool = False,
    overwrite: bool = False,
    device=None,
    ensemble: EnsembleSpec | None = None,
    option: str = "--run",
    **options,
) -> xr.Dataset:
    """Forecast from the initial condition in ``input_path`` with the run (or model file) ``run_path``
    and write it to ``output``.

    Parameters
    ----------
    run_path : path
        A training run folder, or a model file inside one (:meth:`.Run.load`).
    input_path : path
        The initial condition (NetCDF, or anything :func:`..data.sources.open_file` opens).
    lead_times : sequence, optional
        Hours (``24``) or durations (``"24h"``, ``"5D"``); for a run of time-mean windows the
        starts of some of its windows, ``None`` for all (:func:`.inference.forecast`).
    output : path
        A NetCDF file, or with ``wb2`` a WeatherBench 2 Zarr folder.
    overwrite : bool
        Replace an existing output (a file, or a WB2 forecast folder climax wrote).
    device : str or torch.device, optional
        Where the model runs (:func:`..engine.plan.decide_device`: unset, CUDA when present).
    ensemble : EnsembleSpec, optional
        Members and their perturbation (default: one member).
    option : str
        The name ``run_path`` is given by in errors.
    **options
        ``regrid_method``, ``nan_policy``, ``assume_units`` of :func:`.inference.forecast`.

    Returns
    -------
    xr.Dataset
        The forecast as written, ``(member, time, lead_time, lat, lon)`` per variable
        (``window`` instead of ``lead_time`` for a run of time-mean windows).
    """
    inputs = [input_path, run_path]
    run = Run.load(run_path, device, option)
    if wb2:
        check_wb2(run, f"{option} {run_path}")
        with output_folder(
            output, WB2_FORECAST, overwrite=overwrite, inputs=inputs, legacy=written_by_climax
        ) as folder:
            out = _forecast(run, input_path, lead_times, ensemble, options)
            to_wb2(out, dict(out.attrs)).to_zarr(folder, zarr_format=2, consolidated=True)
        return out
    check_file_output(output, overwrite=overwrite, inputs=inputs)
    out = _forecast(run, input_path, lead_times, ensemble, options)
    write_netcdf(output, out)  # atomic: an existing output stays intact if writing fails
    return out


def check_wb2(run: Run, named: str) -> None:
    """Refuse WeatherBench 2's layout for a run of time-mean windows (it has no axis for them)."""
    if run.info.windows:
        raise InputError(
            f"{named}: this run predicts time-mean windows, which WeatherBench 2's layout has no axis for; "
            "write NetCDF (--format netcdf)"
        )


def _forecast(run: Run, input_path, lead_times, ensemble, options: dict) -> xr.Dataset:
    """The forecast with what made it in its attributes."""
    with open_file(input_path) as ic:
        out = forecast(run, ic.load(), lead_times, ensemble=ensemble, **options)
    return out.assign_attrs(run.provenance())
