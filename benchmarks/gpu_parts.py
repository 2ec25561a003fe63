# SPDX-License-Identifier: Apache-2.0
"""The parts of ``gpu_check.py``: each takes a :class:`Check` and returns what it measured.

A part returns a dict with ``rows`` (one table), optionally ``notes`` (lines
of text) and ``targets`` (the issue's targets it can judge: what, the value,
met or not). Sizes are the issue's on a GPU; ``--quick`` shrinks every size
so the same code runs in about a minute on a CPU.
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import platform
import shutil
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from bench_training import matmul_rate, model_flops

from physicsnemo_climax.config import load_config
from physicsnemo_climax.grid import regular_grid
from physicsnemo_climax.metrics import weighted_mse_loss
from physicsnemo_climax.models import DEFAULT_VARIABLES, ClimaX
from physicsnemo_climax.models.variables import CONSTANTS

#: The SDPA kernels, by the name of the aten op a profiled forward shows.
SDPA_OPS = {
    "_scaled_dot_product_flash_attention": "flash",
    "_scaled_dot_product_efficient_attention": "efficient",
    "_scaled_dot_product_cudnn_attention": "cudnn",
    "_scaled_dot_product_attention_math": "math",
    "_scaled_dot_product_flash_attention_for_cpu": "flash (CPU)",
}


@dataclass
class Check:
    """What every part shares: the device, the size, the scratch folder and the clock.

    Parameters
    ----------
    device_name : str
        ``cuda`` or ``cpu``.
    quick : bool
        Toy sizes (the CPU test of the check).
    work : Path
        Scratch folder (the synthetic store, run folders), removed at the end.
    deadline : float
        ``time.monotonic()`` by which every part must have ended.
    """

    device_name: str
    quick: bool
    work: Path
    deadline: float
    rates: dict = field(default_factory=dict)
    runs: dict = field(default_factory=dict)
    _store: Path | None = None

    def __post_init__(self):
        self.device = torch.device(self.device_name)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise SystemExit("gpu_check: --device cuda, but torch sees no CUDA device (use --device cpu --quick)")
        self.cuda = self.device.type == "cuda"

    @property
    def scale(self) -> float:
        """Fraction of a part's full-size time the check reserves for it."""
        return 0.1 if self.quick else 1.0

    def judge(self, met: bool) -> bool | None:
        """A target's verdict: ``None`` (not judged) at toy sizes or off the GPU."""
        return None if self.quick or not self.cuda else bool(met)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def release(self) -> None:
        """Free what the last part left on the device."""
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()

    def seconds(self, fn, steps: int, warmup: int = 2) -> float:
        """Median wall seconds of ``fn()`` (device synchronised around each call) after ``warmup`` calls."""
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(steps):
            self.sync()
            start = time.perf_counter()
            fn()
            self.sync()
            times.append(time.perf_counter() - start)
        return sorted(times)[len(times) // 2]

    def peak_memory(self) -> float | None:
        """GiB allocated at the peak since the last reset (CUDA only)."""
        return round(torch.cuda.max_memory_allocated() / 2**30, 2) if self.cuda else None

    def reset_peak(self) -> None:
        if self.cuda:
            self.sync()
            torch.cuda.reset_peak_memory_stats()

    def machine(self) -> dict:
        """What ran the check: Python, torch, CUDA, the GPU and its driver, CPUs."""
        import physicsnemo

        import physicsnemo_climax

        info = {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "physicsnemo": physicsnemo.__version__,
            "package": str(Path(physicsnemo_climax.__file__).parent),
            "cpus": os.cpu_count(),
            "host": platform.node(),
        }
        if self.cuda:
            props = torch.cuda.get_device_properties(self.device)
            info.update(
                gpu=props.name,
                capability=f"{props.major}.{props.minor}",
                gpu_memory_gib=round(props.total_memory / 2**30, 1),
                multiprocessors=props.multi_processor_count,
            )
        if shutil.which("nvidia-smi"):
            query = [
                "nvidia-smi",
                "--query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit",
                "--format=csv,noheader",
            ]
            info["nvidia_smi"] = subprocess.run(query, capture_output=True, text=True, timeout=30).stdout.strip()
        return info

    def store(self) -> Path:
        """The synthetic forecast store, written on first use (:func:`write_wave_store`)."""
        if self._store is None:
            grid, steps = ((16, 32), 40) if self.quick else ((32, 64), 400)
            self._store = write_wave_store(self.work / "store", grid, steps)
        return self._store


def write_wave_store(root: Path, grid: tuple[int, int], steps: int, shards: int = 2) -> Path:
    """A store in the official ClimaX layout whose fields a model can learn to forecast.

    Every variable is a few zonal waves travelling at a speed of its own plus
    a slowly oscillating meridional pattern and 5% noise, one time step = 6 h
    (give ``data.hours_per_step=6``); constants are fixed fields. Random fields
    would give a loss that cannot decrease.
    """
    lat, lon = regular_grid(grid)
    phi, lam = np.deg2rad(lat)[None, :, None], np.deg2rad(lon)[None, None, :]
    rng = np.random.default_rng(0)
    (root / "train").mkdir(parents=True)
    for s in range(shards):
        t = np.arange(s * steps, (s + 1) * steps, dtype=np.float32)[:, None, None]
        fields = {}
        for i, v in enumerate(DEFAULT_VARIABLES):
            k, speed = 1 + i % 4, 0.15 * (1 + i % 5)
            f = np.sin(k * lam - speed * t + i) * np.cos(phi) ** 2 + 0.5 * np.sin(2 * phi + 0.05 * t * (1 + i % 3))
            if v in CONSTANTS:
                f = np.broadcast_to(np.cos(3 * lam + i) * np.cos(phi), (steps, *grid))
            f = f + 0.05 * rng.standard_normal((steps, *grid))
            fields[v] = f.astype(np.float32)[:, None]
        np.savez(root / "train" / f"{s}.npz", **fields)
    np.savez(root / "normalize_mean.npz", **{v: np.zeros(1) for v in DEFAULT_VARIABLES})
    np.savez(root / "normalize_std.npz", **{v: np.full(1, 0.7) for v in DEFAULT_VARIABLES})
    np.save(root / "lat.npy", lat)
    np.save(root / "lon.npy", lon)
    return root


# ---------------------------------------------------------------- the machine
def doctor(check: Check) -> dict:
    """``climax doctor`` with the asks of a full GPU run (bf16, DALI GPU, compile, apex auto)."""
    from physicsnemo_climax.doctor import as_dict, report
    from physicsnemo_climax.engine.environment import probe
    from physicsnemo_climax.engine.plan import choices

    env = probe()
    asks = choices(
        load_config(["train.precision=bf16", "train.loader=dali_gpu", "train.compile=true", "train.fallback=true"]), env
    )
    text = report(env, asks, "config")
    rows = [{"feature": f.name, "ok": f.ok, "detail": f.detail} for f in env.features.values()]
    return {"rows": rows, "notes": ["```", *text.splitlines(), "```"], "doctor": as_dict(env, asks)}


def ceilings(check: Check) -> dict:
    """The rates the other parts are measured against: dense matmul (bf16, tf32, fp32) and device copy."""
    n, reps = (512, 2) if check.quick else (8192, 10)
    rows = []
    for name, dtype, tf32 in (
        ("bf16", torch.bfloat16, False),
        ("tf32", torch.float32, True),
        ("fp32", torch.float32, False),
    ):
        previous = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        try:
            check.rates[name] = matmul_rate(check.device, dtype, n, reps)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = previous
        rows.append({"measure": f"matmul {name} {n}^3", "TFLOP/s": round(check.rates[name] / 1e12, 2)})
    size = (64 if check.quick else 4096) * 2**20
    a = torch.randn(size // 4, device=check.device)
    seconds = check.seconds(lambda: a.clone(), 5 if check.quick else 10)
    rows.append({"measure": f"copy {size / 2**30:.2f} GiB (read + write)", "GB/s": round(2 * size / seconds / 1e9, 1)})
    return {"rows": rows}


# ---------------------------------------------------------------- the model
def sdpa_kernels(model, *inputs) -> list[str]:
    """The attention kernels one forward of ``model`` actually runs (from the profiler's op names)."""
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        model(*inputs)
    names = {e.name.removeprefix("aten::") for e in prof.events()}
    return sorted({kind for op, kind in SDPA_OPS.items() if op in names}) or ["none (no SDPA call)"]


def climax_args(check: Check, preset: str) -> dict:
    """Model arguments of a config preset (``--quick``: the same grid at toy width)."""
    args = {k: v for k, v in load_config([f"model={preset}"]).model.items() if k != "_target_"}
    if check.quick:
        args.update(embed_dim=64, depth=2, num_heads=4, img_size=[s // 2 for s in args["img_size"]])
    return args


def climax_step(check: Check) -> dict:
    """ClimaX forward + backward in bf16 autocast, fused vs naive aggregation, at 5.625 and 1.40625 deg."""
    rows, targets = [], []
    for preset, batch in (("climax", 32), ("climax_1.40625deg", 8)):
        batch = 2 if check.quick else batch
        args = climax_args(check, preset)
        for fused in (True, False):
            row = {
                "model": preset,
                "grid": "x".join(map(str, args["img_size"])),
                "batch": batch,
                "aggregation": "fused" if fused else "naive",
            }
            try:
                row.update(model_step(check, ClimaX(fused_aggregation=fused, **args), batch))
            except torch.OutOfMemoryError as err:
                row["error"] = f"out of memory: {str(err)[:120]}"
            rows.append(row)
            check.release()
        fused_row, naive_row = rows[-2], rows[-1]
        if "samples/s" in fused_row and "samples/s" in naive_row:
            fused_row["fused/naive"] = round(fused_row["samples/s"] / naive_row["samples/s"], 2)
        if preset == "climax":
            targets.append(
                {
                    "target": "5.625 deg bf16 training >= 45% MFU at batch >= 32",
                    "value": fused_row.get("MFU", fused_row.get("error")),
                    "met": check.judge(fused_row.get("MFU", 0) >= 0.45),
                }
            )
        else:
            targets.append(
                {
                    "target": "1.40625 deg fits at batch >= 8, no activation checkpointing",
                    "value": fused_row.get("peak GiB", fused_row.get("error")),
                    "met": check.judge("error" not in fused_row),
                }
            )
    return {"rows": rows, "targets": targets}


def model_step(check: Check, model: ClimaX, batch: int) -> dict:
    """Median forward + backward (latitude-weighted MSE) of ``model`` in bf16 autocast."""
    model = model.to(check.device).train()
    x = torch.randn(batch, len(model.variables), *model.img_size, device=check.device)
    lead = torch.full((batch,), 72.0, device=check.device)
    lat = torch.as_tensor(model.lat, dtype=torch.float32, device=check.device)

    def step():
        with torch.autocast(check.device.type, dtype=torch.bfloat16):
            out = model(x, lead, model.variables)
        weighted_mse_loss(out.float(), x, lat).backward()
        model.zero_grad(set_to_none=True)

    check.reset_peak()
    seconds = check.seconds(step, 3 if check.quick else 10)
    with torch.autocast(check.device.type, dtype=torch.bfloat16):
        kernels = sdpa_kernels(model, x, lead, model.variables)
    flops = 3 * model_flops(model) * batch
    return {
        "params M": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "s/step": round(seconds, 4),
        "samples/s": round(batch / seconds, 1),
        "MFU": round(flops / seconds / check.rates.get("bf16", np.inf), 3),
        "peak GiB": check.peak_memory(),
        "attention": ", ".join(kernels),
    }


# ---------------------------------------------------------------- training through the engine
def engine_run(check: Check, name: str, preset: str, precision: str, steps: int, compile_: bool = False) -> dict:
    """``climax train`` (task finetune_global, 6 h lead) on the synthetic store; the loss curve and speed."""
    from physicsnemo_climax.forecasting.training import train

    batch = 4 if check.quick else 32
    run_dir = check.work / "runs" / name
    log_every = max(steps // 20, 1)
    overrides = [
        f"model={preset}",
        "data=era5",
        f"data.root={check.store()}",
        "data.hours_per_step=6",
        "data.val=false",
        "data.out_variables=null",
        "task.lead_hours=6",
        f"train.steps={steps}",
        f"train.batch_size={batch}",
        f"train.precision={precision}",
        f"train.compile={str(compile_).lower()}",
        "train.warmup_steps=20",
        f"train.log_every={log_every}",
        "train.progress=false",
        "train.resume=false",
        f"train.val_every={10 * steps}",
        f"train.ckpt_every={10 * steps}",
        "train.num_workers=4",
        f"run_dir={run_dir}",
    ]
    if check.quick:
        overrides += ["model.embed_dim=64", "model.depth=2", "model.num_heads=4"]
    start = time.perf_counter()
    train(load_config(overrides))
    seconds = time.perf_counter() - start
    metrics = [line.split(",") for line in (run_dir / "metrics.csv").read_text().splitlines()]
    loss = [float(v) for _, key, v in metrics if key == "train/loss"]
    rate = [float(v) for _, key, v in metrics if key == "train/samples_per_s"]
    tail = max(len(loss) // 5, 1)
    check.runs[name] = {
        "run": name,
        "precision": precision,
        "compile": compile_,
        "steps": steps,
        "batch": batch,
        "first loss": round(loss[0], 5),
        "final loss": round(float(np.mean(loss[-tail:])), 5),
        "finite": bool(np.isfinite(loss).all()),
        "decreasing": loss[-1] < loss[0],
        "samples/s": round(float(np.median(rate[1:] or rate)), 1),
        "wall s": round(seconds, 1),
    }
    shutil.rmtree(run_dir)  # its checkpoints (1.3 GB at full size) are not needed
    return check.runs[name]


def training(check: Check) -> dict:
    """Short engine runs of ``climax_tiny`` and ``climax`` in fp32, bf16 and fp16 (GradScaler):
    finite, decreasing, and within 2% of the fp32 loss."""
    steps = 8 if check.quick else 200
    rows, targets, notes = [], [], []
    for preset in ("climax_tiny", "climax"):
        runs = []
        for precision in ("fp32", "bf16", "fp16"):
            if precision == "fp16" and not check.cuda:
                notes.append(f"{preset} fp16: skipped, fp16 with GradScaler needs CUDA")
                continue
            runs.append(engine_run(check, f"{preset}_{precision}", preset, precision, steps))
            check.release()
        for row in runs[1:]:
            row["vs fp32"] = round(row["final loss"] / runs[0]["final loss"] - 1, 4)
            targets.append(
                {
                    "target": f"{preset} {row['precision']} loss within 2% of fp32 after 200 steps",
                    "value": row["vs fp32"],
                    "met": check.judge(abs(row["vs fp32"]) <= 0.02),
                }
            )
        rows += runs
    return {"rows": rows, "targets": targets, "notes": notes}


def compiled(check: Check) -> dict:
    """The bf16 engine runs again with ``train.compile=true``: same loss, and the speed-up
    (over the eager bf16 runs of :func:`training`, run here if that part did not)."""
    steps = 8 if check.quick else 200
    rows = []
    for preset in ("climax_tiny", "climax"):
        eager = check.runs.get(f"{preset}_bf16") or engine_run(check, f"{preset}_bf16", preset, "bf16", steps)
        check.release()
        compiled_run = engine_run(check, f"{preset}_bf16_compiled", preset, "bf16", steps, compile_=True)
        compiled_run["vs eager loss"] = round(compiled_run["final loss"] / eager["final loss"] - 1, 4)
        compiled_run["speed-up"] = round(compiled_run["samples/s"] / eager["samples/s"], 2)
        rows += [eager, compiled_run]
        check.release()
    return {"rows": rows, "notes": ["samples/s leave out the first logging interval (compilation)"]}


# ---------------------------------------------------------------- the datapipe feeding the GPU
def workers() -> int:
    """Reading threads of the loader runs: the machine's cores, at most 8."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def endless(loader, batches):
    """Batches without end, epoch after epoch, as the training loop reads them."""
    epoch = 0
    while True:
        batches.set_epoch(epoch)
        yield from loader
        epoch += 1


def datapipe(check: Check) -> dict:
    """A bf16 training step of the 5.625 deg model fed by the threaded loader, against the
    same step on a batch already on the GPU: samples/s and the fraction of time the GPU is busy."""
    from physicsnemo_climax.data import ClimaXShardReader, ForecastBatches, make_loader
    from physicsnemo_climax.engine.environment import probe

    batch, steps = (4, 6) if check.quick else (32, 60)
    model = ClimaX(**climax_args(check, "climax")).to(check.device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=check.cuda)
    lat = torch.as_tensor(model.lat, dtype=torch.float32, device=check.device)

    def step(b):
        with torch.autocast(check.device.type, dtype=torch.bfloat16):
            out = model(b.x, b.lead_time, b.variables, b.out_variables)
        weighted_mse_loss(out.float(), b.y, lat).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def source(normalize=True):
        reader = ClimaXShardReader(check.store(), lead_hours=6, hours_per_step=6, normalize=normalize)
        return ForecastBatches([reader], batch, seed=0)

    def fed(loader, batches) -> float:
        stream = endless(loader, batches)
        return check.seconds(lambda: step(next(stream).to(check.device)), steps, warmup=3)

    resident = next(iter(make_loader(source(), 0))).to(check.device)
    alone = check.seconds(lambda: step(resident), steps, warmup=3)
    rows = [{"path": "batch resident on the device", "samples/s": round(batch / alone, 1), "GPU busy": 1.0}]
    batches = source()
    threads = fed(make_loader(batches, workers(), "threads", pin_memory=check.cuda), batches)
    rows.append(
        {
            "path": f"threaded loader, {workers()} threads, pinned",
            "samples/s": round(batch / threads, 1),
            "GPU busy": round(alone / threads, 3),
        }
    )
    notes = []
    if probe().ok("dali_gpu") and check.cuda:
        from physicsnemo_climax.data.dali import DaliForecastLoader

        batches = source(normalize=False)
        dali = fed(DaliForecastLoader(batches, check.device.index or 0, num_workers=workers()), batches)
        rows.append(
            {"path": "DALI GPU pipeline", "samples/s": round(batch / dali, 1), "GPU busy": round(alone / dali, 3)}
        )
    else:
        notes.append(
            "DALI GPU pipeline not measured: DALI is not installed here (its wheel, over 400 MiB, "
            "cannot travel to the bare GPU machine; the NGC PhysicsNeMo container has it)"
        )
    target = {
        "target": "the loader keeps the GPU busy >= 90% of a 5.625 deg training step",
        "value": rows[1]["GPU busy"],
        "met": check.judge(rows[1]["GPU busy"] >= 0.9),
    }
    return {"rows": rows, "notes": notes, "targets": [target]}


# ---------------------------------------------------------------- CorrDiff
class CorrDiffNets(NamedTuple):
    """Untrained CorrDiff stages on one grid, and what generation needs with them."""

    domain: object
    plan: object
    diffusion_cfg: object
    regression: torch.nn.Module
    diffusion: torch.nn.Module
    generation_overrides: list


def corrdiff_nets(check: Check, grid: tuple[int, int], size: str, patch: tuple[int, int] | None = None) -> CorrDiffNets:
    """Both nets of CorrDiff at ``grid`` (bf16 on CUDA); ``patch``: patch-based diffusion, as
    upstream runs CONUS (``model=patched_diffusion``, ``generation=patched``)."""
    from bench_corrdiff import make_domain

    from physicsnemo_climax.downscaling.models import build_diffusion, build_regression
    from physicsnemo_climax.engine.plan import resolve

    precision = "bf16" if check.cuda else "fp32"  # PhysicsNeMo's CorrDiff nets take autocast on CUDA only
    domain = make_domain(grid)
    reg_cfg = load_config(
        [f"model_size={size}", f"train.precision={precision}"], "config_training_hrrr_mini_regression"
    )

    def patched(section: str) -> list[str]:
        return (
            []
            if patch is None
            else [
                f"{section}=patched{'_diffusion' if section == 'model' else ''}",
                f"{section}.patch_shape_y={patch[0]}",
                f"{section}.patch_shape_x={patch[1]}",
            ]
        )

    dif_cfg = load_config([f"model_size={size}", *patched("model")], "config_training_hrrr_mini_diffusion")
    plan = resolve(reg_cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        nets = (
            build_regression(reg_cfg, domain, plan).to(check.device),
            build_diffusion(dif_cfg, domain, plan).to(check.device),
        )
    for net in nets:
        if precision != "fp32" and hasattr(net, "amp_mode"):
            net.amp_mode = True
    return CorrDiffNets(domain, plan, dif_cfg, *nets, patched("generation"))


def corrdiff_training(check: Check, label: str, nets: CorrDiffNets, batch: int) -> list[dict]:
    """One optimizer step of each stage: regression and residual diffusion (the training losses)."""
    from physicsnemo.diffusion.noise_schedulers import EDMNoiseScheduler

    from physicsnemo_climax.downscaling import training

    domain, m = nets.domain, nets.diffusion_cfg.model
    scheduler = EDMNoiseScheduler(P_mean=m.P_mean, P_std=m.P_std, sigma_data=m.sigma_data)

    def residual_loss(net, y, x):
        return training.residual_loss(net, nets.regression, scheduler, y, x, m.hr_mean_conditioning)

    losses = {"regression": (nets.regression, training.regression_loss), "diffusion": (nets.diffusion, residual_loss)}
    x = torch.randn(batch, len(domain.input_channels), *domain.shape, device=check.device)
    y = torch.randn(batch, len(domain.output_variables), *domain.shape, device=check.device)
    rows = []
    for stage, (net, loss_fn) in losses.items():
        net.train().requires_grad_(True)
        optimizer = torch.optim.AdamW(net.parameters(), lr=2e-4, fused=check.cuda)

        def step():
            with nets.plan.autocast(check.device):
                loss = loss_fn(net, y, x)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        check.reset_peak()
        seconds = check.seconds(step, 3 if check.quick else 5)
        rows.append(
            {
                "what": f"{label} training step, {stage}",
                "grid": "x".join(map(str, domain.shape)),
                "batch": batch,
                "s": round(seconds, 4),
                "samples/s": round(batch / seconds, 2),
                "peak GiB": check.peak_memory(),
            }
        )
    nets.regression.requires_grad_(False)
    return rows


def corrdiff_generation(
    check: Check, label: str, nets: CorrDiffNets, members: int, steps: int, repeats: int = 2
) -> dict:
    """Regression mean + a diffusion ensemble of ``members`` for one time (EDM stochastic sampler)."""
    from physicsnemo_climax.downscaling.generation import build_sampler, downscale, seed_batches

    gen = load_config(
        ["generation/sampler=stochastic", f"generation.sampler.num_steps={steps}", *nets.generation_overrides],
        "config_generate_hrrr_mini",
    ).generation
    sampler = build_sampler(gen, nets.domain.shape)
    nets.regression.eval().requires_grad_(False)
    nets.diffusion.eval().requires_grad_(False)
    x = torch.randn(1, len(nets.domain.input_channels), *nets.domain.shape, device=check.device)
    batches = seed_batches(members, members)

    def run():
        with nets.plan.autocast(check.device), contextlib.redirect_stderr(io.StringIO()):
            downscale(nets.regression, nets.diffusion, x, batches, sampler, gen.hr_mean_conditioning)

    check.reset_peak()
    seconds = check.seconds(run, 1 if check.quick else repeats, warmup=1)
    patches = f", patches {gen.patch_shape_y}x{gen.patch_shape_x}" if gen.get("patching") else ""
    return {
        "what": f"{label} generation, {steps} sampler steps, seed batch {members}{patches}",
        "grid": "x".join(map(str, nets.domain.shape)),
        "batch": members,
        "s": round(seconds, 3),
        "samples/s": round(members / seconds, 3),
        "peak GiB": check.peak_memory(),
    }


def corrdiff(check: Check) -> dict:
    """CorrDiff-Mini: both training stages and generation on its 64 x 64 grid; and generation at
    HRRR CONUS size (1056 x 1792) with the full-size nets and 448 x 448 diffusion patches, as upstream."""
    mini, conus, patch = ((32, 32), (48, 80), (32, 32)) if check.quick else ((64, 64), (1056, 1792), (448, 448))
    nets = corrdiff_nets(check, mini, "tiny" if check.quick else "mini")
    rows = corrdiff_training(check, "Mini", nets, 2 if check.quick else 16)
    rows.append(corrdiff_generation(check, "Mini", nets, 2 if check.quick else 16, 2 if check.quick else 18))
    del nets
    check.release()
    nets = corrdiff_nets(check, conus, "tiny" if check.quick else "normal", patch)
    rows.append(corrdiff_generation(check, "CONUS", nets, members=2, steps=2 if check.quick else 4, repeats=1))
    notes = [
        "precision " + ("bf16 autocast" if check.cuda else "fp32"),
        "CONUS generation holds its one time whole on the device: streaming generation is issue 19's",
    ]
    return {"rows": rows, "notes": notes}


# ---------------------------------------------------------------- Earth2Studio wrapper
def prognostic(check: Check) -> dict:
    """``ClimaXPrognostic`` stepping three 6 h steps on the device, without Earth2Studio's runner."""
    from physicsnemo_climax.earth2studio import ClimaXPrognostic

    args = climax_args(check, "climax_tiny")
    model = ClimaX(**args)
    lat, lon = regular_grid(tuple(model.img_size))
    variables = list(model.variables)
    rng = np.random.default_rng(0)
    constants = {v: rng.standard_normal(model.img_size).astype(np.float32) for v in CONSTANTS if v != "lattitude"}
    px = ClimaXPrognostic(
        model, variables, np.zeros(len(variables)), np.ones(len(variables)), lat, lon, 6.0, constants
    ).to(check.device)
    coords = px.input_coords()
    coords["batch"] = np.array([0, 1])
    x = torch.randn(2, 1, len(px.dynamic), *px.grid, device=check.device)
    start = time.perf_counter()
    stream = px.create_iterator(x, coords)
    states = [next(stream) for _ in range(4)]
    check.sync()
    seconds = (time.perf_counter() - start) / 3
    leads = [int(c["lead_time"][0] / np.timedelta64(1, "h")) for _, c in states]
    out = states[-1][0]
    if leads != [0, 6, 12, 18] or out.shape != x.shape or out.device != x.device or not torch.isfinite(out).all():
        raise AssertionError(
            f"rollout leads {leads}, shape {tuple(out.shape)}, device {out.device}, "
            f"finite {bool(torch.isfinite(out).all())}"
        )
    return {
        "rows": [
            {
                "steps": 3,
                "leads h": leads,
                "shape": list(out.shape),
                "device": str(out.device),
                "s/step": round(seconds, 4),
            }
        ]
    }
