# SPDX-License-Identifier: Apache-2.0
"""An initial condition as it arrives, checked and brought to what the run was trained on.

Each rule either repairs the input by a stated rule or refuses it naming the item:

* **Time axis** (:mod:`..data.times`): none or a scalar ``time`` is one initial
  time; an empty axis and duplicate times are refused; cftime dates (a
  ``noleap`` file) are taken by calendar date, and dates the standard
  calendar lacks are refused.
* **Dimensions**: each variable the run starts from (by its name, or its base
  name on ``level``) may have ``time``, ``lat``, ``lon``; any other dimension
  of size 1 (``member``, a leftover ``level``) is dropped, and a larger one is
  refused naming the variable and the dimension.
* **Fill values**: values of magnitude at least :data:`FILL_BOUND` (the
  netCDF default fill, 9.96921e36, and the like, left in a file without its
  ``_FillValue`` attribute) are missing values, as NaN is: the non-finite
  rule of :func:`.inference.inputs` applies to them.
* **Units** (:mod:`..data.units`): each field is brought to the run's units,
  or refused.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr

from ..data.sources import split_name
from ..data.times import check_unique, standard_times
from ..data.units import to_run_units
from ..errors import InputError, UnknownName

#: Values of at least this magnitude are fill values (no weather field comes near it in any unit).
FILL_BOUND = 1e20
#: The dimensions a field of an initial condition may have.
FIELD_DIMS = ("time", "lat", "lon")
WHERE = "the initial condition"


def time_axis(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with a ``time`` dimension of standard-calendar, distinct times (NaT when it has none).

    Raises
    ------
    InputError
        For an empty axis, duplicate times, or a date the standard calendar lacks.
    """
    if "time" not in ds.dims:
        stamp = [ds.time.values] if "time" in ds.coords else [np.datetime64("NaT", "ns")]
        ds = ds.drop_vars("time", errors="ignore").expand_dims(time=stamp)
    if ds.sizes["time"] == 0:
        raise InputError(f"{WHERE} has no times (its time axis is empty)")
    if "time" not in ds.coords:
        raise InputError(f"{WHERE} has a time dimension without time stamps; add a time coordinate")
    stamps = standard_times(ds.time.values, WHERE)
    check_unique(stamps, WHERE)
    return ds.assign_coords(time=stamps)


def field(ds: xr.Dataset, name: str) -> xr.DataArray:
    """Variable ``name`` (``geopotential_500``) from a dataset holding it directly or on ``level``.

    Raises
    ------
    KeyError
        Naming the variable and those the initial condition has.
    """
    if name in ds:
        return ds[name]
    base, level = split_name(name)
    if level is not None and base in ds and "level" in ds[base].dims:
        if level in ds[base].level.values:
            return ds[base].sel(level=level, drop=True)
    raise UnknownName(f"{WHERE} lacks variable {name} (has {list(ds.data_vars)})")


def only_grid_dims(da: xr.DataArray, name: str) -> xr.DataArray:
    """``da`` with only ``time``/``lat``/``lon``: other dimensions of size 1 dropped.

    Raises
    ------
    InputError
        For another dimension of more than one element, naming it.
    """
    extra = {d: n for d, n in da.sizes.items() if d not in FIELD_DIMS}
    large = {d: n for d, n in extra.items() if n > 1}
    if large:
        raise InputError(
            f"{WHERE}: {name} has the dimension(s) {large} besides time, lat and lon; select one "
            "element (an ensemble member, a level) before forecasting"
        )
    return da.isel({d: 0 for d in extra}, drop=True)


def state(
    ds: xr.Dataset,
    variables: list[str],
    units: Mapping[str, str] | None,
    assumed: Mapping[str, str],
    stating: str = "assume_units",
) -> xr.Dataset:
    """The fields of ``variables`` from the initial condition ``ds`` (``lat``/``lon`` named so), each
    ``[time, lat, lon]`` or ``[lat, lon]`` (constants), float64 in the run's ``units``, fill values NaN.

    Parameters
    ----------
    units : mapping
        The run's recorded units (``run.info.units``).
    assumed : mapping
        Units the user stated for fields without the attribute (:func:`..data.units.parse_assumed`).
    stating : str
        How the user states them, for messages (``--assume-units``, ``assume_units=``).
    """
    fields = {}
    for name in variables:
        da = only_grid_dims(field(ds, name), name)
        values = np.asarray(da.values, np.float64)
        values = np.where(np.abs(values) >= FILL_BOUND, np.nan, values)
        scale, offset = to_run_units(name, da.attrs.get("units"), units, assumed, WHERE, stating)
        fields[name] = (da.dims, values * scale + offset)
    coords = {k: v for k, v in ds.coords.items() if k in FIELD_DIMS}
    return xr.Dataset(fields, coords=coords)
