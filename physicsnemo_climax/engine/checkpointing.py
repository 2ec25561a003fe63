# SPDX-License-Identifier: Apache-2.0
"""Atomic training checkpoints on top of PhysicsNeMo's ``save_checkpoint``.

Each save writes into a temporary folder, then moves the model file
(``ClimaX.0.{step}.mdlus``) and the training state (``checkpoint.0.{step}.pt``:
optimizer, scheduler, scaler, data position) into place, the state last. A
checkpoint counts only once its state file exists, so a crash mid-save leaves
the previous one in force.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import torch
from physicsnemo.utils.checkpoint import load_checkpoint, save_checkpoint

_STATE = re.compile(r"checkpoint\.0\.(\d+)\.pt")


def checkpoint_steps(folder: str | Path) -> list[int]:
    """Steps of the complete checkpoints in ``folder``, ascending."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _STATE.fullmatch(p.name)))


def model_file(folder: str | Path, step: int | None = None) -> Path:
    """The ``.mdlus`` of checkpoint ``step`` (default: the latest)."""
    steps = checkpoint_steps(folder)
    if not steps:
        raise FileNotFoundError(f"no checkpoint in {folder}")
    step = steps[-1] if step is None else step
    files = list(Path(folder).glob(f"*.0.{step}.mdlus"))
    if not files:
        raise FileNotFoundError(f"{folder}: checkpoint {step} has no model file")
    return files[0]


def save(folder, model, optimizer, scheduler, scaler, step: int, metadata: dict, keep: int = 2,
         rank: int = 0, collective: bool = False) -> None:
    """Write checkpoint ``step`` atomically and keep only the last ``keep``.

    Called by rank 0 alone, or by every rank when ``collective`` (FSDP: the
    state is gathered across ranks, rank 0 writes).
    """
    folder = Path(folder)
    tmp = folder / ".saving"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    if collective:
        torch.distributed.barrier()
    save_checkpoint(str(tmp), models=model, optimizer=optimizer, scheduler=scheduler,
                    scaler=scaler, epoch=step, metadata=metadata)
    if rank != 0:
        torch.distributed.barrier()
        return
    files = sorted(tmp.iterdir(), key=lambda p: _STATE.fullmatch(p.name) is not None)
    for path in files:  # model first, training state last
        os.replace(path, folder / path.name)
    tmp.rmdir()
    for old in checkpoint_steps(folder)[:-keep]:
        for path in folder.glob(f"*.0.{old}.*"):
            path.unlink()
    if collective:
        torch.distributed.barrier()


def load(folder, model, optimizer=None, scheduler=None, scaler=None, device="cpu") -> tuple[int, dict]:
    """Restore the latest checkpoint; returns ``(step, metadata)``, ``(0, {})`` if none.

    Raises
    ------
    ValueError
        If the saved model does not fit ``model``, listing the keys.
    """
    steps = checkpoint_steps(folder)
    if not steps:
        return 0, {}
    metadata: dict = {}
    try:
        step = load_checkpoint(str(folder), models=model, optimizer=optimizer, scheduler=scheduler,
                               scaler=scaler, epoch=steps[-1], metadata_dict=metadata, device=device)
    except RuntimeError as err:
        if "state_dict" in str(err) or "size mismatch" in str(err):
            raise ValueError(f"checkpoint in {folder} does not fit this model: {err}") from err
        raise
    return step, metadata
