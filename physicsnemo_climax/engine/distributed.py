# SPDX-License-Identifier: Apache-2.0
"""Process-group setup through PhysicsNeMo's ``DistributedManager``.

Two fixes for CPU runs, applied here and nowhere else:

* ``DistributedManager`` 2.2 derives a missing ``LOCAL_RANK`` as
  ``rank % cuda.device_count()``, a division by zero without GPUs: it is set
  from the rank (one process per node slot) when absent.
* It passes ``device_id=cpu`` to ``init_process_group``, which gloo rejects
  on torch >= 2.15: during setup the CPU ``device_id`` is dropped.

And one for SLURM: its method reads the rendezvous address from
``SLURM_LAUNCH_NODE_IPADDR``, which ``srun`` does not set everywhere under
``sbatch``; ``MASTER_ADDR`` (exported by the ``climax launch slurm`` script)
stands in for it, and without either the error says what to export.

torchrun, SLURM and Open MPI launches are recognised as ``DistributedManager``
does; its warning that a job launched without them is a single process is
held back unless debugging (:mod:`..dependency_warnings`).
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import torch
import torch.distributed as dist
from physicsnemo.distributed import DistributedManager

from ..dependency_warnings import single_process_warning_filter


@contextmanager
def _no_cpu_device_id():
    original = dist.init_process_group

    def init_process_group(*args, device_id=None, **kwargs):
        if device_id is not None and torch.device(device_id).type == "cpu":
            return original(*args, **kwargs)
        return original(*args, device_id=device_id, **kwargs)

    dist.init_process_group = init_process_group
    try:
        yield
    finally:
        dist.init_process_group = original


def _slurm_address() -> None:
    env = os.environ
    method = env.get("PHYSICSNEMO_DISTRIBUTED_INITIALIZATION_METHOD")
    slurm = method == "SLURM" or (method is None and "RANK" not in env and "SLURM_PROCID" in env)
    if not slurm or env.get("SLURM_LAUNCH_NODE_IPADDR"):
        return
    if not env.get("MASTER_ADDR"):
        raise RuntimeError(
            "SLURM launch without SLURM_LAUNCH_NODE_IPADDR or MASTER_ADDR: in the batch script, "
            'export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1) '
            "(`climax launch slurm` writes such a script)"
        )
    env["SLURM_LAUNCH_NODE_IPADDR"] = env["MASTER_ADDR"]


def setup_distributed() -> DistributedManager:
    """Initialise (once) and return the ``DistributedManager``."""
    if not DistributedManager.is_initialized():
        _slurm_address()
        if "RANK" in os.environ and "LOCAL_RANK" not in os.environ and not torch.cuda.is_available():
            os.environ["LOCAL_RANK"] = os.environ.get("SLURM_LOCALID", os.environ["RANK"])
        with _no_cpu_device_id(), single_process_warning_filter():
            DistributedManager.initialize()
    return DistributedManager()


def all_reduce(value: torch.Tensor, manager: DistributedManager, op=dist.ReduceOp.SUM) -> torch.Tensor:
    """``value`` reduced over ranks with ``op``, in place (identity on one process)."""
    if manager.distributed and manager.world_size > 1:
        dist.all_reduce(value, op=op)
    return value


def all_reduce_mean(value: torch.Tensor, manager: DistributedManager) -> torch.Tensor:
    """Mean of a tensor over ranks (identity on one process)."""
    return all_reduce(value.clone(), manager) / max(manager.world_size, 1)
