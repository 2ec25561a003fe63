# SPDX-License-Identifier: Apache-2.0
"""Training from a Zarr store over a slow network, against training from its prepared copy.

Writes a Zarr store in WeatherBench 2's 64x32 layout (``time, longitude,
latitude``; 13 levels in each chunk; chunks of ``--chunk`` steps; Blosc), serves
it from a separate process over ``http://127.0.0.1`` (``slow_server.py``) that waits
``--latency-ms`` before answering each request and sends at most ``--mbps`` megabytes a second,
then in one run:

* prepares a local copy (``climax data prepare``) and the side folder of the
  served store (``climax data prepare URL --stream``);
* times the same training step (a ClimaX forward, backward and AdamW step on
  the 5.625 deg grid) fed by the threaded loader from the copy, then from the
  served store with empty caches (a first epoch: every chunk crosses the
  network), and the loader alone on both (how fast each can feed);
* with ``--disk``, a second streamed epoch read from the disk cache only.

Each path runs ``--repeats`` times, interleaved; the fastest of each is shown,
with its ratio to the copy.

    python benchmarks/bench_stream.py [--latency-ms 20] [--mbps 200] [--samples 256]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from bench_prepare import SURFACE, UPPER, serve, write_wb2

from physicsnemo_climax.data import ClimaXShardReader, ForecastBatches, PrepareConfig, make_loader, prepare, streamed
from physicsnemo_climax.metrics import weighted_mse_loss
from physicsnemo_climax.models import ClimaX
from physicsnemo_climax.models.variables import PRESSURE_LEVELS


def model_for(reader: ClimaXShardReader) -> tuple[ClimaX, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = ClimaX(
        variables=reader.variables,
        img_size=list(reader.store.grid),
        patch_size=4,
        embed_dim=128,
        depth=2,
        num_heads=4,
    )
    return model, torch.optim.AdamW(model.parameters(), lr=1e-4)


def epoch(root, variables: list[str], samples: int, batch: int, step: bool, cache_gb: float = 0) -> float:
    """Samples per second of ``samples`` samples, with the training step or the loader alone."""
    reader = ClimaXShardReader(root, "train", variables=variables, lead_range=(6, 24), chunk_cache_gb=cache_gb)
    batches = ForecastBatches([reader], batch_size=batch, seed=0)
    model, optimizer = model_for(reader) if step else (None, None)
    lat = torch.as_tensor(reader.store.lat, dtype=torch.float32)
    start, seen = time.perf_counter(), 0
    for b in make_loader(batches, num_workers=2):
        if step:
            loss = weighted_mse_loss(model(b.x, b.lead_time, b.variables), b.y, lat)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seen += len(b.x)
        if seen >= samples:
            break
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--mbps", type=float, default=200.0, help="the server's bandwidth, MB/s")
    parser.add_argument("--years", type=int, default=1)
    parser.add_argument("--upper", type=int, default=3, help="upper-air variables (of 5), 13 levels each")
    parser.add_argument("--samples", type=int, default=256, help="samples per timed epoch")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--disk", action="store_true", help="also a second epoch from the disk cache")
    args = parser.parse_args()
    upper = UPPER[: args.upper]
    variables = SURFACE + [f"{v}_{level}" for v in upper for level in PRESSURE_LEVELS]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_wb2(root / "wb2.zarr", args.years, upper)
        slow = [
            str(Path(__file__).with_name("slow_server.py")),
            f"--latency-ms={args.latency_ms}",
            f"--mbps={args.mbps}",
        ]
        server, url = serve(root, slow)
        try:
            rows = measure(root, f"{url}/wb2.zarr", variables, args)
        finally:
            server.terminate()
    report(rows, variables, args)


def measure(root: Path, source: str, variables: list[str], args) -> dict[str, float]:
    """The fastest samples/s of every path, the copy's and the stream's interleaved."""
    splits = {"train": f"2000-{1999 + args.years}"}
    copy = prepare(PrepareConfig([str(root / "wb2.zarr")], variables, splits), root / "copy")
    prepare(PrepareConfig([source], variables, splits, stream=True), streamed.stream_folder(source))
    paths = {
        "train step, prepared copy": lambda: epoch(copy, variables, args.samples, args.batch, True),
        "train step, served Zarr (first epoch)": lambda: epoch(source, variables, args.samples, args.batch, True),
        "loader alone, prepared copy": lambda: epoch(copy, variables, args.samples, args.batch, False),
        "loader alone, served Zarr (first epoch)": lambda: epoch(source, variables, args.samples, args.batch, False),
    }
    if args.disk:
        paths["loader alone, served Zarr (disk cache)"] = lambda: epoch(
            source, variables, args.samples, args.batch, False, cache_gb=4
        )
        epoch(source, variables, args.samples * 4, args.batch, False, cache_gb=4)  # fill the disk cache
    best: dict[str, float] = {}
    for _ in range(args.repeats):
        for name, run in paths.items():
            streamed._READERS.clear()  # every epoch starts with an empty memory cache
            best[name] = max(best.get(name, 0.0), run())
    return best


def report(rows: dict[str, float], variables: list[str], args) -> None:
    print(
        f"WB2 64x32 layout, {args.years} year(s) 6-hourly, chunks of 100 steps, {len(variables)} ClimaX variables; "
        f"server {args.latency_ms:g} ms a request, {args.mbps:g} MB/s; batches of {args.batch}, "
        f"{args.samples} samples an epoch; 2 reading threads"
    )
    print(f"{'path':42s} {'samples/s':>10s} {'of the copy':>12s}")
    for name, rate in rows.items():
        base = rows["train step, prepared copy" if name.startswith("train") else "loader alone, prepared copy"]
        print(f"{name:42s} {rate:10.1f} {rate / base:12.0%}")


if __name__ == "__main__":
    main()
