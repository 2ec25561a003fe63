# SPDX-License-Identifier: Apache-2.0
"""Forecasts made elsewhere (a WeatherBench 2 baseline such as IFS HRES, another
model's output, or a run's own saved forecasts), scored next to the model.

``climax evaluate external.NAME=PATH_OR_URL`` opens a Zarr in WeatherBench 2's
layout (:mod:`..data.wb2`; public ``gs://`` and ``s3://`` buckets
anonymously), takes the scored variables at the evaluation's initial times
and leads, and brings them to the scored grid: the same points in another
order are reordered, another grid is regridded conservatively. Its fields
are brought to the run's units (:mod:`..data.units`; without a ``units``
attribute only as ``eval.assume_units`` states), its leads may be timedeltas
or numbers (hours unless their ``units`` say otherwise), and duplicate times
or leads are refused (:mod:`..data.times`). What the file lacks (an initial
time at a lead, a whole lead) is counted and reported in the scorecard, never
silently left out; its scores then rest on fewer samples (the ``samples``
column).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import xarray as xr

from ..data.formats import open_zarr
from ..data.regrid import regrid
from ..data.sources import on_grid_of
from ..data.times import axis_hours, check_unique, standard_times
from ..data.units import to_run_units
from ..data.wb2 import from_wb2
from ..errors import DataError
from .initial import FILL_BOUND

logger = logging.getLogger(__name__)

#: How a user states units of an evaluation's fields without the attribute (``NAME``: the variable).
EVAL_STATING = "eval.assume_units.NAME=UNIT, or eval.assume_units=run for the run's units"


def open_wb2_zarr(source: str, what: str) -> xr.Dataset:
    """A WB2-layout Zarr store, local or at an fsspec URL, lazily; a :class:`DataError` naming ``what``
    otherwise."""
    try:
        return open_zarr(source)
    except Exception as err:  # noqa: BLE001 -- any failure to open or reach it: one line naming it
        cause = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(
            f"{what}: {source} cannot be opened as a Zarr store ({type(err).__name__}: {cause[:300]})"
        ) from err


class ExternalForecast:
    """One external forecast, ready to hand out blocks on the scored grid.

    Parameters
    ----------
    name, source : str
        Its name in the scorecard, and its path or URL.
    variables : list of str
        The scored variables (our names).
    grid : (np.ndarray, np.ndarray)
        The store's ``lat`` ``[H]`` and ``lon`` ``[W]``.
    rows, cols : np.ndarray
        The scored part of that grid (a regional run's), as indices.
    units : dict
        The run's units per variable: the file's fields are brought to them (:mod:`..data.units`).
    assumed : dict, optional
        Units of fields without a ``units`` attribute (``eval.assume_units``); by default such
        fields are refused.
    """

    def __init__(
        self,
        name: str,
        source: str,
        variables: list[str],
        grid: tuple[np.ndarray, np.ndarray],
        rows: np.ndarray,
        cols: np.ndarray,
        units: dict,
        assumed: dict | None = None,
    ):
        self.name, self.source, self.variables = name, str(source), list(variables)
        what = f"external.{name} ({self.source})"
        self.ds = from_wb2(open_wb2_zarr(self.source, f"external.{name}"), self.variables, what)
        for dim in ("time", "lead_time", "lat", "lon"):
            if dim not in self.ds.dims:
                raise DataError(
                    f"{what} has no {dim} axis (dims {dict(self.ds.sizes)}): not a forecast in WeatherBench 2's layout"
                )
        self.scales = np.array(
            [
                to_run_units(v, self.ds[v].attrs.get("units"), units, assumed or {}, what, EVAL_STATING)
                for v in self.variables
            ]
        )  # [V, 2]: (scale, offset) to the run's units
        self.grid, self.rows, self.cols = grid, np.asarray(rows), np.asarray(cols)
        self.times = standard_times(self.ds.time.values, what)
        check_unique(self.times, what)
        self.ds = self.ds.assign_coords(time=self.times)
        self.leads = axis_hours(self.ds.lead_time.values, self.ds.lead_time.attrs.get("units"), what)
        self.missing: dict[float, list[str]] = {}

    def block(self, stamps: np.ndarray, lead: float) -> tuple[list[int], torch.Tensor | None]:
        """The forecast from the initial times ``stamps`` at ``lead`` hours: the indices of the
        stamps it has, and their fields ``[b, V, h, w]`` (``[M, b, V, h, w]`` for an ensemble).

        Raises
        ------
        DataError
            For non-finite values (or fill values, :data:`.initial.FILL_BOUND`), naming the variable
            and the initial time.
        """
        stamps = np.asarray(stamps, "datetime64[ns]")
        have = np.isin(stamps, self.times)
        lead_index = np.flatnonzero(np.isclose(self.leads, lead))
        if not lead_index.size:
            have[:] = False
        self.missing.setdefault(lead, []).extend(str(s)[:16] for s in stamps[~have])
        index = np.flatnonzero(have).tolist()
        if not index:
            return [], None
        sel = self.ds.isel(lead_time=int(lead_index[0])).sel(time=stamps[have])
        sel = self._on_grid(sel.load())
        dims = (("member",) if "member" in sel.dims else ()) + ("time", "lat", "lon")
        values = np.stack([sel[v].transpose(*dims).values for v in self.variables], axis=-3)
        values = values * self.scales[:, 0, None, None] + self.scales[:, 1, None, None]
        bad = ~np.isfinite(values) | (np.abs(values) >= FILL_BOUND)  # fill values left without their attribute
        if bad.any():
            first = np.argwhere(bad)[0]  # [(member,) time, variable, lat, lon]
            t, j = int(first[-4]), int(first[-3])
            raise DataError(
                f"external.{self.name}: {self.variables[j]} has non-finite values at {lead:g} h "
                f"from {str(stamps[have][t])[:16]} ({self.source})"
            )
        return index, torch.from_numpy(values.astype(np.float32))

    def _on_grid(self, ds: xr.Dataset) -> xr.Dataset:
        lat, lon = self.grid
        ref = xr.Dataset(coords={"lat": lat, "lon": lon})
        try:
            ds = on_grid_of(ds, ref, f"external.{self.name}", "the store")
        except DataError:
            ds = regrid(ds, lat, lon, "conservative")
        return ds.isel(lat=self.rows, lon=self.cols)

    def report(self) -> dict:
        """What was missing, per lead: counts and the first initial times."""
        out = {f"{lead:g}": {"missing": len(m), "first": m[:5]} for lead, m in self.missing.items() if m}
        if out:
            logger.warning("external.%s lacks some initial times or leads: %s", self.name, out)
        return {"source": self.source, "missing": out}
