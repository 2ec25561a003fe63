# SPDX-License-Identifier: Apache-2.0
"""Training-step throughput of the model presets, fp32 against bf16 autocast.

One run measures, for each preset: a full optimizer step (forward, weighted
MSE, backward, AdamW) on random normalized batches, in fp32 and in bf16
autocast, interleaved; and the dense matmul rate of the device in both
precisions, to express model FLOP/s as a fraction of it (MFU).

    python benchmarks/bench_training.py                          # CPU: tiny and 5.625 deg presets
    python benchmarks/bench_training.py --device cuda --batch 32 --presets climax climax_1.40625deg

Model FLOPs per sample are counted analytically (matmuls only, backward = 2x
forward): the backbone's ``depth (24 L D^2 + 4 L^2 D)`` (MLP ratio 4), the
head's ``L (2 decoder_depth D^2 + 2 D V p^2)`` and the fused aggregation's
``2 L V p^2 D``-order terms are included; element-wise work is not.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from physicsnemo_climax.config import load_config
from physicsnemo_climax.metrics import weighted_mse_loss
from physicsnemo_climax.models import ClimaX


def model_flops(model: ClimaX) -> float:
    """Forward matmul FLOPs per sample (2 per multiply-add)."""
    d = model.pos_embed.shape[-1]
    length = model.patch_grid[0] * model.patch_grid[1]
    v, p2 = len(model.variables), model.patch_size**2
    mlp = model.blocks[0].mlp.fc1.out_features
    blocks = len(model.blocks) * (length * (4 * d * d + 2 * d * mlp) + 2 * length * length * d)
    head = length * ((len(model.head) - 1) // 2 * d * d + d * v * p2)
    aggregation = length * d * d + length * v * (p2 + 1) * d  # out_proj + fused value path
    return 2.0 * (blocks + head + aggregation)


def matmul_rate(device, dtype, n: int = 2048, reps: int = 5) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--presets", nargs="+", default=["climax_tiny", "climax"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)

    rates = {"fp32": matmul_rate(device, torch.float32), "bf16": matmul_rate(device, torch.bfloat16)}
    print(
        f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"matmul fp32 {rates['fp32'] / 1e9:.0f} GFLOP/s, bf16 {rates['bf16'] / 1e9:.0f} GFLOP/s"
    )
    print(f"{'preset':20s} {'params':>8s} {'precision':>9s} {'samples/s':>10s} {'MFU':>6s}")
    for preset in args.presets:
        torch.manual_seed(0)
        cfg = load_config([f"model={preset}"]).model
        kwargs = {k: v for k, v in cfg.items() if k != "_target_"}
        model = ClimaX(**kwargs).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
        x = torch.randn(args.batch, len(model.variables), *model.img_size, device=device)
        lat = torch.as_tensor(model.lat, dtype=torch.float32, device=device)
        lead = torch.full((args.batch,), 72.0, device=device)

        def step(precision):
            ctx = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
            with ctx:
                out = model(x, lead, model.variables)
            weighted_mse_loss(out.float(), x, lat).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        times = {"fp32": [], "bf16": []}
        for precision in times:  # warm-up
            step(precision)
        for _ in range(args.steps):
            for precision in times:
                sync(device)
                start = time.perf_counter()
                step(precision)
                sync(device)
                times[precision].append(time.perf_counter() - start)
        params = sum(p.numel() for p in model.parameters())
        flops = 3 * model_flops(model) * args.batch
        for precision, values in times.items():
            seconds = sorted(values)[len(values) // 2]
            print(
                f"{preset:20s} {params / 1e6:7.1f}M {precision:>9s} {args.batch / seconds:10.2f} "
                f"{flops / seconds / rates[precision]:6.1%}"
            )
        ratio = sorted(times["fp32"])[args.steps // 2] / sorted(times["bf16"])[args.steps // 2]
        print(f"{preset:20s} bf16 speed-up over fp32: {ratio:.2f}x")


if __name__ == "__main__":
    main()
