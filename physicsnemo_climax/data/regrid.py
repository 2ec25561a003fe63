# SPDX-License-Identifier: Apache-2.0
"""Regridding between global latitude-longitude grids.

Both methods are separable on lat-lon grids, so each is a pair of small
matrices (latitude ``[H_out, H_in]``, longitude ``[W_out, W_in]``) applied to
the last two axes. Written here rather than taken from xESMF, which needs the
ESMF library from conda, not installable from PyPI.

* ``conservative``: first order, area weighted. Cell edges are midway between
  centres (the poles close the outermost latitude cells); the overlap of two
  cells is their latitude-band overlap in ``sin(lat)`` times their longitude
  overlap. The area-weighted global mean is preserved exactly.
* ``bilinear``: linear in latitude (constant beyond the outermost input
  centres) and periodic-linear in longitude.

Input latitudes may run either way; longitudes may use ``[0, 360)`` or
``[-180, 180)``. Output follows the order of the requested coordinates.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..errors import ConfigError

REGRID_METHODS = ("conservative", "bilinear")


def _lat_edges(lat: np.ndarray) -> np.ndarray:
    """Edges of latitude cells around sorted-ascending centres, ``[H + 1]``."""
    mid = (lat[1:] + lat[:-1]) / 2
    return np.concatenate([[-90.0], mid, [90.0]])


def _lon_edges(lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """West and east edges of longitude cells (periodic), each ``[W]``."""
    order = np.argsort(lon % 360)
    sorted_lon = lon[order] % 360
    gaps = np.diff(np.concatenate([sorted_lon, sorted_lon[:1] + 360]))
    east_sorted = sorted_lon + gaps / 2
    west_sorted = sorted_lon - np.roll(gaps, 1) / 2
    west, east = np.empty_like(lon, dtype=float), np.empty_like(lon, dtype=float)
    west[order], east[order] = west_sorted, east_sorted
    return west, east


def _overlap_1d(a_lo, a_hi, b_lo, b_hi) -> np.ndarray:
    """Lengths of overlap of intervals ``a`` ``[N]`` with ``b`` ``[M]``: ``[N, M]``."""
    return np.clip(
        np.minimum(a_hi[:, None], b_hi[None, :]) - np.maximum(a_lo[:, None], b_lo[None, :]),
        0,
        None,
    )


def conservative_lat_weights(lat_in: np.ndarray, lat_out: np.ndarray) -> np.ndarray:
    """Area-weighted latitude map ``[H_out, H_in]``; rows sum to 1."""
    order_in, order_out = np.argsort(lat_in), np.argsort(lat_out)
    e_in = np.sin(np.deg2rad(_lat_edges(lat_in[order_in])))
    e_out = np.sin(np.deg2rad(_lat_edges(lat_out[order_out])))
    sorted_w = _overlap_1d(e_out[:-1], e_out[1:], e_in[:-1], e_in[1:])
    weights = np.empty_like(sorted_w)
    weights[np.ix_(order_out, order_in)] = sorted_w
    return weights / weights.sum(1, keepdims=True)


def conservative_lon_weights(lon_in: np.ndarray, lon_out: np.ndarray) -> np.ndarray:
    """Periodic overlap longitude map ``[W_out, W_in]``; rows sum to 1."""
    w_in, e_in = _lon_edges(lon_in)
    w_out, e_out = _lon_edges(lon_out)
    total = np.zeros((lon_out.size, lon_in.size))
    for shift in (-360.0, 0.0, 360.0):  # wrap-around overlaps
        total += _overlap_1d(w_out, e_out, w_in + shift, e_in + shift)
    return total / total.sum(1, keepdims=True)


def bilinear_lat_weights(lat_in: np.ndarray, lat_out: np.ndarray) -> np.ndarray:
    """Linear latitude interpolation ``[H_out, H_in]`` (constant beyond the ends)."""
    eye = np.eye(lat_in.size)
    order = np.argsort(lat_in)
    return np.stack([np.interp(lat_out, lat_in[order], eye[j, order]) for j in range(lat_in.size)], axis=1)


def bilinear_lon_weights(lon_in: np.ndarray, lon_out: np.ndarray) -> np.ndarray:
    """Periodic linear longitude interpolation ``[W_out, W_in]``."""
    eye = np.eye(lon_in.size)
    order = np.argsort(lon_in % 360)
    return np.stack(
        [np.interp(lon_out % 360, lon_in[order] % 360, eye[j, order], period=360) for j in range(lon_in.size)],
        axis=1,
    )


def regrid_weights(lat_in, lon_in, lat_out, lon_out, method: str = "conservative"):
    """Latitude ``[H_out, H_in]`` and longitude ``[W_out, W_in]`` weight matrices."""
    if method not in REGRID_METHODS:
        raise ConfigError(f"unknown regridding method {method!r}; choose from {REGRID_METHODS}")
    args = [np.asarray(a, dtype=float) for a in (lat_in, lon_in, lat_out, lon_out)]
    if method == "conservative":
        return conservative_lat_weights(args[0], args[2]), conservative_lon_weights(args[1], args[3])
    return bilinear_lat_weights(args[0], args[2]), bilinear_lon_weights(args[1], args[3])


def regrid(obj, lat_out, lon_out, method: str = "conservative", lat: str = "lat", lon: str = "lon"):
    """Regrid an xarray ``Dataset`` or ``DataArray`` to ``(lat_out, lon_out)``.

    Variables without both horizontal dimensions pass through unchanged.
    Lazily backed data stays lazy where xarray allows.

    Parameters
    ----------
    obj : xarray.Dataset or xarray.DataArray
        Data with 1-D coordinates ``lat`` and ``lon`` (degrees).
    lat_out, lon_out : array-like
        Target cell centres.
    method : {"conservative", "bilinear"}
    lat, lon : str
        Names of the horizontal dimensions.
    """
    lat_out, lon_out = np.asarray(lat_out, dtype=float), np.asarray(lon_out, dtype=float)
    w_lat, w_lon = regrid_weights(obj[lat].values, obj[lon].values, lat_out, lon_out, method)

    def apply(values: np.ndarray) -> np.ndarray:
        out = np.einsum("ij,...jl->...il", w_lat, values)
        return np.einsum("...il,kl->...ik", out, w_lon).astype(values.dtype, copy=False)

    def one(da: xr.DataArray) -> xr.DataArray:
        if lat not in da.dims or lon not in da.dims:
            return da
        return xr.apply_ufunc(
            apply,
            da,
            input_core_dims=[[lat, lon]],
            output_core_dims=[["__lat", "__lon"]],
            dask="parallelized",
            dask_gufunc_kwargs={"output_sizes": {"__lat": lat_out.size, "__lon": lon_out.size}},
            output_dtypes=[da.dtype],
            keep_attrs=True,
        ).rename({"__lat": lat, "__lon": lon})

    if isinstance(obj, xr.DataArray):
        out = one(obj.drop_vars([lat, lon]))
    else:
        out = obj.drop_vars([lat, lon]).map(one, keep_attrs=True)
    out = out.assign_coords({lat: (lat, lat_out), lon: (lon, lon_out)})
    out[lat].attrs, out[lon].attrs = obj[lat].attrs, obj[lon].attrs
    return out
