# SPDX-License-Identifier: Apache-2.0
"""Small forecast / analysis files for the CorrDiff-on-forecasts tests, and tiny runs trained on them."""

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from physicsnemo_climax.config import load_config
from physicsnemo_climax.downscaling import training

LEADS = [6.0, 72.0, 168.0]
SHAPE, FACTOR = (32, 32), 4


def write_forecasts(root: Path) -> Path:
    """Analyses (fine, 6-hourly, 15 days) and forecasts of them (coarse: the analysis block mean at
    the valid time plus an error growing with the lead), with coordinates."""
    rng = np.random.default_rng(0)
    times = pd.date_range("2000-01-01", periods=60, freq="6h")
    lat, lon = np.linspace(-30, 30, SHAPE[0]), np.linspace(0, 90, SHAPE[1])
    yy, xx = np.meshgrid(np.arange(SHAPE[0]), np.arange(SHAPE[1]), indexing="ij")
    phase = np.arange(len(times))[:, None, None] / 6.0
    fields = {
        "u": 5 * np.sin(xx / 4 + phase) + rng.normal(0, 1, (len(times), *SHAPE)),
        "v": 3 * np.cos(yy / 5 - phase) + rng.normal(0, 1, (len(times), *SHAPE)),
    }
    dims = ("time", "lat", "lon")
    analyses = xr.Dataset(
        {k: (dims, v.astype("float32"), {"units": "m s-1"}) for k, v in fields.items()},
        coords={"time": times, "lat": lat, "lon": lon},
    )
    inits = times[:24:2]
    coarse = {}
    for k, v in fields.items():
        blocks = v.reshape(len(times), SHAPE[0] // FACTOR, FACTOR, SHAPE[1] // FACTOR, FACTOR).mean((2, 4))
        out = np.empty((len(inits), len(LEADS), *blocks.shape[1:]), "float32")
        for i, init in enumerate(inits):
            for j, hours in enumerate(LEADS):
                valid = times.get_loc(init + pd.Timedelta(hours=hours))
                out[i, j] = blocks[valid] + rng.normal(0, 0.02 * hours, blocks.shape[1:])
        coarse[k] = (("time", "lead_time", "lat", "lon"), out, {"units": "m s-1"})
    forecast = xr.Dataset(
        coarse,
        coords={
            "time": inits,
            "lead_time": pd.to_timedelta(LEADS, unit="h"),
            "lat": lat.reshape(-1, FACTOR).mean(1),
            "lon": lon.reshape(-1, FACTOR).mean(1),
        },
    )
    analyses.to_netcdf(root / "analyses.nc")
    forecast.to_netcdf(root / "forecasts.nc")
    return root


def dataset_overrides(root, leads="[6,72,168]"):
    return [
        "dataset=forecast_coarse_fine",
        f"dataset.fine={root / 'analyses.nc'}",
        f"dataset.coarse={root / 'forecasts.nc'}",
        "dataset.output_variables=[u,v]",
        f"dataset.leads={leads}",
    ]


def train_stage(forecasts, run_dir, model, *overrides, name="config_training_hrrr_mini_regression"):
    cfg = load_config(
        [
            *dataset_overrides(forecasts),
            f"model={model}",
            f"run_dir={run_dir}",
            "model_size=tiny",
            *(["model.model_args.lead_time_steps=3"] if model.startswith("lt_aware") else []),
            "train.steps=3",
            "train.batch_size=4",
            "train.grad_accum=1",
            "train.num_workers=0",
            "train.progress=false",
            "train.ckpt_every=3",
            "train.val_every=3",
            "train.val_batches=1",
            *overrides,
        ],
        name,
    )
    return training.train(cfg)
