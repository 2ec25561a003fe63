# SPDX-License-Identifier: Apache-2.0
"""CorrDiff throughput: generation samples/s and training step times, on random data.

One run measures: ``downscale`` (regression mean + diffusion ensemble) in
samples/s (one sample = one member at one time) over sampler steps x seed
batch sizes, with the ratios of each seed batch to the first and the cost per
sampler step; and the median optimizer step (forward, loss, backward, AdamW)
of the UNet regression stage (``training.regression_loss``), the diffusion stage
(``training.residual_loss`` on a frozen regression net) and the ClimaX regression
stage (``model=climax_regression``), interleaved. Nets are built from the
configs with untrained weights; the grid is CorrDiff-Mini's (6 inputs: 4
coarse + 2 invariants; 2 outputs).

    python benchmarks/bench_corrdiff.py                                     # CPU, tiny backbone: ~2 min
    python benchmarks/bench_corrdiff.py --size mini --members 4 --repeats 1   # CPU, CorrDiff-Mini size: ~4.5 min
    python benchmarks/bench_corrdiff.py --size mini --device cuda --precision bf16 --members 16 --seed-batch 1 4 16
    python benchmarks/bench_corrdiff.py --stream --threads 2     # streaming generation on 1056 x 1792: ~5 min

``--stream`` measures streaming generation instead (``bench_corrdiff_stream.py``):
peak memory and samples/s for ``--stream-times`` (1, 10, 100) on the HRRR
CONUS grid (1056 x 1792), each in its own process, against the non-streaming
path (every time held, one write) for ``--stream-hold`` (1, 10). By default
the nets are the regression stage only, a tiny ClimaX (``--stream-net
climax``, ~1 s per CONUS forward on 2 cores), with ``--stream-members`` copies
of the mean as members, so the file and the queue carry a full ensemble's
bytes. ``--stream-net unet`` runs the tiny UNets (6 levels, deterministic
sampler, 2 steps) with diffusion: ~10 s per forward at CONUS size on 2 cores,
for a GPU.

(CPU times on 2 cores with ``--threads 1``: on a CPU shared with other jobs,
torch's 2 OpenMP threads wait on each other at every op, 10x slower here.)

The stochastic (EDM Heun) sampler evaluates the net ``2 N - 1`` times for
``N`` steps, the deterministic (Euler) one ``N`` times; the regression net
runs once per time. bf16 runs on CUDA only (PhysicsNeMo's CorrDiff wrappers
fail under CPU autocast), with ``amp_mode`` set on the UNets.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import shlex
import sys
import time
import warnings

import torch
from physicsnemo.diffusion.noise_schedulers import EDMNoiseScheduler

from physicsnemo_climax.config import load_config
from physicsnemo_climax.downscaling import training
from physicsnemo_climax.downscaling.domain import Domain
from physicsnemo_climax.downscaling.generation import build_sampler, downscale, seed_batches
from physicsnemo_climax.downscaling.models import build_diffusion, build_regression
from physicsnemo_climax.engine.optim import build_optimizer
from physicsnemo_climax.engine.plan import resolve

INPUTS, INVARIANTS, OUTPUTS = ["10u", "10v", "2t", "tp"], ["elev_mean", "lsm_mean"], ["10u", "10v"]


def make_domain(shape, factor: int = 4) -> Domain:
    unit = {"mean": 0.0, "std": 1.0}
    stats = {
        "input": dict.fromkeys(INPUTS, unit),
        "invariant": dict.fromkeys(INVARIANTS, unit),
        "output": dict.fromkeys(OUTPUTS, unit),
    }
    return Domain(INPUTS, OUTPUTS, INVARIANTS, stats, factor, tuple(shape))


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def params(net) -> int:
    return sum(p.numel() for p in net.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["tiny", "mini"], default="tiny", help="model_size config")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument(
        "--grid",
        type=int,
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="default 64 64 (CorrDiff-Mini); 1056 1792 (HRRR CONUS) with --stream",
    )
    parser.add_argument("--sampler", choices=["stochastic", "deterministic"], default="stochastic")
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 9, 18], help="sampler steps")
    parser.add_argument("--seed-batch", type=int, nargs="+", default=[1, 4], help="seed batch sizes")
    parser.add_argument("--members", type=int, default=8, help="ensemble members per time")
    parser.add_argument("--times", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="timed generation runs per setting (median)")
    parser.add_argument("--batch", type=int, default=4, help="training batch size")
    parser.add_argument("--train-steps", type=int, default=3, help="timed training steps per stage")
    parser.add_argument("--warmup", type=int, default=1, help="untimed training steps per stage")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--stream", action="store_true", help="streaming generation: memory and samples/s vs times")
    parser.add_argument("--stream-times", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument(
        "--stream-hold",
        type=int,
        nargs="*",
        default=[1, 10],
        help="times for the non-streaming path (it holds everything in memory)",
    )
    parser.add_argument("--stream-members", type=int, default=2)
    parser.add_argument("--stream-net", choices=["climax", "unet"], default="climax")
    parser.add_argument("--stream-dir", default=None, help="where the files go (default: the temp folder)")
    parser.add_argument(
        "--stream-env",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="environment of the cases, e.g. MALLOC_MMAP_THRESHOLD_=1048576",
    )
    parser.add_argument("--stream-case", choices=["streaming", "holding"], help=argparse.SUPPRESS)
    parser.add_argument("--stream-case-times", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.stream or args.stream_case:
        return stream_main(args)
    args.grid = args.grid or (64, 64)
    device = torch.device(args.device)
    if args.precision == "bf16" and device.type != "cuda":
        parser.error("--precision bf16 needs --device cuda: PhysicsNeMo's CorrDiff wrappers fail under CPU autocast")
    for b in args.seed_batch:
        if args.members % b:
            parser.error(f"--seed-batch {b} does not divide --members {args.members}")

    torch.manual_seed(0)
    domain = make_domain(args.grid)
    size = [f"model_size={args.size}"]
    reg_cfg = load_config(size + [f"train.precision={args.precision}"], "config_training_hrrr_mini_regression")
    plan = resolve(reg_cfg)  # precision, fused optimizer, apex GroupNorm: as a training run here decides
    dif_cfg = load_config(size, "config_training_hrrr_mini_diffusion")
    cli_cfg = load_config(["model=climax_regression"], "config_training_hrrr_mini_regression")
    gen = load_config([f"generation/sampler={args.sampler}"], "config_generate_hrrr_mini").generation
    autocast = lambda: plan.autocast(device)  # noqa: E731
    c_in, c_out = len(domain.input_channels), len(domain.output_variables)
    print(
        f"CorrDiff {args.size}, grid {tuple(args.grid)}, {c_in} inputs -> {c_out} outputs, {args.precision}, "
        f"{device}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )

    # ---------------------------------------------------------------- generation
    with warnings.catch_warnings():  # diffusion.yaml's gridtype=sinusoidal is flagged legacy (kept as upstream)
        warnings.simplefilter("ignore", FutureWarning)
        regression = build_regression(reg_cfg, domain, plan).to(device).eval().requires_grad_(False)
        diffusion = build_diffusion(dif_cfg, domain, plan).to(device).eval().requires_grad_(False)
        nets = {
            "UNet regression": build_regression(reg_cfg, domain, plan),
            "diffusion": build_diffusion(dif_cfg, domain, plan),
            "ClimaX regression": build_regression(cli_cfg, domain, plan),
        }
    if args.precision != "fp32":  # PhysicsNeMo's layers refuse autocast unless told (docs/design/corrdiff.md)
        for net in (regression, diffusion, *nets.values()):
            if hasattr(net, "amp_mode"):
                net.amp_mode = True
    x = torch.randn(args.times, c_in, *args.grid, device=device)
    evals = {"stochastic": lambda n: 2 * n - 1, "deterministic": lambda n: n}[args.sampler]
    print(
        f"\ngeneration: {args.sampler} sampler, {args.members} members x {args.times} time(s), "
        f"median of {args.repeats} after a warm-up; "
        f"regression {params(regression) / 1e6:.2f}M, diffusion {params(diffusion) / 1e6:.2f}M params"
    )
    print(f"{'steps':>5s} {'evals':>5s} {'seed batch':>10s} {'seconds':>8s} {'samples/s':>10s} {'s/step':>8s}")
    gen_times = {}
    for steps in args.steps:
        gen.sampler.num_steps = steps
        sampler = build_sampler(gen, domain.shape)
        for b in args.seed_batch:
            batches = seed_batches(args.members, b)
            with autocast(), contextlib.redirect_stderr(io.StringIO()):  # no progress bar of a helper in the timings
                downscale(regression, diffusion, x[:1], batches[:1], sampler, gen.hr_mean_conditioning)  # warm-up
                runs = []
                for _ in range(args.repeats):
                    sync(device)
                    start = time.perf_counter()
                    downscale(regression, diffusion, x, batches, sampler, gen.hr_mean_conditioning)
                    sync(device)
                    runs.append(time.perf_counter() - start)
            seconds = gen_times[steps, b] = sorted(runs)[len(runs) // 2]
            print(
                f"{steps:5d} {evals(steps):5d} {b:10d} {seconds:8.2f} {args.members * args.times / seconds:10.3f} "
                f"{seconds / steps:8.3f}"
            )
    first, last = args.seed_batch[0], args.steps[-1]
    for b in args.seed_batch[1:]:
        ratios = ", ".join(f"{s} steps {gen_times[s, first] / gen_times[s, b]:.2f}x" for s in args.steps)
        print(f"seed batch {b} vs {first} (samples/s): {ratios}")
    for b in args.seed_batch if len(args.steps) > 1 else []:
        base = gen_times[args.steps[0], b] / args.steps[0]
        ratios = ", ".join(f"{s}: {gen_times[s, b] / s / base:.2f}" for s in args.steps[1:])
        print(
            f"seed batch {b}: s/step relative to {args.steps[0]} steps -> {ratios} "
            f"(net evals/step {evals(args.steps[0]) / args.steps[0]:.2f} .. {evals(last) / last:.2f})"
        )

    # ---------------------------------------------------------------- training
    frozen = regression
    # as downscaling/training.py: apex GroupNorm runs the UNets channels_last
    channels_last = plan.apex_group_norm
    layout = (lambda t: t.contiguous(memory_format=torch.channels_last)) if channels_last else (lambda t: t)
    m = dif_cfg.model
    scheduler = EDMNoiseScheduler(P_mean=m.P_mean, P_std=m.P_std, sigma_data=m.sigma_data)
    residual_loss = functools.partial(
        training.residual_loss, regression=frozen, scheduler=scheduler, hr_mean_conditioning=m.hr_mean_conditioning
    )
    losses = {
        "UNet regression": training.regression_loss,
        "diffusion": lambda net, y, x: residual_loss(net, target=y, img_lr=x),
        "ClimaX regression": training.regression_loss,
    }
    optimizers = {}
    for name, net in nets.items():
        net.to(device).train()
        if channels_last and name != "ClimaX regression":
            net.to(memory_format=torch.channels_last)
        optimizers[name] = build_optimizer(net, 2e-4, 0.0, (0.9, 0.999), plan.fused)
    xb = torch.randn(args.batch, c_in, *args.grid, device=device)
    yb = torch.randn(args.batch, c_out, *args.grid, device=device)

    def step(name):
        with autocast():
            loss = losses[name](nets[name], layout(yb), layout(xb))
        loss.backward()
        optimizers[name].step()
        optimizers[name].zero_grad(set_to_none=True)

    for name in nets:
        for _ in range(args.warmup):
            step(name)
    train_times = {name: [] for name in nets}
    for _ in range(args.train_steps):  # interleaved, so drifts hit all alike
        for name in nets:
            sync(device)
            start = time.perf_counter()
            step(name)
            sync(device)
            train_times[name].append(time.perf_counter() - start)
    median = {name: sorted(v)[len(v) // 2] for name, v in train_times.items()}
    print(
        f"\ntraining: batch {args.batch}, median of {args.train_steps} steps after {args.warmup} warm-up, "
        f"AdamW ({plan.fused}){', channels_last' if channels_last else ''}"
    )
    print(f"{'stage':18s} {'params':>8s} {'s/step':>8s} {'samples/s':>10s}")
    for name, net in nets.items():
        print(f"{name:18s} {params(net) / 1e6:7.2f}M {median[name]:8.3f} {args.batch / median[name]:10.2f}")
    unet, climax = nets["UNet regression"], nets["ClimaX regression"]
    print(
        f"ClimaX / UNet regression: step time {median['ClimaX regression'] / median['UNet regression']:.2f}x, "
        f"parameters {params(climax) / params(unet):.2f}x"
    )

    # ---------------------------------------------------------------- markdown
    print(
        f"\n`{shlex.join(['python', *sys.argv])}` ({device}, {torch.get_num_threads()} threads, "
        f"{args.precision}, grid {args.grid[0]}x{args.grid[1]}, `model_size={args.size}`)\n"
    )
    print("| measurement | setting | seconds | throughput |")
    print("|---|---|---:|---:|")
    for (steps, b), seconds in gen_times.items():
        print(
            f"| generation, {args.sampler} | {steps} steps, seed batch {b}, {args.members} members | {seconds:.2f} "
            f"| {args.members * args.times / seconds:.3f} samples/s |"
        )
    for name, net in nets.items():
        print(
            f"| training step, {name} ({params(net) / 1e6:.2f}M) | batch {args.batch} | {median[name]:.3f} "
            f"| {args.batch / median[name]:.2f} samples/s |"
        )
    print(f"\ncommand: {shlex.join(['python', *sys.argv])}")


def stream_main(args) -> None:
    """``--stream``: every case in its own process, then the table; ``--stream-case``: one case."""
    import json

    import bench_corrdiff_stream as streaming

    domain = make_domain(args.grid or (1056, 1792))
    if args.stream_case:
        print(json.dumps(streaming.run_case(args, domain)))
        return
    args.grid = domain.shape
    print(
        f"streaming generation, grid {domain.shape}, {args.stream_members} members, nets: {args.stream_net}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, environment {args.stream_env or 'as is'}"
    )
    results = streaming.run_all(args, domain)
    streaming.report(args, domain, results)
    print(f"\ncommand: {shlex.join(['python', *sys.argv])}")


if __name__ == "__main__":
    main()
