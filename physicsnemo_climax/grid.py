# SPDX-License-Identifier: Apache-2.0
"""The regular latitude-longitude grids ClimaX uses.

Convention (WeatherBench / ClimaX): ``H x W`` cells of equal angular size
covering the globe; values at cell centres; latitudes south to north,
``lat_i = -90 + (i + 1/2) 180 / H``; longitudes east from 0,
``lon_j = j 360 / W`` (the cell around ``lon_j`` spans ``lon_j +- 180 / W``).
5.625 deg is 32 x 64, 1.40625 deg is 128 x 256.

A regular regional grid of spacing ``d`` (:func:`regional_axes`) is the part
of the global grid of that spacing whose centres fall in a box, so regional
grids of spacings that divide each other nest as the global ones do.
"""

from __future__ import annotations

import numpy as np

from .errors import ConfigError, DataError


def regular_grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre latitudes ``[H]`` and longitudes ``[W]`` in degrees."""
    h, w = shape
    lat = -90.0 + (np.arange(h) + 0.5) * 180.0 / h
    lon = np.arange(w) * 360.0 / w
    return lat, lon


def spacing_shape(spacing: float, option: str = "--grid") -> tuple[int, int]:
    """``(H, W)`` of the global grid of ``spacing`` degrees (``5.625 -> (32, 64)``).

    Raises
    ------
    ConfigError
        When the spacing is not positive or does not divide 180 and 360 degrees, naming ``option``.
    """
    spacing = float(spacing)
    h = round(180.0 / spacing) if spacing > 0 else 0
    if h < 1 or not np.isclose(h * spacing, 180.0, rtol=0, atol=1e-9):
        raise ConfigError(
            f"{option} {spacing:g}: give H W (--grid 32 64), or a spacing in degrees that divides 180 and 360 "
            "(5.625, 2.8125, 1.40625, 0.25)"
        )
    return h, 2 * h


def regional_axes(spacing: float, region) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The cells of the global grid of ``spacing`` whose centres fall in ``region``.

    Parameters
    ----------
    spacing : float
        Degrees (:func:`spacing_shape`).
    region : sequence of 4 floats
        ``lat0, lat1, lon0, lon1``; the box runs east from ``lon0`` to ``lon1`` (edges included).

    Returns
    -------
    lat_index, lon_index : np.ndarray
        Rows ``[H]`` and columns ``[W]`` of the global grid, in the store's order.
    lat, lon : np.ndarray
        Their centres, latitudes south to north, longitudes without a jump (:func:`native_axes`).

    Raises
    ------
    ConfigError
        When no cell centre falls in the box, naming ``--region`` and ``--grid``.
    """
    lat, lon = regular_grid(spacing_shape(spacing))
    lat0, lat1, lon0, lon1 = (float(v) for v in region)
    rows = (lat >= min(lat0, lat1) - 1e-9) & (lat <= max(lat0, lat1) + 1e-9)
    cols = (lon - lon0) % 360 <= ((lon1 - lon0) % 360 or 360.0) + 1e-9
    if not rows.any() or not cols.any():
        raise ConfigError(
            f"--region {' '.join(f'{v:g}' for v in region)}: no cell centre of the {spacing:g} deg grid "
            f"(--grid {spacing:g}) falls in the box; widen it"
        )
    lat_index = np.flatnonzero(rows)
    east = (lon - lon0) % 360  # degrees east of the box's western edge
    lon_index = np.flatnonzero(cols)[np.argsort(east[cols], kind="stable")]
    out = lon[lon_index]
    if np.any(np.diff(out) <= 0):  # the box crosses 0 deg: no jump, as native_axes writes it
        out = out[0] + east[lon_index] - east[lon_index[0]]
        out = out - 360 if out[0] >= 180 else out
    return lat_index, lon_index, lat[lat_index], out


def native_axes(lat: np.ndarray, lon: np.ndarray, region=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A source's own grid in the store's order, optionally cropped to a box.

    Latitudes go south to north; longitudes increase without a jump, so a
    box that crosses 0 deg reads ``-10 .. 30`` and one that crosses 180 deg
    ``170 .. 190`` (a box that crosses neither keeps the source's values).

    Parameters
    ----------
    lat, lon : np.ndarray
        The source's coordinates ``[H_in]``, ``[W_in]`` (any order, longitudes
        in ``[0, 360)`` or ``[-180, 180)``).
    region : sequence of 4 floats, optional
        ``lat0, lat1, lon0, lon1`` (degrees); the box runs east from ``lon0`` to ``lon1``.

    Returns
    -------
    lat_index, lon_index : np.ndarray
        Positions in ``lat``, ``lon`` of the kept points, in the store's order.
    lat_out, lon_out : np.ndarray
        The store's coordinates ``[H]``, ``[W]``.

    Raises
    ------
    ValueError
        When the box reaches beyond the source's grid (saying both extents).
    """
    lat, lon = np.asarray(lat, float), np.asarray(lon, float)
    lat_index = np.argsort(lat)
    if region is None:
        lon_index = np.argsort(lon)
        return lat_index, lon_index, lat[lat_index], lon[lon_index]
    lat0, lat1, lon0, lon1 = (float(v) for v in region)
    dlat = np.median(np.abs(np.diff(np.sort(lat)))) if lat.size > 1 else 0.0
    south, north = min(lat0, lat1), max(lat0, lat1)
    extent = f"the grid spans lat {lat.min():g}..{lat.max():g}, lon {lon.min():g}..{lon.max():g}"
    if south < lat.min() - dlat / 2 - 1e-9 or north > lat.max() + dlat / 2 + 1e-9:
        raise DataError(f"region {list(region)} reaches beyond the grid: {extent}")
    lat_index = lat_index[(lat[lat_index] >= south - 1e-9) & (lat[lat_index] <= north + 1e-9)]
    width = (lon1 - lon0) % 360 or 360.0
    east = (lon % 360 - lon0 % 360) % 360  # degrees east of the box's western edge
    inside = np.flatnonzero(east <= width + 1e-9)
    lon_index = inside[np.argsort(east[inside], kind="stable")]
    dlon = np.median(np.diff(np.sort(lon % 360))) if lon.size > 1 else 360.0
    if lat_index.size == 0 or lon_index.size < round(width / dlon) - 1 + (width < 360):
        raise DataError(f"region {list(region)} reaches beyond the grid: {extent}")
    out = lon[lon_index]
    if np.any(np.diff(out) <= 0):  # the box wraps around the source's seam: unwrap east of its first point
        out = out[0] + east[lon_index] - east[lon_index[0]]
        out = out - 360 if out[0] >= 180 else out
    return lat_index, lon_index, lat[lat_index], out
