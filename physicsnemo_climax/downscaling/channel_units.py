# SPDX-License-Identifier: Apache-2.0
"""The units of CorrDiff channels: read from the data, brought to the training run's.

A dataset that reads xarray data (``coarse_fine``) records the ``units``
attribute of each channel in its :class:`.domain.Domain` (``{group: {variable:
units}}``), which training saves in ``domain.json``. Generation passes the
training run's units back: a channel whose data carry other units is converted
to them by :func:`..data.units.conversion` (°C -> K, hPa -> Pa, ...), or refused
when they cannot be. Where either side carries no units the channel is taken
as it is: there is nothing to compare.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..data.units import conversion


def data_units(groups: dict[str, tuple[xr.Dataset | None, list[str]]]) -> dict[str, dict[str, str]]:
    """``{group: {variable: units}}`` of the variables whose ``units`` attribute is set, from
    ``{group: (dataset, variables)}``."""
    return {
        group: {v: str(ds[v].attrs["units"]) for v in names if ds is not None and ds[v].attrs.get("units")}
        for group, (ds, names) in groups.items()
    }


def to_trained(
    given: dict, trained: dict | None, names: dict[str, list[str]], where: str
) -> tuple[dict, dict[str, np.ndarray]]:
    """The units the samples are in once converted, and per group the ``[C, 2]`` ``(scale, offset)``
    bringing the data's ``given`` units to the ``trained`` ones.

    Raises
    ------
    InputError
        For units that cannot be converted, naming the channel and both units.
    """
    units, tables = {}, {}
    for group, variables in names.items():
        have, want = given.get(group, {}), (trained or {}).get(group, {})
        rows = [
            conversion(v, have[v], want[v], f"{where} ({group} channels)")
            if have.get(v) and want.get(v)
            else (1.0, 0.0)
            for v in variables
        ]
        tables[group] = np.array(rows, np.float64).reshape(-1, 2)
        units[group] = {v: want.get(v) or have[v] for v in variables if want.get(v) or have.get(v)}
    return units, tables


def converted(x: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``x`` ``[C, H, W]`` channel by channel as ``x * scale + offset``, float32."""
    if not len(table) or (table[:, 0] == 1).all() and (table[:, 1] == 0).all():
        return np.asarray(x, np.float32)
    return (x * table[:, 0, None, None] + table[:, 1, None, None]).astype(np.float32)
