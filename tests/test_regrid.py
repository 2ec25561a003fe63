# SPDX-License-Identifier: Apache-2.0
"""Regridding: exactness on analytic fields, conservation, grid orders."""

import numpy as np
import pytest
import xarray as xr

from physicsnemo_climax.data.regrid import regrid, regrid_weights
from physicsnemo_climax.grid import regular_grid


def field(lat, lon, fn):
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    return xr.DataArray(
        fn(np.deg2rad(la), np.deg2rad(lo)), dims=("lat", "lon"), coords={"lat": lat, "lon": lon}, name="f"
    )


def cell_areas(lat, lon):
    """Exact areas of regular cells (edges midway, poles closing)."""
    order = np.argsort(lat)
    s = np.sort(lat)
    edges = np.concatenate([[-90], (s[1:] + s[:-1]) / 2, [90]])
    band = np.diff(np.sin(np.deg2rad(edges)))
    area_sorted = band[:, None] * np.full(lon.size, 360 / lon.size)[None, :]
    area = np.empty_like(area_sorted)
    area[order] = area_sorted
    return area


def weighted_mean(da):
    a = cell_areas(da.lat.values, da.lon.values)
    return float((da.values * a).sum() / a.sum())


def test_grid_convention():
    lat, lon = regular_grid((32, 64))
    assert lat[0] == pytest.approx(-87.1875) and lat[-1] == pytest.approx(87.1875)
    assert lon[0] == 0 and lon[1] == pytest.approx(5.625) and lon[-1] == pytest.approx(354.375)


@pytest.mark.parametrize("method", ["conservative", "bilinear"])
def test_rows_sum_to_one_and_constant_is_kept(method):
    lat_in, lon_in = regular_grid((90, 180))
    lat_out, lon_out = regular_grid((32, 64))
    w_lat, w_lon = regrid_weights(lat_in, lon_in, lat_out, lon_out, method)
    assert np.allclose(w_lat.sum(1), 1) and np.allclose(w_lon.sum(1), 1)
    out = regrid(field(lat_in, lon_in, lambda la, lo: 0 * la + 7.0), lat_out, lon_out, method)
    assert np.allclose(out.values, 7.0)


def test_conservative_preserves_area_weighted_mean():
    rng = np.random.default_rng(0)
    lat_in, lon_in = regular_grid((45, 90))
    da = field(lat_in, lon_in, lambda la, lo: 0 * la) + rng.normal(size=(45, 90))
    for shape in [(32, 64), (16, 32), (128, 256)]:
        out = regrid(da, *regular_grid(shape), method="conservative")
        assert weighted_mean(out) == pytest.approx(weighted_mean(da), abs=1e-12)


def test_conservative_from_fine_to_coarse_is_the_cell_average():
    # a 2x finer regular grid nests exactly: each coarse cell averages its 4 children
    lat_f, lon_f = regular_grid((8, 16))
    lat_c, lon_c = regular_grid((4, 8))
    rng = np.random.default_rng(1)
    da = field(lat_f, lon_f, lambda la, lo: 0 * la) + rng.normal(size=(8, 16))
    out = regrid(da, lat_c, lon_c, "conservative")
    # coarse cell (row 1, col 0) spans lat [-45, 0] and lon [-22.5, 22.5]: fine rows 2-3,
    # the fine cell centred on 0 whole and half of those centred on 337.5 and 22.5
    area = cell_areas(lat_f, lon_f)
    rows, cols, share = [2, 3], [15, 0, 1], np.array([0.5, 1.0, 0.5])
    w = area[np.ix_(rows, cols)] * share[None, :]
    block = da.values[np.ix_(rows, cols)]
    assert out.values[1, 0] == pytest.approx((block * w).sum() / w.sum())


def test_bilinear_exact_on_linear_fields():
    lat_in, lon_in = regular_grid((90, 180))
    lat_out, lon_out = regular_grid((32, 64))
    out = regrid(field(lat_in, lon_in, lambda la, lo: np.rad2deg(la) + 0 * lo), lat_out, lon_out, "bilinear")
    inside = np.abs(lat_out) < 89
    assert np.allclose(out.values[inside], lat_out[inside, None])
    wave = lambda la, lo: np.cos(lo) + 0 * la  # noqa: E731
    out = regrid(field(lat_in, lon_in, wave), lat_out, lon_out, "bilinear")
    # linear interpolation of a cosine on a 2-degree grid: error <= (dx^2/8) max|f''|
    assert np.abs(out.values - np.cos(np.deg2rad(lon_out))[None, :]).max() < np.deg2rad(2) ** 2 / 8 + 1e-9


@pytest.mark.parametrize("method", ["conservative", "bilinear"])
def test_smooth_field_is_reproduced(method):
    lat_in, lon_in = regular_grid((180, 360))
    fn = lambda la, lo: np.cos(la) ** 2 * np.cos(2 * lo) + np.sin(la)  # noqa: E731
    out = regrid(field(lat_in, lon_in, fn), *regular_grid((32, 64)), method=method)
    truth = field(*regular_grid((32, 64)), fn)
    assert np.abs(out.values - truth.values).max() < 0.01


@pytest.mark.parametrize("method", ["conservative", "bilinear"])
def test_latitude_order_and_longitude_convention_do_not_matter(method):
    lat_in, lon_in = regular_grid((45, 90))
    rng = np.random.default_rng(2)
    da = field(lat_in, lon_in, lambda la, lo: 0 * la) + rng.normal(size=(45, 90))
    target = regular_grid((32, 64))
    base = regrid(da, *target, method=method)
    flipped = regrid(da.isel(lat=slice(None, None, -1)), *target, method=method)
    shifted = da.assign_coords(lon=((da.lon + 180) % 360) - 180).sortby("lon")
    assert np.allclose(regrid(shifted, *target, method=method).values, base.values)
    assert np.allclose(flipped.values, base.values)
    # a north-to-south target gives the same field upside down
    down = regrid(da, target[0][::-1], target[1], method=method)
    assert np.allclose(down.values[::-1], base.values)


def test_dataset_with_extra_dims_and_passthrough():
    lat_in, lon_in = regular_grid((16, 32))
    ds = xr.Dataset(
        {
            "t": (("time", "level", "lat", "lon"), np.ones((2, 3, 16, 32), np.float32)),
            "co2": (("time",), np.arange(2.0)),
        },
        coords={"lat": lat_in, "lon": lon_in, "time": np.arange(2), "level": [500, 850, 925]},
    )
    out = regrid(ds, *regular_grid((8, 16)))
    assert out.t.dims == ("time", "level", "lat", "lon") and out.t.shape == (2, 3, 8, 16)
    assert out.t.dtype == np.float32 and np.allclose(out.t, 1)
    assert np.array_equal(out.co2, ds.co2)


def test_unknown_method():
    with pytest.raises(ValueError, match="cubic"):
        regrid_weights([0.0], [0.0], [0.0], [0.0], "cubic")
