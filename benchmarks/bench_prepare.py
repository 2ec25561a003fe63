# SPDX-License-Identifier: Apache-2.0
"""``climax data prepare`` throughput from a WeatherBench 2 Zarr store, against a raw read.

Writes a Zarr store in WeatherBench 2's 64x32 layout (``time, longitude,
latitude``; levels inside each chunk; 100 time steps per chunk; Zarr format 2
with consolidated metadata), then measures in one run, page cache warm:

* raw: every chunk the preparation needs, read and decoded by xarray/zarr
  (the limit for these bytes here);
* prepare from the local folder (5.625 deg target, conservative regridding,
  statistics, shards and checksums written);
* prepare from the same store served over ``http://127.0.0.1`` by a separate
  process (``python -m http.server``).

Source MB/s counts the bytes of the chunks the variables need (a chunk holds
all 13 levels; the preparation asks for 7 of them). Each path runs
``--repeats`` times, interleaved; the fastest run of each is shown.

    python benchmarks/bench_prepare.py [--years 1] [--upper 3]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numcodecs
import numpy as np
import pandas as pd
import xarray as xr

from physicsnemo_climax.data import PrepareConfig, prepare
from physicsnemo_climax.grid import regular_grid
from physicsnemo_climax.models.variables import PRESSURE_LEVELS

WB2_LEVELS = [50, 100, 150, 200, 250, 300, 400, 500, 600, 700, 850, 925, 1000]
SURFACE = ["2m_temperature", "10m_u_component_of_wind", "10m_v_component_of_wind"]
UPPER = ["geopotential", "temperature", "u_component_of_wind", "v_component_of_wind", "specific_humidity"]


def write_wb2(path: Path, years: int, upper: list[str]) -> xr.Dataset:
    """Fields in the WB2 64x32 layout (Blosc-compressed chunks of 100 steps), 6-hourly from 2000."""
    lat, lon = regular_grid((32, 64))
    times = pd.date_range("2000-01-01", periods=years * 1460, freq="6h").values
    data = {v: (("time", "longitude", "latitude"), weather(times.size, (), i)) for i, v in enumerate(SURFACE)}
    data |= {
        v: (("time", "level", "longitude", "latitude"), weather(times.size, (13,), 10 + i)) for i, v in enumerate(upper)
    }
    ds = xr.Dataset(data, coords={"time": times, "level": WB2_LEVELS, "latitude": lat, "longitude": lon})
    compressor = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE)  # zarr 2's default
    encoding = {v: {"chunks": (100,) + ds[v].shape[1:], "compressors": (compressor,)} for v in ds.data_vars}
    ds.to_zarr(path, zarr_format=2, consolidated=True, encoding=encoding)
    return ds


def weather(steps: int, levels: tuple, seed: int) -> np.ndarray:
    """Smooth, moving fields ``[T, *levels, 64, 32]`` with 1% noise: they compress as real ones do."""
    rng = np.random.default_rng(seed)
    lon, lat = np.meshgrid(np.linspace(0, 2 * np.pi, 64, endpoint=False), np.linspace(-1.5, 1.5, 32), indexing="ij")
    t = np.arange(steps, dtype=np.float32)[:, None, None]
    k = rng.integers(1, 5, size=max(1, int(np.prod(levels))))
    fields = [np.sin(kk * lon - 0.1 * kk * t + j) * np.cos(lat) for j, kk in enumerate(k)]
    out = np.stack(fields, 1).reshape((steps, *levels, 64, 32)).astype(np.float32)
    return 250 + 10 * out + 0.1 * rng.standard_normal(out.shape, np.float32)


def raw_read(path: Path, variables: list[str]) -> tuple[float, int]:
    """Seconds to read and decode every chunk of ``variables``, and their bytes."""
    start, nbytes = time.perf_counter(), 0
    with xr.open_zarr(path, chunks=None) as ds:
        for v in variables:
            nbytes += ds[v].values.nbytes
    return time.perf_counter() - start, nbytes


def serve(root: Path, program: list[str] | None = None) -> tuple[subprocess.Popen, str]:
    """``root`` over ``http://127.0.0.1`` from a separate process: ``python -m http.server``, or
    ``program`` (a script and its options) taking the same port, ``--bind`` and ``--directory``."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            *(program or ["-m", "http.server"]),
            str(port),
            "--bind",
            "127.0.0.1",
            "--directory",
            str(root),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def timed_prepare(source: str, variables: list[str], out: Path, years: int) -> float:
    config = PrepareConfig([source], variables, {"train": f"2000-{1999 + years}"}, grid=(32, 64))
    start = time.perf_counter()
    prepare(config, out)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--years", type=int, default=1, help="years of 6-hourly data")
    parser.add_argument("--upper", type=int, default=3, help="upper-air variables (of 5), 13 levels each")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each path (the fastest is shown)")
    args = parser.parse_args()
    upper = UPPER[: args.upper]
    variables = SURFACE + [f"{v}_{level}" for v in upper for level in PRESSURE_LEVELS]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_wb2(root / "wb2.zarr", args.years, upper)
        raw_read(root / "wb2.zarr", SURFACE + upper)  # warm the page cache
        server, url = serve(root)
        times = {"raw": [], "local": [], "http": []}
        try:
            for r in range(args.repeats):  # interleaved, so a busy moment hits every path alike
                seconds, nbytes = raw_read(root / "wb2.zarr", SURFACE + upper)
                times["raw"].append(seconds)
                for name, source in (("local", str(root / "wb2.zarr")), ("http", f"{url}/wb2.zarr")):
                    times[name].append(timed_prepare(source, variables, root / f"{name}{r}", args.years))
        finally:
            server.terminate()
        rows = [
            (label, min(times[key]))
            for label, key in (
                ("raw read of the chunks (xarray/zarr)", "raw"),
                ("prepare, local Zarr folder", "local"),
                ("prepare, http://127.0.0.1", "http"),
            )
        ]
        seconds = rows[0][1]
    print(
        f"WB2 64x32 layout, {args.years} year(s) 6-hourly, {len(SURFACE)} surface + {len(upper)} x 13-level "
        f"variables, chunks of 100 steps; {len(variables)} ClimaX variables prepared; "
        f"{nbytes / 1e6:.0f} MB of chunks"
    )
    print(f"{'path':38s} {'seconds':>8s} {'source MB/s':>12s} {'of raw':>7s}")
    for name, s in rows:
        print(f"{name:38s} {s:8.2f} {nbytes / s / 1e6:12.1f} {seconds / s:7.0%}")


if __name__ == "__main__":
    main()
