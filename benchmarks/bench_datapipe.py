# SPDX-License-Identifier: Apache-2.0
"""Forecast datapipe throughput against the raw read speed of the same bytes.

Writes a synthetic store (48 variables, 32 x 64, float32, hourly shards, as
the official ClimaX layout), warms the page cache, then measures in one run:

* raw: reading every shard file whole from the page cache into memory (the
  physical limit here: a sample's bytes cannot arrive faster);
* the torch path in the main thread, with 1 and 2 reading threads (the
  default backend) and with 1 and 2 ``DataLoader`` worker processes;
* the DALI CPU pipeline with 2 workers (if DALI is installed).

Bytes per sample count what the model consumes: input and target fields.

    python benchmarks/bench_datapipe.py [--batch 32] [--batches 40]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from physicsnemo_climax.data import ClimaXShardReader, ForecastBatches, make_loader
from physicsnemo_climax.data.dali import DaliForecastLoader
from physicsnemo_climax.engine.environment import probe
from physicsnemo_climax.grid import regular_grid
from physicsnemo_climax.models import DEFAULT_VARIABLES


def write_store(root: Path, shards: int, steps: int) -> None:
    rng = np.random.default_rng(0)
    (root / "train").mkdir(parents=True)
    for i in range(shards):
        np.savez(
            root / "train" / f"2000_{i}.npz",
            **{v: rng.standard_normal((steps, 1, 32, 64), dtype=np.float32) for v in DEFAULT_VARIABLES},
        )
    np.savez(root / "normalize_mean.npz", **{v: np.zeros(1) for v in DEFAULT_VARIABLES})
    np.savez(root / "normalize_std.npz", **{v: np.ones(1) for v in DEFAULT_VARIABLES})
    lat, lon = regular_grid((32, 64))
    np.save(root / "lat.npy", lat)
    np.save(root / "lon.npy", lon)


def raw_read(root: Path) -> tuple[float, int]:
    start, total = time.perf_counter(), 0
    for path in sorted((root / "train").glob("*.npz")):
        total += len(path.read_bytes())
    return time.perf_counter() - start, total


def timed(loader, limit: int) -> tuple[float, int]:
    iterator = iter(loader)
    next(iterator)  # start-up (workers, first batch) excluded
    start, samples = time.perf_counter(), 0
    for i, batch in enumerate(iterator):
        samples += batch.x.shape[0]
        if i + 1 >= limit:
            break
    return time.perf_counter() - start, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=40, help="timed batches per path")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--steps", type=int, default=600, help="time steps per shard")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        write_store(root, args.shards, args.steps)
        raw_read(root)  # warm the page cache
        seconds, nbytes = raw_read(root)
        raw_mb_s = nbytes / seconds / 1e6
        sample_bytes = 2 * len(DEFAULT_VARIABLES) * 32 * 64 * 4
        print(
            f"store: {args.shards} shards x {args.steps} steps, 48 vars, 32x64 float32, "
            f"{nbytes / 1e9:.2f} GB; sample (x + y) {sample_bytes / 1e6:.2f} MB; batch {args.batch}"
        )
        print(f"{'path':22s} {'samples/s':>10s} {'MB/s':>9s} {'of raw':>7s}")
        print(f"{'raw read (page cache)':22s} {raw_mb_s * 1e6 / sample_bytes:10.1f} {raw_mb_s:9.0f} {1:7.0%}")

        def report(name, loader):
            seconds, samples = timed(loader, args.batches)
            mb_s = samples * sample_bytes / seconds / 1e6
            print(f"{name:22s} {samples / seconds:10.1f} {mb_s:9.0f} {mb_s / raw_mb_s:7.0%}")

        def batches(normalize=True):
            reader = ClimaXShardReader(root, lead_range=(6, 168), lead_step=6, normalize=normalize)
            return ForecastBatches([reader], args.batch, seed=0)

        report("main thread", make_loader(batches(), num_workers=0))
        for workers in (1, 2):
            report(f"{workers} worker threads", make_loader(batches(), workers, backend="threads"))
        for workers in (1, 2):
            report(f"{workers} worker processes", make_loader(batches(), workers, backend="processes"))
        if probe().ok("dali"):
            report("DALI CPU, 2 workers", DaliForecastLoader(batches(False), None, num_workers=2))
        else:
            print("DALI not installed: DALI path skipped")


if __name__ == "__main__":
    main()
