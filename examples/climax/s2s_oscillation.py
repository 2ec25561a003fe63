# SPDX-License-Identifier: Apache-2.0
"""Sub-seasonal prediction on a synthetic daily climate whose slow part is known:
``python examples/climax/s2s_oscillation.py --out s2s_demo`` (add ``--no-slow`` for the
same climate without it).

Six years of daily ``2m_temperature`` and ``10m_u_component_of_wind`` on an 8 x 16 grid:
a seasonal cycle, white noise (1 K, 1 m/s) and, unless ``--no-slow``, an oscillation of
47 days held by the two variables in quadrature (as an MJO index's two components are). The
state at the initial time tells where the oscillation is, so the mean of weeks 3-4 and 5-6
is predictable from it, while last week's anomaly, persisted, is half a period out of phase.
Without the slow part nothing beyond the season is predictable, and the scorecard says so.
The script writes the files, prepares a store (train 2000-2003, val 2004, test 2005), trains
``task=s2s`` and prints the scorecard (``docs/s2s.md`` shows it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

VARIABLES = ["2m_temperature", "10m_u_component_of_wind"]
PERIOD_DAYS = 47.0
YEARS = range(2000, 2006)
SPLITS = {"train": "2000-2003", "val": 2004, "test": 2005}

#: The settings of the demo's (and the tests') run: a small ClimaX told the season by the year's
#: progress at the window's start, as the synthetic climate has one.
TRAINING = [
    "task=s2s",
    "model.embed_dim=64",
    "model.depth=2",
    "model.num_heads=4",
    "model.patch_size=2",
    "data.forcings=[year_progress_sin,year_progress_cos]",
    "train.batch_size=16",
    "train.steps=500",
    "train.lr=5e-3",
    "train.warmup_steps=20",
    "train.val_every=500",
    "train.ckpt_every=500",
    "train.num_workers=0",
    "eval.max_samples=64",
    "eval.climatology=wb2",
    "eval.climatology_window=31",
]


def oscillation_files(folder: Path, years=YEARS, slow: bool = True, seed: int = 0) -> list[str]:
    """Write one NetCDF file per year (see the module's docstring); returns their paths."""
    rng = np.random.default_rng(seed)
    lat = -90 + (np.arange(8) + 0.5) * 180 / 8
    lon = np.arange(16) * 360 / 16
    pattern = np.cos(np.deg2rad(lat))[:, None] * (1 + 0.5 * np.cos(np.deg2rad(lon)))[None, :]
    paths = []
    for year in years:
        times = pd.date_range(f"{year}-01-01", f"{year}-12-31", freq="D").values
        days = (times - np.datetime64("2000-01-01")) / np.timedelta64(1, "D")
        phase = 2 * np.pi * days / PERIOD_DAYS  # one clock for all years: the oscillation ignores the calendar
        season = 2 * np.cos(2 * np.pi * days / 365.25)[:, None, None] * np.sin(np.deg2rad(lat))[None, :, None]
        amplitude = 3.0 if slow else 0.0
        noise = rng.normal(0, 1, (2, len(times), 8, 16))
        t2m = 285 + season + amplitude * np.cos(phase)[:, None, None] * pattern + noise[0]
        u10 = 2 + amplitude * np.sin(phase)[:, None, None] * pattern + noise[1]
        dims = ("time", "latitude", "longitude")
        ds = xr.Dataset(
            {
                "t2m": (dims, t2m.astype(np.float32), {"units": "K"}),
                "u10": (dims, u10.astype(np.float32), {"units": "m s**-1"}),
            },
            coords={"time": times, "latitude": lat, "longitude": lon},
        )
        path = Path(folder) / f"daily_{year}.nc"
        ds.to_netcdf(path)
        paths.append(str(path))
    return paths


def main(argv=None) -> None:
    from physicsnemo_climax.config import load_config
    from physicsnemo_climax.data.preparation import PrepareConfig, prepare
    from physicsnemo_climax.tasks import evaluate, summarize, train

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="a new folder for the files, the store and the run")
    parser.add_argument("--no-slow", action="store_true", help="the climate without its slow oscillation")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=False)  # a new folder: nothing of the user's is touched
    (out / "raw").mkdir()
    files = oscillation_files(out / "raw", slow=not args.no_slow)
    store = prepare(
        PrepareConfig(files, VARIABLES, SPLITS, grid=(8, 16), hours_per_step=24, shards_per_year=1), out / "store"
    )
    cfg = load_config([*TRAINING, f"data.root={store}", f"run_dir={out / 'run'}"])
    train(cfg)
    print(summarize(cfg, evaluate(cfg)))


if __name__ == "__main__":
    main()
