# SPDX-License-Identifier: Apache-2.0
"""The Held–Suarez simulated dataset (tiny runs, CPU, a few seconds each)."""

import json
import math

import numpy as np
import pytest

pytest.importorskip("dinosaur_torch")

from physicsnemo_climax.data import simulate  # noqa: E402

DAY = 86400.0
NAMES = ["u_component_of_wind", "v_component_of_wind", "temperature", "geopotential"]
NAMES += ["surface_pressure"]


def tiny_run(seed=0, **kwargs):
    days, spinup = simulate.TINY_DAYS, simulate.TINY_SPINUP_DAYS
    return simulate.simulate_held_suarez(days, spinup, seed=seed, **kwargs)


@pytest.fixture(scope="module")
def tiny():
    return tiny_run(0)


def test_tiny_dims_coords_names(tiny):
    ds = tiny
    assert sorted(ds.data_vars) == sorted(NAMES)
    n = round(simulate.TINY_DAYS * 4)
    for name in NAMES[:4]:
        assert ds[name].dims == ("time", "level", "lat", "lon")
        assert ds[name].shape == (n, 7, 32, 64)
    assert ds["surface_pressure"].dims == ("time", "lat", "lon")
    assert list(ds["level"].values) == [50, 250, 500, 600, 700, 850, 925]
    lat_expected = -90 + (np.arange(32) + 0.5) * 180 / 32
    np.testing.assert_allclose(ds["lat"].values, lat_expected)
    np.testing.assert_allclose(ds["lon"].values, np.arange(64) * 360 / 64)
    assert np.issubdtype(ds["time"].dtype, np.datetime64)
    assert str(ds["time"].values[0])[:10] == "2000-01-01"
    assert np.all(np.diff(ds["time"].values) == np.timedelta64(6, "h"))
    assert ds["temperature"].attrs["units"] == "K"
    assert ds["surface_pressure"].attrs["units"] == "Pa"


def test_tiny_fields_finite_and_plausible(tiny):
    ds = tiny
    for name in NAMES:
        values = ds[name].values
        assert np.isfinite(values).all(), name
        assert values.std() > 0, name
    t = ds["temperature"].values
    assert 200 < t.min() and t.max() < 320
    ps = ds["surface_pressure"].values
    assert 9.5e4 < ps.min() and ps.max() < 1.05e5
    z = ds["geopotential"].mean(("time", "lat", "lon")).values
    assert np.all(np.diff(z) < 0)  # higher up is higher: 50 hPa first
    assert 1.9e5 < z[0] < 2.6e5  # ~20-25 km at 50 hPa
    assert np.abs(ds["u_component_of_wind"].values).max() < 30


def test_native_grid():
    ds = simulate.simulate_held_suarez(0.25, 0.0, grid="native")
    lat = ds["lat"].values
    assert ds["temperature"].shape == (1, 7, 32, 64)
    assert np.all(np.diff(lat) > 0) and -90 < lat[0] < -85  # Gaussian, south to north
    np.testing.assert_allclose(ds["lon"].values, np.arange(64) * 5.625)


def test_bad_lengths():
    with pytest.raises(ValueError):
        simulate.simulate_held_suarez(0.1, 0.0)  # not a whole number of 6-hour records
    with pytest.raises(ValueError):
        simulate.simulate_held_suarez(1.0, 0.01)  # not a whole number of time steps
    with pytest.raises(ValueError):
        simulate.simulate_held_suarez(1.0, 0.0, resolution="T9999")


def test_deterministic(tiny):
    again = tiny_run(0)
    other = tiny_run(1)
    for name in NAMES:
        np.testing.assert_array_equal(tiny[name].values, again[name].values)
    assert not np.array_equal(tiny["temperature"].values, other["temperature"].values)
    assert not np.array_equal(tiny["v_component_of_wind"].values, other["v_component_of_wind"].values)


