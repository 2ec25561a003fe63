# SPDX-License-Identifier: Apache-2.0
"""Regional selection on both latitude orders and both longitude conventions."""

import pytest
import torch
from conftest import TINY_VARS, tiny_climax

from physicsnemo_climax.grid import regular_grid as numpy_grid
from physicsnemo_climax.models import REGIONS, PatchSelection, Region
from physicsnemo_climax.models.region import select_patches


def regular_grid(shape):
    return tuple(torch.from_numpy(a) for a in numpy_grid(shape))


def patch_centres(values, p):
    return values.reshape(-1, p).mean(1)


@pytest.mark.parametrize("descending", [False, True])
def test_selected_rows_are_the_regions_latitudes(descending):
    lat, lon = regular_grid((32, 64))
    if descending:
        lat = lat.flip(0)
    sel = select_patches(REGIONS["NorthAmerica"], lat, lon, 2)
    centres = patch_centres(lat, 2)
    chosen = centres[list(sel.rows)]
    others = centres[[i for i in range(16) if i not in sel.rows]]
    assert ((chosen >= 15) & (chosen <= 65)).all()
    assert not ((others >= 15) & (others <= 65)).any()
    # northern hemisphere, not its mirror image, whatever the storage order
    assert (chosen > 0).all()
    # rows keep the storage order of the grid
    assert list(sel.rows) == sorted(sel.rows)
    lon_c = patch_centres(lon, 2)[list(sel.cols)]
    assert ((lon_c >= 220) & (lon_c <= 300)).all()


def test_both_latitude_orders_select_the_same_places():
    lat, lon = regular_grid((32, 64))
    up = select_patches(REGIONS["Australia"], lat, lon, 2)
    down = select_patches(REGIONS["Australia"], lat.flip(0), lon, 2)
    assert sorted(patch_centres(lat, 2)[list(up.rows)].tolist()) == sorted(
        patch_centres(lat.flip(0), 2)[list(down.rows)].tolist()
    )
    assert up.cols == down.cols


def test_region_across_the_prime_meridian_on_both_longitude_conventions():
    lat, lon360 = regular_grid((32, 64))
    lon180 = torch.cat([lon360[32:] - 360, lon360[:32]])  # -180 .. 174.375
    box = Region(30, 65, -20, 40)  # lon_min > lon_max once taken modulo 360
    a = select_patches(box, lat, lon360, 2)
    b = select_patches(box, lat, lon180, 2)
    lons_a = patch_centres(lon360, 2)[list(a.cols)] % 360
    lons_b = patch_centres(lon180, 2)[list(b.cols)] % 360
    assert torch.allclose(lons_a, lons_b)
    # eastwards from lon_min, contiguous: 343.125, 354.375, 5.625 ... (steps of 11.25)
    steps = lons_a.diff() % 360
    assert torch.allclose(steps, torch.full_like(steps, 11.25))
    assert lons_a[0] > 330 and lons_a[-1] < 40


def test_model_region_forms_and_output_grid():
    torch.manual_seed(0)
    model = tiny_climax(img_size=(32, 64)).eval()
    x = torch.randn(1, 6, 32, 64)
    lead = torch.tensor([24.0])
    by_name = model(x, lead, TINY_VARS, ["t2m"], region="NorthAmerica")
    sel = model.select_region("NorthAmerica")
    assert by_name.shape == (1, 1, 2 * len(sel.rows), 2 * len(sel.cols))
    by_box = model(x, lead, TINY_VARS, ["t2m"], region=(15, 65, 220, 300))
    by_ids = model(x, lead, TINY_VARS, ["t2m"], region=sel.patch_ids())
    assert torch.equal(by_name, by_box) and torch.equal(by_name, by_ids)
    glob = model(x, lead, TINY_VARS, ["t2m"], region="Global")
    assert torch.equal(glob, model(x, lead, TINY_VARS, ["t2m"]))


def test_region_uses_only_its_own_input():
    """Fields outside the region must not influence a regional forecast."""
    torch.manual_seed(1)
    model = tiny_climax(img_size=(32, 64)).eval()
    x = torch.randn(1, 6, 32, 64)
    sel = model.select_region("Europe")
    rows, cols = sel.pixel_index(2)
    y = x.clone()
    mask = torch.ones(32, 64, dtype=torch.bool)
    mask[rows[:, None], cols[None, :]] = False
    y[..., mask] = 100.0
    lead = torch.tensor([6.0])
    assert torch.equal(model(x, lead, TINY_VARS, region="Europe"), model(y, lead, TINY_VARS, region="Europe"))


def test_descending_grid_given_to_model():
    lat, lon = regular_grid((32, 64))
    model = tiny_climax(img_size=(32, 64), lat=lat.flip(0).tolist(), lon=lon.tolist())
    sel = model.select_region("NorthAmerica")
    assert (patch_centres(model.lat, 2)[list(sel.rows)] > 0).all()
    assert max(sel.rows) < 8  # north is stored first


def test_bad_regions():
    model = tiny_climax(img_size=(32, 64))
    with pytest.raises(KeyError, match="Atlantis"):
        model.select_region("Atlantis")
    with pytest.raises(ValueError, match="no patch"):
        model.select_region((89.9, 90, 0, 10))
    with pytest.raises(ValueError, match="rectangle"):
        model.select_region(torch.tensor([0, 1, 33]))
    with pytest.raises(ValueError, match="lat_min"):
        model.select_region((1, 2, 3))
    with pytest.raises(ValueError, match="lie in"):
        PatchSelection.from_patch_ids(torch.tensor([600]), (16, 32))


def test_a_region_is_resolved_once_and_travels_as_json():
    import json

    torch.manual_seed(2)
    model = tiny_climax(img_size=(32, 64)).eval()
    region = model.resolve_region("NorthAmerica")
    rows, cols = model.select_region("NorthAmerica").pixel_index(2)
    field = torch.randn(3, 32, 64)
    assert torch.equal(region.crop(field), field[:, rows][:, :, cols])
    assert torch.equal(region.lat, model.lat[rows]) and torch.equal(region.lon, model.lon[cols])
    assert region.shape == (len(rows), len(cols)) and not region.is_global
    x, lead = torch.randn(1, 6, 32, 64), torch.tensor([12.0])
    assert torch.equal(model(x, lead, TINY_VARS, region=region), model(x, lead, TINY_VARS, region="NorthAmerica"))
    for spec in ("NorthAmerica", [15, 65, 220, 300], region.patch_ids):
        again = model.resolve_region(json.loads(json.dumps(model.resolve_region(spec).spec)))
        assert torch.equal(again.patch_ids, region.patch_ids) and torch.equal(again.rows, region.rows)
    assert model.resolve_region(region.patch_ids).spec == {"patch_ids": region.patch_ids.tolist()}
    whole = model.resolve_region(None)
    assert whole.is_global and whole.spec is None and whole.crop(field) is field and whole.shape == (32, 64)
