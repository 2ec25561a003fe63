# SPDX-License-Identifier: Apache-2.0
"""CorrDiff streaming generation: peak memory and samples/s against the number of times.

Run by ``python benchmarks/bench_corrdiff.py --stream`` (see there). Each case
runs in its own process (``--stream-case``) so that its peak resident set is
its own: the figure is the process's peak RSS (``ru_maxrss``) less its RSS
just before generation starts (after the nets are built and one warm-up
forward has run), i.e. what generation adds. ``tracemalloc`` would miss
torch's tensors, which are not Python allocations.

Two ways of generating the same times:

* ``streaming``: :func:`physicsnemo_climax.downscaling.generation.stream`
  with the :class:`~physicsnemo_climax.downscaling.writer.GenerationWriter`
  thread, one time per block (``generation.time_block=1``);
* ``holding``: what generation did before it streamed, rebuilt here: every
  time's input stacked, :func:`~physicsnemo_climax.downscaling.generation.downscale`
  over all of them, then the whole file built in memory and written at once
  (``files.write_netcdf``).

Both write the same file layout (input, regression, prediction, truth) to a
temporary folder and delete it after. Inputs and truths are random (seeded by
the time index); nets are untrained.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr

from physicsnemo_climax.config import load_config
from physicsnemo_climax.downscaling.generation import build_sampler, downscale, seed_batches, stream
from physicsnemo_climax.downscaling.models import build_diffusion, build_regression
from physicsnemo_climax.downscaling.writer import GenerationWriter
from physicsnemo_climax.engine.plan import resolve
from physicsnemo_climax.files import write_netcdf

#: ClimaX regression stage as small as the tests' (one CONUS forward: ~1 s on 2 CPU cores).
TINY_CLIMAX = [
    "model=climax_regression",
    "model.climax.embed_dim=32",
    "model.climax.depth=1",
    "model.climax.num_heads=2",
    "model.climax.decoder_depth=1",
    "model.climax.patch_size=16",
]
#: The tiny UNets with 6 levels: SongUNet always attends at its lowest level, and with tiny.yaml's
#: 2 levels that is 528 x 896 tokens at CONUS size (an 895 GB attention matrix).
DEEP_TINY = ["model_size=tiny", "model_size.channel_mult=[1,1,1,1,1,1]"]


def rss_bytes() -> int:
    """This process's resident set now."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def nets(net: str, domain):
    """``(regression, diffusion or None, generation section)`` for ``--stream-net``."""
    reg_args = TINY_CLIMAX if net == "climax" else DEEP_TINY
    reg_cfg = load_config(reg_args, "config_training_hrrr_mini_regression")
    plan = resolve(reg_cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        regression = build_regression(reg_cfg, domain, plan).eval().requires_grad_(False)
        diffusion = None
        if net == "unet":
            dif_cfg = load_config(DEEP_TINY, "config_training_hrrr_mini_diffusion")
            diffusion = build_diffusion(dif_cfg, domain, plan).eval().requires_grad_(False)
    gen = load_config(
        ["generation/sampler=deterministic", "generation.sampler.num_steps=2"], "config_generate_hrrr_mini"
    ).generation
    return regression, diffusion, gen


def sample(domain, t: int) -> tuple[torch.Tensor, np.ndarray]:
    """The random input ``[1, C_in, H, W]`` and truth ``[1, C_out, H, W]`` of time ``t``."""
    g = torch.Generator().manual_seed(t)
    x = torch.randn(1, len(domain.input_channels), *domain.shape, generator=g)
    truth = torch.randn(1, len(domain.output_variables), *domain.shape, generator=g).numpy()
    return x, truth


def holding(domain, regression, diffusion, gen, batches, times, out: Path) -> None:
    """The non-streaming path: all inputs, all members, the whole file in memory, one write."""
    pairs = [sample(domain, t) for t in range(len(times))]
    x, truth = torch.cat([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])
    mean, members = downscale(
        regression, diffusion, x, batches, build_sampler(gen, domain.shape), gen.hr_mean_conditioning
    )
    inputs, mean = domain.denormalize_input(x).numpy(), domain.denormalize_output(mean).numpy()
    members = domain.denormalize_output(members).numpy()
    root = xr.Dataset(coords={"time": times, "ensemble": np.arange(members.shape[0])})
    field = ("time", "y", "x")
    groups = {
        "input": {v: (field, inputs[:, k]) for k, v in enumerate(domain.input_channels)},
        "regression": {v: (field, mean[:, k]) for k, v in enumerate(domain.output_variables)},
        "prediction": {v: (("ensemble", *field), members[:, :, k]) for k, v in enumerate(domain.output_variables)},
        "truth": {v: (field, truth[:, k]) for k, v in enumerate(domain.output_variables)},
    }
    write_netcdf(
        out,
        root,
        {g: xr.Dataset({k: (d, np.asarray(a, np.float32)) for k, (d, a) in v.items()}) for g, v in groups.items()},
    )


def streaming(domain, regression, diffusion, gen, batches, times, out: Path) -> None:
    """:func:`generation.stream` with the writer thread, one time per block."""

    def blocks():
        for t in range(len(times)):
            x, truth = sample(domain, t)
            yield x, {"times": times[t : t + 1], "truth": truth}

    with GenerationWriter(out, domain, len(torch.cat(batches)), truth=True) as writer:
        stream(
            regression, diffusion, build_sampler(gen, domain.shape), batches, blocks(), writer, gen.hr_mean_conditioning
        )


def run_case(args, domain) -> dict:
    """One case in this process: warm up, then time and measure generation (JSON on stdout)."""
    regression, diffusion, gen = nets(args.stream_net, domain)
    batches = seed_batches(args.stream_members, 1)
    times = pd.date_range("2021-01-01", periods=args.stream_case_times, freq="h").values
    with torch.no_grad():  # warm-up: one forward at this size
        regression(torch.zeros(1, len(domain.output_variables), *domain.shape), sample(domain, 0)[0])
    folder = Path(tempfile.mkdtemp(prefix="bench_stream_", dir=args.stream_dir))
    before = rss_bytes()
    start = time.perf_counter()
    {"streaming": streaming, "holding": holding}[args.stream_case](
        domain, regression, diffusion, gen, batches, times, folder / "out.nc"
    )
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    size = (folder / "out.nc").stat().st_size
    shutil.rmtree(folder)
    return {
        "case": args.stream_case,
        "times": len(times),
        "seconds": seconds,
        "peak_rss": peak,
        "rss_before": before,
        "added": peak - before,
        "file_bytes": size,
        "samples_per_s": args.stream_members * len(times) / seconds,
    }


def held_bytes(domain, members: int, times: int) -> int:
    """What the holding path keeps at its peak: inputs, mean, members (normalized and physical, float32),
    the truth, and the whole file in memory."""
    c_in, c_out = len(domain.input_channels), len(domain.output_variables)
    field = 4 * domain.shape[0] * domain.shape[1] * times
    file = field * (c_in + c_out * (members + 2))
    return 2 * field * (c_in + c_out * (members + 1)) + field * c_out + file


def run_all(args, domain) -> list[dict]:
    """Every case in a child process, streaming first; holding only where it fits ``--stream-hold``."""
    cases = [("streaming", t) for t in args.stream_times] + [("holding", t) for t in args.stream_hold]
    results = []
    for case, t in cases:
        cmd = [
            sys.executable,
            sys.argv[0],
            "--stream-case",
            case,
            "--stream-case-times",
            str(t),
            "--stream-net",
            args.stream_net,
            "--stream-members",
            str(args.stream_members),
            "--grid",
            *map(str, args.grid),
        ]
        cmd += ["--threads", str(args.threads)] if args.threads else []
        cmd += ["--stream-dir", args.stream_dir] if args.stream_dir else []
        env = dict(os.environ, **dict(item.split("=", 1) for item in args.stream_env))
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode:
            raise RuntimeError(f"{case} with {t} times failed:\n{done.stderr[-3000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(
            f"{case:9s} {t:4d} times {r['seconds']:8.1f} s {r['samples_per_s']:8.3f} samples/s "
            f"peak RSS {r['peak_rss'] / 2**30:6.2f} GiB (+{r['added'] / 2**30:.2f} GiB over the nets)",
            flush=True,
        )
    return results


def report(args, domain, results: list[dict]) -> None:
    """The markdown table and the targets: flat memory, throughput no lower than holding."""
    print("\n| path | times | seconds | samples/s | peak RSS, GiB | added by generation, GiB | file, GiB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['case']} | {r['times']} | {r['seconds']:.1f} | {r['samples_per_s']:.3f} | "
            f"{r['peak_rss'] / 2**30:.2f} | {r['added'] / 2**30:.2f} | {r['file_bytes'] / 2**30:.2f} |"
        )
    stream_rows = {r["times"]: r for r in results if r["case"] == "streaming"}
    first, last = min(stream_rows), max(stream_rows)
    ratio = stream_rows[last]["peak_rss"] / stream_rows[first]["peak_rss"]
    print(f"\nstreaming peak RSS, {last} vs {first} times: {ratio:.3f}x (target: within 1.10x)")
    for r in results:
        if r["case"] == "holding" and r["times"] in stream_rows:
            s = stream_rows[r["times"]]
            print(
                f"{r['times']} times: streaming / holding samples/s {s['samples_per_s'] / r['samples_per_s']:.2f}x "
                f"(target >= 1), peak RSS {s['peak_rss'] / r['peak_rss']:.2f}x"
            )
    for t in sorted(set(stream_rows) - set(args.stream_hold)):
        print(
            f"holding {t} times would keep about {held_bytes(domain, args.stream_members, t) / 2**30:.1f} GiB "
            "(inputs, members, their physical copies and the in-memory file): not run"
        )