def test_equilibrium_temperature():
    teq = simulate.held_suarez_equilibrium_temperature
    assert float(teq(0.0, 1.0e5)) == pytest.approx(315.0)  # equator, surface
    assert float(teq(math.pi / 2, 1.0e4)) == pytest.approx(200.0)  # pole aloft: clipped
    # 45 deg, 500 hPa: (315 - 60/2 - 10 log(0.5)/2) 0.5^(2/7)
    expected = (315 - 30 - 5 * math.log(0.5)) * 0.5 ** (2 / 7)
    assert float(teq(math.pi / 4, 5.0e4)) == pytest.approx(expected, rel=1e-12)
    assert float(teq(math.pi / 2, 1.0e5)) == pytest.approx(255.0)  # pole, surface


def test_relaxation_rates():
    rates = simulate.held_suarez_relaxation_rates
    k_t, k_v = rates(0.0, 1.0)  # equator, surface
    assert float(k_t) == pytest.approx(1 / (4 * DAY))
    assert float(k_v) == pytest.approx(1 / DAY)
    for lat, sigma in [(0.0, 0.5), (0.8, 0.7), (1.2, 0.1)]:  # free atmosphere
        k_t, k_v = rates(lat, sigma)
        assert float(k_t) == pytest.approx(1 / (40 * DAY))
        assert float(k_v) == 0.0
    k_t, k_v = rates(math.pi / 3, 0.85)  # half-way into the boundary layer at 60 deg
    assert float(k_t) == pytest.approx(1 / (40 * DAY) + (1 / (4 * DAY) - 1 / (40 * DAY)) * 0.5 / 16)
    assert float(k_v) == pytest.approx(0.5 / DAY)


def test_write_simulation_cache(tmp_path, monkeypatch):
    out = tmp_path / "hs"
    simulate.write_simulation(out, days=0.5, spinup_days=0.25, seed=3, tiny=True)
    stamp = json.loads((out / "simulation.json").read_text())
    assert stamp["params"]["seed"] == 3 and stamp["params"]["days"] == 0.5
    assert sorted(stamp["files"]) == sorted(f"{n}/{n}_2000_5.625deg.nc" for n in NAMES)
    import xarray as xr

    with xr.open_dataset(out / "temperature" / "temperature_2000_5.625deg.nc") as ds:
        assert ds["temperature"].shape == (2, 7, 32, 64)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers

    def fail(*args, **kwargs):
        raise AssertionError("should have been cached")

    monkeypatch.setattr(simulate, "simulate_held_suarez", fail)
    assert simulate.write_simulation(out, days=0.5, spinup_days=0.25, seed=3) == out
    with pytest.raises(AssertionError):  # other parameters: recomputed
        simulate.write_simulation(out, days=0.5, spinup_days=0.25, seed=4)
    assert (out / "simulation.json").is_file()  # the old one is untouched

    other = tmp_path / "foreign"
    other.mkdir()
    (other / "x.txt").write_text("not ours")
    with pytest.raises(FileExistsError):
        simulate.write_simulation(other, days=0.25, spinup_days=0.0)


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    out = tmp_path / "hs"
    real = simulate.xr.Dataset.to_netcdf
    calls = []

    def flaky(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(simulate.xr.Dataset, "to_netcdf", flaky)
    with pytest.raises(KeyboardInterrupt):
        simulate.write_simulation(out, days=0.25, spinup_days=0.0)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_default_splits_fit_the_recorded_days():
    from physicsnemo_climax.data.simulate import default_splits

    # a year: months 1-9, 10, 11-12; 200 days (a quickstart-sized run): 140, 20 and 40 whole days
    assert default_splits(365)["val"] == "2000-10-01:2000-10-31"
    short = default_splits(200)
    assert short == {"train": "2000-01-01:2000-05-19", "val": "2000-05-20:2000-06-08", "test": "2000-06-09:2000-07-18"}
    days = [(np.datetime64(b) - np.datetime64(a)).astype(int) + 1 for a, b in (p.split(":") for p in short.values())]
    assert days == [140, 20, 40]
