# SPDX-License-Identifier: Apache-2.0
"""CorrDiff generation and training losses: PhysicsNeMo's current diffusion API against its legacy helpers.

In one run, interleaved: ``downscale`` (the regression mean and an ensemble from the diffusion
net, this package's path on the current API) against the same ensemble drawn the way this package
drew it before (``regression_step`` + ``diffusion_step`` with the legacy ``stochastic_sampler`` or
``deterministic_sampler``); and one optimizer step of the diffusion stage with
``training.residual_loss`` against the legacy ``ResidualLoss``. Prints samples/s, step times and
the ratios (current / legacy), and checks the two ensembles agree.

    python benchmarks/bench_corrdiff_api.py --threads 1              # tiny nets: ~1 min on 2 cores
    python benchmarks/bench_corrdiff_api.py --size mini --threads 1  # CorrDiff-Mini's nets: ~5 min
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import statistics
import time
import warnings

import torch
from bench_corrdiff import make_domain

from physicsnemo_climax.config import load_config
from physicsnemo_climax.downscaling import training
from physicsnemo_climax.downscaling.generation import build_sampler, downscale, seed_batches
from physicsnemo_climax.downscaling.models import build_diffusion, build_regression
from physicsnemo_climax.engine.plan import resolve

with warnings.catch_warnings():  # the legacy helpers warn on import
    warnings.simplefilter("ignore")
    from physicsnemo.diffusion.generate import diffusion_step, regression_step
    from physicsnemo.diffusion.metrics import ResidualLoss
    from physicsnemo.diffusion.noise_schedulers import EDMNoiseScheduler
    from physicsnemo.diffusion.samplers import deterministic_sampler, stochastic_sampler


def legacy_downscale(regression, diffusion, x, batches, gen):
    """The ensemble as this package drew it on the legacy helpers (one time at a time)."""
    s = gen.sampler
    if s.type == "stochastic":
        sampler_fn = functools.partial(stochastic_sampler, num_steps=s.num_steps)
    else:
        sampler_fn = functools.partial(deterministic_sampler, num_steps=s.num_steps, solver=s.solver)
    members = []
    for t in range(x.shape[0]):
        img_lr = x[t : t + 1]
        size = len(batches[0])
        mean = regression_step(regression, img_lr, (size, regression.img_out_channels, *img_lr.shape[-2:])).float()
        residual = diffusion_step(
            diffusion, sampler_fn, tuple(img_lr.shape[-2:]), diffusion.img_out_channels, batches,
            img_lr.expand(size, -1, -1, -1), 0, img_lr.device, mean_hr=mean[0:1],
        ).float()  # fmt: skip
        members.append(mean[0:1] + residual)
    return torch.stack(members, dim=1)


def timed(fn, repeats: int) -> tuple[float, object]:
    """The median seconds of ``repeats`` calls of ``fn`` (after one untimed), and its last result."""
    fn()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["tiny", "mini"], default="tiny", help="model_size config")
    parser.add_argument("--sampler", choices=["stochastic", "deterministic"], default="stochastic")
    parser.add_argument("--steps", type=int, default=18)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--seed-batch", type=int, default=2)
    parser.add_argument("--times", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each (median); interleaved")
    parser.add_argument("--batch", type=int, default=4, help="training batch")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    domain = make_domain((64, 64))
    reg_cfg = load_config([f"model_size={args.size}"], "config_training_hrrr_mini_regression")
    dif_cfg = load_config([f"model_size={args.size}"], "config_training_hrrr_mini_diffusion")
    plan = resolve(reg_cfg)
    gen = load_config(
        [f"generation/sampler={args.sampler}", f"generation.sampler.num_steps={args.steps}"],
        "config_generate_hrrr_mini",
    ).generation
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        regression = build_regression(reg_cfg, domain, plan).eval().requires_grad_(False)
        diffusion = build_diffusion(dif_cfg, domain, plan).eval().requires_grad_(False)
    x = torch.randn(args.times, len(domain.input_channels), 64, 64)
    batches = seed_batches(args.members, args.seed_batch)
    sampler = build_sampler(gen, domain.shape)
    print(
        f"CorrDiff {args.size} nets on 64 x 64, {args.sampler} sampler, {args.steps} steps, {args.members} members "
        f"x {args.times} times, seed batch {args.seed_batch}; {torch.get_num_threads()} threads"
    )
    results = {"current": [], "legacy": []}
    runs = {
        "current": lambda: downscale(regression, diffusion, x, batches, sampler, gen.hr_mean_conditioning)[1],
        "legacy": lambda: legacy_downscale(regression, diffusion, x, batches, gen),
    }
    with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):  # diffusion_step's progress bar
        for k in range(args.repeats):  # interleaved, the order swapped each time: no side runs first always
            for name in ("current", "legacy") if k % 2 == 0 else ("legacy", "current"):
                results[name].append(timed(runs[name], 1))
    samples = args.members * args.times
    rate = {k: samples / statistics.median(t for t, _ in v) for k, v in results.items()}
    current, legacy = results["current"][-1][1], results["legacy"][-1][1]
    rel = float((current - legacy).norm() / legacy.norm())
    print(
        f"generation samples/s: current {rate['current']:.3f}, legacy {rate['legacy']:.3f}, ratio {rate['current'] / rate['legacy']:.3f}"
    )
    print(f"  the two ensembles differ by {rel:.1e} relative L2")
    train_steps(args, regression, domain, dif_cfg, plan)


def train_steps(args, regression, domain, dif_cfg, plan) -> None:
    """One AdamW step of the diffusion stage, current loss against legacy, interleaved."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        net = build_diffusion(dif_cfg, domain, plan).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-6)
    y = torch.randn(args.batch, len(domain.output_variables), 64, 64)
    x = torch.randn(args.batch, len(domain.input_channels), 64, 64)
    scheduler = EDMNoiseScheduler(P_mean=dif_cfg.model.P_mean, P_std=dif_cfg.model.P_std, sigma_data=0.5)
    legacy_loss = ResidualLoss(regression, dif_cfg.model.P_mean, dif_cfg.model.P_std, 0.5, True)
    losses = {
        "current": lambda: training.residual_loss(net, regression, scheduler, y, x, True),
        "legacy": lambda: legacy_loss(net, y, x).mean(),
    }

    def step(name):
        optimizer.zero_grad()
        losses[name]().backward()
        optimizer.step()

    times = {"current": [], "legacy": []}
    for k in range(args.repeats + 1):  # the order swapped each time, as for generation
        for name in ("current", "legacy") if k % 2 == 0 else ("legacy", "current"):
            times[name].append(timed(lambda n=name: step(n), 1)[0])
    median = {k: statistics.median(v[1:]) for k, v in times.items()}
    print(
        f"diffusion training step (batch {args.batch}) s: current {median['current']:.3f}, "
        f"legacy {median['legacy']:.3f}, ratio {median['legacy'] / median['current']:.3f} (speed, current / legacy)"
    )


if __name__ == "__main__":
    main()
