# SPDX-License-Identifier: Apache-2.0
"""``climax data prepare --grid DEG [--region LAT0 LAT1 LON0 LON1]``: a spacing in degrees, and the
cells of its global grid whose centres fall in a box, regridded from the source."""

import numpy as np
import pytest
from cmip6_files import write_set

from physicsnemo_climax.data import PrepareConfig, ShardStore, prepare
from physicsnemo_climax.errors import ConfigError
from physicsnemo_climax.forecasting.score_regions import grid_extent, region_weights
from physicsnemo_climax.grid import regional_axes, regular_grid

EUROPE = [35.0, 75.0, -12.5, 42.5]
VARS = ["2m_temperature", "geopotential_500"]


def config(inputs, grid, region=None, method="conservative"):
    return PrepareConfig(
        inputs, VARS, {"train": "2000-01-01:2000-01-10"}, grid=grid, region=region, method=method, shards_per_year=1
    )


def train(out, name="2m_temperature"):
    return np.asarray(ShardStore(out).shards("train")[0].array(name))[:, 0]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("source")  # a 3.75 deg global source, 3 days
    write_set(folder, ["tas", "zg"], start=(2000, 1, 1, 0), steps=12, files=1, h=48, w=96)
    return [str(folder / "*.nc")]


@pytest.fixture(scope="module")
def stores(source, tmp_path_factory):
    """Global and European stores at 5.625 and 2.8125 deg, conservative."""
    root = tmp_path_factory.mktemp("stores")
    return {
        (deg, box is not None): prepare(config(source, deg, box), root / f"{deg}_{box is not None}")
        for deg in (5.625, 2.8125)
        for box in (None, EUROPE)
    }


def test_a_spacing_is_the_global_grid_of_h_w(source, stores, tmp_path):
    by_shape = prepare(config(source, (32, 64)), tmp_path / "hw")
    assert np.array_equal(train(by_shape), train(stores[5.625, False]))
    manifest = ShardStore(stores[5.625, False]).manifest
    assert (manifest["grid"], manifest["spacing"], manifest["region"]) == ([32, 64], 5.625, None)


@pytest.mark.parametrize("deg", [5.625, 2.8125])
def test_a_regional_grid_is_the_global_one_cropped_to_the_box(stores, deg):
    regional, whole = ShardStore(stores[deg, True]), ShardStore(stores[deg, False])
    rows, cols, lat, lon = regional_axes(deg, EUROPE)
    assert np.array_equal(regional.lat, whole.lat[rows]) and np.allclose(regional.lon % 360, whole.lon[cols])
    assert lat.min() >= 35 and lat.max() <= 75 and lon[0] == pytest.approx(-11.25) and np.all(np.diff(lon) > 0)
    for name in VARS:
        assert np.allclose(
            train(stores[deg, True], name), train(stores[deg, False], name)[:, rows][:, :, cols], rtol=1e-6, atol=0
        )
    manifest = regional.manifest
    assert (manifest["grid_kind"], manifest["spacing"], manifest["region"]) == ("regular", deg, EUROPE)


def test_nested_regional_grids_align(stores):
    """ClimaX's convention: a latitude cell of a spacing is tiled by two of half that spacing;
    longitude centres of a spacing are every other centre of half of it (cells straddle)."""
    coarse, fine = ShardStore(stores[5.625, True]), ShardStore(stores[2.8125, True])
    for c in coarse.lat:
        assert np.isclose(fine.lat, c - 1.40625).any() and np.isclose(fine.lat, c + 1.40625).any()
    on_fine = [int(np.flatnonzero(np.isclose(fine.lon, c))[0]) for c in coarse.lon]
    assert np.all(np.diff(on_fine) == 2)
    # the same rule both ways: the fine store's cells lie in the coarse store's box, shifted half a cell at most
    assert fine.lat.min() >= coarse.lat.min() - 2.8125 and fine.lon.max() <= coarse.lon.max() + 2.8125


def test_a_region_across_the_dateline_and_bilinear(source, tmp_path):
    box = [-10.0, 10.0, 170.0, -170.0]
    out = prepare(config(source, 5.625, box, "bilinear"), tmp_path / "pacific")
    whole = prepare(config(source, 5.625, None, "bilinear"), tmp_path / "global")
    store = ShardStore(out)
    assert np.allclose(store.lon, [174.375, 180.0, 185.625]) and np.allclose(
        store.lat, [-8.4375, -2.8125, 2.8125, 8.4375]
    )
    assert np.allclose(train(out), train(whole)[:, 14:18][:, :, 31:34], rtol=1e-6, atol=0)
    extent = grid_extent(store.lat, store.lon)  # scored as a regional store: its box, and run_region
    assert extent.lat == pytest.approx((-11.25, 11.25)) and extent.lon == pytest.approx((171.5625, 188.4375))
    weights, _ = region_weights({"global": None} | {}, store.lat, store.lon)
    assert "run_region" in weights


@pytest.mark.parametrize(
    "grid, region, message",
    [
        (7.0, None, r"--grid 7: give H W .* a spacing in degrees that divides 180 and 360"),
        (0.0, None, r"--grid 0: give H W"),
        (5.625, [1.0, 2.0, 1.0, 2.0], r"--region 1 2 1 2: no cell centre of the 5.625 deg grid \(--grid 5.625\)"),
        ((32, 64), EUROPE, r"--region 35 75 -12.5 42.5 \(region\).*--grid DEG.*--grid 32 64 is not cropped"),
    ],
)
def test_bad_grids_and_boxes_are_refused_naming_the_option(source, tmp_path, grid, region, message):
    with pytest.raises(ConfigError, match=message):
        prepare(config(source, grid, region), tmp_path / "s")
    assert not (tmp_path / "s").exists() and not (tmp_path / "s.partial").exists()


def test_cli_grid_forms(source, tmp_path):
    from physicsnemo_climax.cli import main

    argv = ["data", "prepare", *source, "--variables", "2m_temperature", "--train", "2000-01-01:2000-01-03"]
    main([*argv, "--out", str(tmp_path / "a"), "--grid", "5.625", "--region", *map(str, EUROPE)])
    assert ShardStore(tmp_path / "a").grid == (7, 10)
    main([*argv, "--out", str(tmp_path / "b"), "--grid", "32", "64"])
    assert np.array_equal(ShardStore(tmp_path / "b").lat, regular_grid((32, 64))[0])
    with pytest.raises(ConfigError, match="--grid 5.625 1: give H W"):
        main(["--debug", *argv, "--out", str(tmp_path / "c"), "--grid", "5.625", "1"])
