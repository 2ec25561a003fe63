# SPDX-License-Identifier: Apache-2.0
"""Fused vs naive variable aggregation: whole-model forward+backward.

Runs both paths in one process, interleaved, on identical weights and inputs,
and prints samples/s, activation memory and their ratios.

    python benchmarks/bench_aggregation.py                    # CPU, fp32, 5.625 deg
    python benchmarks/bench_aggregation.py --device cuda --dtype bf16 --batch 8

Activation memory: on CUDA the peak allocated memory above the resting
weights and gradients; on CPU (no allocator statistics) the bytes of the
distinct tensors autograd saves for the backward pass, which is what a forward
pass holds at its peak (weights excluded).
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from physicsnemo_climax.models import ClimaX


def saved_activation_bytes(model, step) -> int:
    """Bytes of distinct non-parameter storages autograd keeps for backward."""
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = step()
    loss.backward()
    return sum(seen.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--embed-dim", type=int, default=1024)
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--img-size", type=int, nargs=2, default=(32, 64))
    parser.add_argument("--patch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()

    device = torch.device(args.device)
    torch.manual_seed(0)
    common = dict(img_size=args.img_size, patch_size=args.patch_size, embed_dim=args.embed_dim, depth=args.depth)
    models = {"fused": ClimaX(fused_aggregation=True, **common).to(device)}
    models["naive"] = ClimaX(fused_aggregation=False, **common).to(device)
    models["naive"].load_state_dict(models["fused"].state_dict())
    variables = models["fused"].variables
    x = torch.randn(args.batch, len(variables), *args.img_size, device=device)
    y = torch.randn_like(x)
    lead = torch.full((args.batch,), 72.0, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if args.dtype == "bf16" else contextlib.nullcontext()

    def step(model):
        with autocast:
            out = model(x, lead, variables)
        return (out.float() - y).square().mean()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for model in models.values():
        for _ in range(args.warmup):
            step(model).backward()
            model.zero_grad(set_to_none=False)
    times = {name: [] for name in models}
    for _ in range(args.steps):  # interleaved, so drifts hit both alike
        for name, model in models.items():
            sync()
            start = time.perf_counter()
            step(model).backward()
            sync()
            times[name].append(time.perf_counter() - start)
            model.zero_grad(set_to_none=False)

    memory = {}
    for name, model in models.items():
        if device.type == "cuda":
            sync()
            torch.cuda.reset_peak_memory_stats()
            resting = torch.cuda.memory_allocated()
            step(model).backward()
            sync()
            memory[name] = torch.cuda.max_memory_allocated() - resting
        else:
            memory[name] = saved_activation_bytes(model, lambda: step(model))
        model.zero_grad(set_to_none=False)

    params = sum(p.numel() for p in models["fused"].parameters())
    print(
        f"ClimaX {params / 1e6:.1f}M params, {len(variables)} vars, grid {tuple(args.img_size)}, "
        f"p={args.patch_size}, batch {args.batch}, {args.dtype}, {device}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(f"{'path':8s} {'samples/s':>10s} {'median s/step':>14s} {'activation MiB':>15s}")
    rate = {}
    for name in models:
        median = sorted(times[name])[len(times[name]) // 2]
        rate[name] = args.batch / median
        print(f"{name:8s} {rate[name]:10.3f} {median:14.3f} {memory[name] / 2**20:15.1f}")
    print(
        f"speed-up fused/naive: {rate['fused'] / rate['naive']:.2f}x; "
        f"activation memory fused/naive: {memory['fused'] / memory['naive']:.2f}"
    )


if __name__ == "__main__":
    main()
