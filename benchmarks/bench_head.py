# SPDX-License-Identifier: Apache-2.0
"""Cost of the overlapping head: one training step of a ClimaX with the paper's head
against the same model with ``overlapping_head=True``, interleaved, in one run.

Default sizes are the quickstart's model (29 variables, 32 x 64, patch 4, width 128,
depth 4, residual); a step is forward, MSE and backward on a batch of 32, fp32.
Prints the median time of each and their ratio.

    python benchmarks/bench_head.py [--batch 32] [--repeats 5] [--steps 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from physicsnemo_climax.models import ClimaX


def step_seconds(model: ClimaX, x: torch.Tensor, lead: torch.Tensor, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        model(x, lead, model.variables).square().mean().backward()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--variables", type=int, default=29)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    names = [f"v{i}" for i in range(args.variables)]
    common = dict(
        variables=names,
        patch_size=4,
        embed_dim=128,
        depth=4,
        decoder_depth=1,
        num_heads=4,
        drop_path=0.0,
        drop_rate=0.0,
        residual=True,
    )
    models = {"paper head": ClimaX(**common), "overlapping head": ClimaX(**common, overlapping_head=True)}
    x, lead = torch.randn(args.batch, len(names), 32, 64), torch.full((args.batch,), 24.0)
    times = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, model in models.items():
            times[name].append(step_seconds(model, x, lead, args.steps))
    median = {name: statistics.median(t) for name, t in times.items()}
    for name, seconds in median.items():
        print(f"{name:>17}: {seconds * 1000:7.1f} ms per step (median of {args.repeats})")
    print(f"overlapping / paper: {median['overlapping head'] / median['paper head']:.2f}x")


if __name__ == "__main__":
    main()
