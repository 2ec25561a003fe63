# SPDX-License-Identifier: Apache-2.0
"""Scoring throughput of ``climax evaluate``'s scorer against reading the same fields.

For each grid (5.625 deg, 32 x 64, and 1.40625 deg, 128 x 256) it writes a shard
store (the layout ``climax evaluate`` reads) and measures, in one run, page
cache warm:

* read: the truth fields of a batch of initial times, read from the shards
  as the evaluation reads them (``Shard.read`` per sample, then stacked);
* score: :class:`physicsnemo_climax.forecasting.scoring.Scorer` on that batch
  with 10 WeatherBench 2 regions and 4 metrics (RMSE, bias, MAE, ACC), for
  the model, persistence and climatology (3 forecasts per truth field).

For scale it also times what the evaluation spends on each initial time
anyway: one forward pass of the ClimaX preset of that grid (``climax``,
``climax_1.40625deg``; fp32, batch 1, no gradient), per scored field.

A field is one variable of one sample on the whole grid. Each path runs
``--repeats`` times, interleaved; the fastest of each is shown. The target
(issue 17): scoring costs less than reading, i.e. score fields/s above read
fields/s for the same fields.

    python benchmarks/bench_evaluate.py [--batch 16] [--variables 5] [--repeats 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from physicsnemo_climax.config import load_config
from physicsnemo_climax.data import ShardStore
from physicsnemo_climax.forecasting.score_regions import WB2_REGIONS, region_specs, region_weights
from physicsnemo_climax.forecasting.scoring import METRICS, Scorer, Verification
from physicsnemo_climax.grid import regular_grid
from physicsnemo_climax.models import ClimaX

REGIONS = list(WB2_REGIONS)[:10]
PRESETS = {(32, 64): "climax", (128, 256): "climax_1.40625deg"}
SCORED = {k: METRICS[k] for k in ("rmse", "bias", "mae", "acc")}


def write_store(root: Path, grid: tuple[int, int], variables: list[str], steps: int) -> ShardStore:
    """A test split of one shard, ``steps`` times of smooth random fields per variable."""
    lat, lon = regular_grid(grid)
    rng = np.random.default_rng(0)
    (root / "test").mkdir(parents=True)
    fields = {v: (rng.standard_normal((steps, 1, *grid)) + 280.0).astype(np.float32) for v in variables}
    np.savez(root / "test" / "0.npz", **fields)
    np.save(root / "lat.npy", lat)
    np.save(root / "lon.npy", lon)
    return ShardStore(root, 6)


def read(store: ShardStore, variables: list[str], times: list[int]) -> torch.Tensor:
    """The truth of a batch, as the evaluation reads it."""
    shard = store.shards("test")[0]
    return torch.stack([torch.as_tensor(shard.read(variables, t)) for t in times])


def score(scorer: Scorer, truth: torch.Tensor, lat: torch.Tensor) -> None:
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(truth.shape, generator=g)
    verification = Verification(truth, truth.mean(dim=0, keepdim=True), truth + noise, lat)
    scorer.add(24.0, truth + 0.5 * noise, verification)


@torch.no_grad()
def forward_seconds(grid: tuple[int, int]) -> float:
    """Seconds of one forward pass (batch 1) of the grid's ClimaX preset, the faster of two."""
    cfg = load_config([f"model={PRESETS[grid]}"]).model
    model = ClimaX(**{k: v for k, v in cfg.items() if k != "_target_"}).eval()
    x, lead = torch.randn(1, len(model.variables), *grid), torch.full((1,), 72.0)
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        model(x, lead, model.variables)
        times.append(time.perf_counter() - t0)
    return min(times)


def bench(grid: tuple[int, int], batch: int, n_var: int, repeats: int) -> dict:
    variables = [f"var_{i}" for i in range(n_var)]
    with tempfile.TemporaryDirectory() as tmp:
        store = write_store(Path(tmp) / "store", grid, variables, batch * 2)
        weights, _ = region_weights(region_specs(REGIONS), store.lat, store.lon)
        lat = torch.as_tensor(store.lat)
        times = list(range(0, 2 * batch, 2))
        read(store, variables, times)  # open, verify, page cache warm
        best = {"read": np.inf, "score": np.inf}
        for _ in range(repeats):
            t0 = time.perf_counter()
            truth = read(store, variables, times)
            best["read"] = min(best["read"], time.perf_counter() - t0)
            scorer = Scorer(variables, weights, metrics=SCORED)
            t0 = time.perf_counter()
            score(scorer, truth, lat)
            best["score"] = min(best["score"], time.perf_counter() - t0)
    fields = batch * n_var
    forward = forward_seconds(grid) / n_var  # per scored field of one initial time
    return {
        "grid": f"{grid[0]}x{grid[1]}",
        "read fields/s": fields / best["read"],
        "score fields/s": 3 * fields / best["score"],
        "score / read time": best["score"] / best["read"],
        "score / forecast time": best["score"] / (fields * forward),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--variables", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(
        f"{len(REGIONS)} regions, metrics {list(SCORED)}, batch {args.batch}, {args.variables} variables, "
        f"3 forecasts (model, persistence, climatology) per truth field; {torch.get_num_threads()} threads"
    )
    print(
        f"{'grid':>9} {'read fields/s':>14} {'score fields/s':>15} {'score/read time':>16} {'score/forecast time':>20}"
    )
    for grid in ((32, 64), (128, 256)):
        row = bench(grid, args.batch, args.variables, args.repeats)
        print(
            f"{row['grid']:>9} {row['read fields/s']:>14.0f} {row['score fields/s']:>15.0f} "
            f"{row['score / read time']:>16.2f} {row['score / forecast time']:>20.2g}"
        )


if __name__ == "__main__":
    main()
