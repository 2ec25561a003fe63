# SPDX-License-Identifier: Apache-2.0
"""Small files in the ClimateBench layout, with learnable targets."""

from pathlib import Path

import numpy as np
import xarray as xr

YEARS = {
    "historical": (1850, 1889),
    "hist-GHG": (1850, 1889),
    "hist-aer": (1850, 1889),
    "ssp126": (2015, 2044),
    "ssp370": (2015, 2044),
    "ssp585": (2015, 2044),
    "ssp245": (2015, 2044),
}


def write_climatebench(folder, h=16, w=32, members=2, seed=0, scenarios=tuple(YEARS)):
    """``inputs_<s>.nc`` / ``outputs_<s>.nc``: ``tas`` follows CO2 with a fixed pattern and
    cools under the local SO2 of the last year, which global-mean pattern scaling cannot see."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lat = np.linspace(-90, 90, h)
    lon = np.arange(w) * 360 / w
    pattern = 1 + 0.5 * np.cos(np.deg2rad(lat))[:, None] * np.ones(w)
    blob = np.exp(-((lat[:, None] - 30) ** 2 / 1500 + (lon[None] - 120) ** 2 / 8000))
    for name in scenarios:
        first, last = YEARS[name]
        years = np.arange(first, last + 1)
        n = len(years)
        co2 = np.cumsum(rng.uniform(20, 40, n)) * (0 if name == "hist-aer" else 1) + (2000 if first > 2000 else 0)
        ch4 = rng.uniform(0.2, 0.4, n) * (0 if name == "hist-aer" else 1)
        so2 = rng.uniform(0, 1, (n, 1, 1)) * blob * 1e-11 * (0 if name == "hist-GHG" else 1)
        bc = rng.uniform(0, 1, (n, 1, 1)) * blob[::-1] * 1e-12
        xr.Dataset(
            {
                "CO2": ("time", co2),
                "CH4": ("time", ch4),
                "SO2": (("time", "latitude", "longitude"), so2),
                "BC": (("time", "latitude", "longitude"), bc),
            },
            coords={"time": years, "latitude": lat, "longitude": lon},
        ).to_netcdf(folder / f"inputs_{name}.nc")
        tas = 1e-3 * co2[:, None, None] * pattern - 1e12 * so2
        noise = rng.normal(0, 0.01, (members, n, h, w))
        out = {
            "tas": tas,
            "diurnal_temperature_range": 0.1 * tas,
            "pr": 1e-5 * (1 + 0.1 * tas),
            "pr90": 3e-5 * (1 + 0.1 * tas),
        }
        xr.Dataset(
            {
                v: (("member", "time", "lat", "lon"), a[None] + noise * (1e-6 if v.startswith("pr") else 1))
                for v, a in out.items()
            },
            coords={"time": years, "lat": lat, "lon": lon, "member": np.arange(members)},
        ).to_netcdf(folder / f"outputs_{name}.nc")
    return folder
