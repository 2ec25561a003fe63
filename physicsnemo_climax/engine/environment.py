# SPDX-License-Identifier: Apache-2.0
"""What this machine offers a run: GPUs, precisions, PhysicsNeMo, DALI, apex, compile, launcher.

:func:`probe` looks, and never requires: the NVIDIA stack (apex, DALI,
Transformer Engine) lives in the NGC PhysicsNeMo container (``containers/``).
The run plan (:mod:`.plan`) decides from it; ``climax doctor`` prints it.
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import importlib.util
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist


@dataclass
class Feature:
    """One probed piece of the environment."""

    name: str
    ok: bool
    detail: str


@dataclass
class Environment:
    """Everything :func:`probe` found, by short name."""

    features: dict[str, Feature] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Feature:
        return self.features[name]

    def ok(self, name: str) -> bool:
        return self.features[name].ok


# ------------------------------------------------------------------ probing
def _version(*distributions: str) -> str | None:
    for name in distributions:
        try:
            return f"{name} {metadata.version(name)}"
        except metadata.PackageNotFoundError:
            continue
    return None


def _importable(module: str, attribute: str | None = None) -> str | None:
    """``None`` when ``module`` (and ``attribute``) import, else the reason."""
    if importlib.util.find_spec(module.split(".")[0]) is None:
        return "not installed"
    try:
        mod = importlib.import_module(module)
        if attribute is not None:
            getattr(mod, attribute)
    except Exception as err:  # broken builds raise anything from ImportError to OSError
        return f"{type(err).__name__}: {err}".splitlines()[0]
    return None


def _gpus() -> Feature:
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
        return Feature("GPU", False, f"none visible ({build}; inside a container, pass --nv / --gpus all)")
    names = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        names.append(f"{i}: {p.name} (sm_{p.major}{p.minor}, {p.total_memory / 2**30:.0f} GiB)")
    return Feature("GPU", True, "; ".join(names))


APEX = {
    "apex_adam": ("apex.optimizers", "FusedAdam"),
    "apex_layer_norm": ("apex.normalization", "FusedLayerNorm"),
    "apex_group_norm": ("apex.contrib.group_norm", "GroupNorm"),
}


def apex(part: str) -> Feature:
    """One of the apex kernels in :data:`APEX`: importable, with a CUDA GPU to run on."""
    module, attribute = APEX[part]
    why = _importable(module, attribute)
    if why is None and not torch.cuda.is_available():
        why = "installed, but its kernels need a CUDA GPU"
    return Feature(f"apex {attribute}", why is None, why or f"{module}.{attribute}")


def _compile(cuda: bool) -> Feature:
    if cuda:
        why = _importable("triton")
        return Feature("torch.compile", why is None, "inductor with triton" if why is None else f"triton {why}")
    compiler = next((c for c in ("g++", "c++", "clang++") if shutil.which(c)), None)
    return Feature(
        "torch.compile",
        compiler is not None,
        f"inductor (CPU) with {compiler}" if compiler else "no C++ compiler on PATH",
    )


def _launcher() -> Feature:
    env = os.environ
    if "SLURM_PROCID" in env and "SLURM_NPROCS" in env:
        address = env.get("SLURM_LAUNCH_NODE_IPADDR") or env.get("MASTER_ADDR")
        detail = f"SLURM: rank {env['SLURM_PROCID']} of {env['SLURM_NPROCS']}"
        if address is None:
            return Feature(
                "launcher",
                False,
                detail + "; neither SLURM_LAUNCH_NODE_IPADDR nor MASTER_ADDR "
                "is set: export MASTER_ADDR=<first node> (the `climax launch slurm` script does)",
            )
        return Feature("launcher", True, f"{detail}; rendezvous at {address}")
    if "RANK" in env and "WORLD_SIZE" in env:
        return Feature("launcher", True, f"torchrun/env: rank {env['RANK']} of {env['WORLD_SIZE']}")
    if "OMPI_COMM_WORLD_RANK" in env:
        return Feature(
            "launcher", True, f"Open MPI: rank {env['OMPI_COMM_WORLD_RANK']} of {env.get('OMPI_COMM_WORLD_SIZE')}"
        )
    return Feature("launcher", True, "single process (no torchrun, SLURM or MPI variables)")


def _container() -> Feature:
    env = os.environ
    kind = (
        "Apptainer"
        if "APPTAINER_CONTAINER" in env
        else "Singularity"
        if "SINGULARITY_CONTAINER" in env
        else "Docker"
        if os.path.exists("/.dockerenv")
        else None
    )
    ngc = env.get("NVIDIA_PYTORCH_VERSION")
    if kind is None and ngc is None:
        return Feature("container", False, "none (a plain Python environment)")
    image = env.get("APPTAINER_CONTAINER") or env.get("SINGULARITY_CONTAINER") or ""
    detail = " ".join(p for p in (kind, image, f"(NGC PyTorch {ngc})" if ngc else "") if p)
    return Feature("container", True, detail)


def _amx() -> Feature:
    """Intel AMX (bf16 tile matrix multiplies), where bf16 autocast pays on a CPU; read from the
    kernel's CPU flags (Linux), as torch exposes no public test."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return Feature("AMX", False, "unknown (no /proc/cpuinfo)")
    found = "amx_bf16" in flags
    return Feature("AMX", found, "amx_bf16: bf16 matrix tiles" if found else "no amx_bf16 flag: bf16 is emulated")


