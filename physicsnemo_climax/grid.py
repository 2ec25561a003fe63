# SPDX-License-Identifier: Apache-2.0
"""The regular latitude-longitude grids ClimaX uses.

Convention (WeatherBench / ClimaX): ``H x W`` cells of equal angular size
covering the globe; values at cell centres; latitudes south to north,
``lat_i = -90 + (i + 1/2) 180 / H``; longitudes east from 0,
``lon_j = j 360 / W`` (the cell around ``lon_j`` spans ``lon_j +- 180 / W``).
5.625 deg is 32 x 64, 1.40625 deg is 128 x 256.
"""

from __future__ import annotations

import numpy as np


def regular_grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre latitudes ``[H]`` and longitudes ``[W]`` in degrees."""
    h, w = shape
    lat = -90.0 + (np.arange(h) + 0.5) * 180.0 / h
    lon = np.arange(w) * 360.0 / w
    return lat, lon
