# SPDX-License-Identifier: Apache-2.0
"""Local weather files as an Earth2Studio data source.

:class:`FileSource` serves ERA5 / WeatherBench / CMIP6 NetCDF or Zarr files
(whatever :class:`..data.sources.Catalogue` reads, e.g. the simulated
Held-Suarez dataset) under Earth2Studio ids, in the ``earth2studio.data``
``DataSource`` protocol: ``source(time, variable)`` returns a
``[time, variable, lat, lon]`` DataArray in the files' units and grid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from ..data.sources import Catalogue
from .lexicon import from_e2s


class FileSource:
    """Earth2Studio data source over local files.

    Parameters
    ----------
    paths : sequence of str
        Files, Zarr folders or glob patterns (one grid).
    names : mapping, optional
        Earth2Studio id -> ClimaX name, for ids the lexicon lacks.
    """

    def __init__(self, paths: Sequence[str] | str, names: Mapping[str, str] | None = None):
        self.catalogue = Catalogue([paths] if isinstance(paths, str) else list(paths))
        self.names = dict(names or {})

    def __call__(self, time, variable) -> xr.DataArray:
        """Fields at ``time`` (datetimes) for ``variable`` (Earth2Studio ids).

        Raises
        ------
        KeyError
            Naming the variable or time the files lack.
        """
        times = np.asarray(pd.to_datetime(np.atleast_1d(time)), dtype="datetime64[ns]")
        ids = [str(v) for v in np.atleast_1d(variable)]
        fields = [self.catalogue.read(self.names.get(v) or from_e2s(v), times) for v in ids]
        data = np.stack([np.broadcast_to(f, (len(times), *f.shape[1:])) for f in fields], axis=1)
        return xr.DataArray(
            data,
            dims=("time", "variable", "lat", "lon"),
            coords={"time": times, "variable": ids, "lat": self.catalogue.lat, "lon": self.catalogue.lon},
        )

    async def fetch(self, time, variable) -> xr.DataArray:
        """The asynchronous form of the protocol (files are local: no waiting)."""
        return self(time, variable)