def probe() -> Environment:
    """Probe torch, CUDA, PhysicsNeMo, DALI, apex, Transformer Engine, compile, distributed."""
    cuda = torch.cuda.is_available()
    f = {**_torch_features(cuda), **_library_features(cuda)}
    f["distributed"] = _distributed(cuda)
    f["launcher"] = _launcher()
    f["container"] = _container()
    return Environment(f)


def _torch_features(cuda: bool) -> dict[str, Feature]:
    """torch itself and what its kernels offer here: GPUs, bf16, AMX, fp16, flash attention."""
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else "none"
    flash = cuda and torch.backends.cuda.flash_sdp_enabled() and torch.cuda.get_device_capability()[0] >= 8
    return {
        "torch": Feature("torch", True, f"{torch.__version__} (CUDA {torch.version.cuda or 'none'}, cuDNN {cudnn})"),
        "gpu": _gpus(),
        "bf16": Feature(
            "bf16",
            torch.cuda.is_bf16_supported() if cuda else True,
            "GPU autocast" if cuda else "CPU autocast only (ClimaX; CorrDiff needs CUDA)",
        ),
        "amx": _amx(),
        "fp16": Feature("fp16", cuda, "GPU autocast + GradScaler" if cuda else "needs a CUDA GPU"),
        "sdpa_flash": Feature(
            "SDPA flash attention",
            flash,
            "scaled_dot_product_attention picks flash / memory-efficient kernels"
            if cuda
            else "CPU: SDPA math/flash-CPU kernels",
        ),
    }


def _library_features(cuda: bool) -> dict[str, Feature]:
    """PhysicsNeMo, DALI, apex, Transformer Engine and ``torch.compile``: present, and usable here."""
    f = {"physicsnemo": Feature("PhysicsNeMo", True, _version("nvidia-physicsnemo") or "installed from source")}
    dali = _version("nvidia-dali-cuda130", "nvidia-dali-cuda120", "nvidia-dali-cuda110", "nvidia-dali")
    dali_why = _importable("nvidia.dali", "pipeline_def") if dali else "not installed"
    f["dali"] = Feature("DALI", dali_why is None, dali if dali_why is None else dali_why)
    gpu_dali = dali_why is None and cuda
    f["dali_gpu"] = Feature(
        "DALI GPU pipelines", gpu_dali, "DALI ops on the GPU" if gpu_dali else "need DALI and a CUDA GPU"
    )
    f.update({part: apex(part) for part in APEX})
    te_why = _importable("transformer_engine")
    te = (_version("transformer_engine", "transformer-engine") or "installed") + " (not used by the recipes)"
    f["transformer_engine"] = Feature("Transformer Engine", te_why is None, te if te_why is None else te_why)
    f["compile"] = _compile(cuda)
    return f


def _distributed(cuda: bool) -> Feature:
    """The process-group backend training would use here (NCCL on GPUs, else gloo)."""
    available = {"nccl": dist.is_nccl_available(), "gloo": dist.is_gloo_available(), "mpi": dist.is_mpi_available()}
    backends = [name for name, ok in available.items() if ok]
    backend = "nccl" if cuda and "nccl" in backends else "gloo"
    return Feature(
        "distributed", backend in backends, f"backend {backend} (available: {', '.join(backends) or 'none'})"
    )
