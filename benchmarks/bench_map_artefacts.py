# SPDX-License-Identifier: Apache-2.0
"""Patch edges and polar bands in two runs' forecast errors, side by side.

What a reader of ``case.png`` and ``bias_maps.png`` sees, as numbers, for each
scored variable and lead, over the initial times a run's evaluation saved:

* ``rmse``: the RMSE with the scorecard's cell-area weights (a check against it);
* ``polar``: the largest zonal-mean error on the three rows nearest either
  pole, over the RMSE (a band of systematic error at a pole is near or above 1);
* ``edges``: the mean absolute step of the bias map between neighbouring cells
  across patch edges over that inside patches, both directions (the patch grid
  shows above 1; a smooth map is near 1);
* ``hi-k``: power at zonal wavenumbers of the patch scale and above
  (``k >= W / p``) in the forecasts over the truth's (excess small-scale noise),
  from the zonal spectra of ``spectra.png`` (``forecasting.diagnostics.zonal_power``).

Each run folder first needs its forecasts written by
``climax evaluate run_dir=RUN eval.save_forecasts=true`` (``RUN/eval/forecasts.zarr``,
or give ``--forecasts A.zarr B.zarr``). Truth comes from the run's own store.

    python benchmarks/bench_map_artefacts.py RUN_A RUN_B [--leads 24 168]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from omegaconf import OmegaConf

from physicsnemo_climax.data import ShardStore
from physicsnemo_climax.forecasting.diagnostics import zonal_power
from physicsnemo_climax.forecasting.score_regions import cell_areas


def split_fields(store: ShardStore, split: str, variable: str) -> dict[np.datetime64, np.ndarray]:
    """Every ``[H, W]`` field of ``variable`` in ``split``, by hourly time stamp (read once)."""
    times = np.concatenate(store.shard_times(split)).astype("datetime64[h]")
    fields = np.concatenate([np.asarray(s.array(variable))[:, 0] for s in store.shards(split)])
    return dict(zip(times, fields))


def truth_at(fields: dict[np.datetime64, np.ndarray], valid: np.ndarray) -> np.ndarray:
    """``[T, H, W]`` fields at the ``valid`` times (NaN where the split ends)."""
    blank = np.full(next(iter(fields.values())).shape, np.nan)
    return np.stack([fields.get(t, blank) for t in valid.astype("datetime64[h]")])


def edge_contrast(field: np.ndarray, p: int) -> float:
    """Mean ``|step|`` between neighbouring cells across patch edges over inside patches
    (longitude steps wrap round the globe)."""
    dx = np.abs(np.roll(field, -1, axis=1) - field)
    dy = np.abs(np.diff(field, axis=0))
    x_edge = np.arange(field.shape[1]) % p == p - 1
    y_edge = np.arange(field.shape[0] - 1) % p == p - 1
    return float((dx[:, x_edge].mean() + dy[y_edge].mean()) / (dx[:, ~x_edge].mean() + dy[~y_edge].mean()))


def artefacts(forecast: np.ndarray, truth: np.ndarray, lat: np.ndarray, p: int) -> dict[str, float]:
    """The four figures of the module docstring for ``[T, H, W]`` forecasts and truth."""
    keep = ~np.isnan(truth).any(axis=(1, 2))
    forecast, truth = forecast[keep], truth[keep]
    error = forecast - truth
    w = cell_areas(lat)[:, None]  # the scorecard's weights
    rmse = float(np.sqrt((error**2 * w).mean() / w.mean()))
    zonal = error.mean(axis=(0, 2))
    lat_t, k = torch.as_tensor(lat), forecast.shape[-1] // p
    power = [zonal_power(torch.as_tensor(f), lat_t)[k:].sum().item() for f in (forecast, truth)]
    return dict(
        rmse=rmse,
        polar=float(np.abs(np.r_[zonal[:3], zonal[-3:]]).max() / rmse),
        edges=edge_contrast(error.mean(axis=0), p),
        **{"hi-k": power[0] / power[1]},
    )


def run_figures(run: Path, forecasts: Path, leads: list[float]) -> dict[tuple[str, float], dict]:
    cfg = OmegaConf.load(run / "config.yaml")
    meta = json.loads((run / "run.json").read_text())
    root = Path(meta["data_root"])  # relative to where the run was made: here, or above runs/
    store = ShardStore(root if root.is_absolute() or root.exists() else run.parent.parent / root)
    ds = xr.open_zarr(forecasts)
    figures = {}
    for variable in cfg.eval.variables:
        name, _, level = variable.rpartition("_")
        field = ds[name].sel(level=int(level)) if level.isdigit() and name in ds else ds[variable]
        fields = split_fields(store, cfg.eval.split, variable)
        for lead in leads:
            delta = np.timedelta64(int(lead), "h")
            fc = field.sel(prediction_timedelta=delta).transpose("time", "latitude", "longitude").values
            truth = truth_at(fields, ds.time.values + delta)
            figures[variable, lead] = artefacts(fc, truth, ds.latitude.values, int(cfg.model.patch_size))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs=2, type=Path)
    parser.add_argument("--forecasts", nargs=2, type=Path)
    parser.add_argument("--leads", nargs="+", type=float, default=[24.0, 168.0])
    args = parser.parse_args()
    zarrs = args.forecasts or [r / "eval" / "forecasts.zarr" for r in args.runs]
    a, b = (run_figures(r, z, args.leads) for r, z in zip(args.runs, zarrs))
    print(f"A = {args.runs[0]}\nB = {args.runs[1]}")
    print(f"{'variable':<26}{'lead':>6}" + "".join(f"{m:>24}" for m in ("rmse", "polar", "edges", "hi-k")))
    for key in a:
        cells = "".join(f"{a[key][m]:>9.3g} {b[key][m]:>7.3g} {b[key][m] / a[key][m]:>5.2f}x" for m in a[key])
        print(f"{key[0]:<26}{key[1]:>5.0f}h{cells}")
    print("each cell: A, B, B/A")


if __name__ == "__main__":
    main()
