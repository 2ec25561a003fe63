# SPDX-License-Identifier: Apache-2.0
"""Training checkpoints that are written atomically and verified on resume.

Saving: PhysicsNeMo's ``save_checkpoint`` writes the model
(``ClimaX.0.{step}.mdlus``) and the training state (``checkpoint.0.{step}.pt``:
optimizer, scheduler, scaler, data position, training samples seen) into ``checkpoints/.saving``;
their SHA-256 go into ``checkpoint.0.{step}.sha256``; the three files are
moved into place, the checksums last. A checkpoint counts once its training
state is in place, so a crash mid-save leaves the previous one in force. A
save that fails (a full disk) raises :class:`~..errors.CheckpointError` and
leaves the earlier checkpoints as they were; older checkpoints are pruned
only after a save succeeded, never the one just written.

Resuming: the newest checkpoint whose files are present, match their
checksums and load is used. One that fails is moved to
``checkpoints/skipped/`` with a warning saying why, and the one before is
tried. A run with checkpoints never starts again from fresh weights: if none
loads, the run stops. Training state is read with
``torch.load(weights_only=True)``, so a checkpoint cannot run code; under
FSDP, PhysicsNeMo's distributed loader (which gathers and scatters the
shards) runs with the same restriction.

Reading a run (forecasts, evaluations): :func:`load_model` takes the newest
checkpoint whose model file is intact and loads (the caller's loader checks
it), falling back the same way with a warning, but moves nothing.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tarfile
import zipfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import torch
from physicsnemo.utils.checkpoint import load_checkpoint, save_checkpoint

from ..errors import CheckpointError, CheckpointMismatch, ConfigError
from ..files import failure, sha256

logger = logging.getLogger(__name__)
T = TypeVar("T")

_STATE = re.compile(r"checkpoint\.0\.(\d+)\.pt")
_MODEL = re.compile(r".+\.0\.(\d+)\.mdlus")


def checkpoint_steps(folder: str | Path) -> list[int]:
    """Steps of the checkpoints in ``folder`` (those with their training state), ascending."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _STATE.fullmatch(p.name)))


def files_of(folder: str | Path, step: int) -> dict[str, Path]:
    """The files of checkpoint ``step``: ``model``, ``state`` and ``checksums`` (each may be missing)."""
    folder = Path(folder)
    models = sorted(folder.glob(f"*.0.{step}.mdlus"))
    return {
        "model": models[0] if models else folder / f"(model).0.{step}.mdlus",
        "state": folder / f"checkpoint.0.{step}.pt",
        "checksums": folder / f"checkpoint.0.{step}.sha256",
    }


def problem(folder: str | Path, step: int, parts: tuple[str, ...] = ("model", "state")) -> str | None:
    """Why the ``parts`` of checkpoint ``step`` cannot be used (a file missing or damaged), or ``None``."""
    files = files_of(folder, step)
    for part in parts:
        if not files[part].exists():
            return f"its {part} file {files[part].name} is missing"
    if not files["checksums"].exists():
        return None  # written before checksums existed: its loading is the check
    try:
        expected = json.loads(files["checksums"].read_text())
    except (OSError, ValueError):
        return f"its checksum file {files['checksums'].name} is unreadable"
    wanted = {files[part].name for part in parts}
    for name, digest in expected.items():
        if name not in wanted:
            continue
        path = Path(folder) / name
        if not path.exists():
            return f"{name} is missing"
        if sha256(path) != digest:
            return f"{name} does not match its checksum (damaged or changed since it was saved)"
    return None


def model_file(folder: str | Path, step: int | None = None) -> Path:
    """The ``.mdlus`` of checkpoint ``step``, default the newest one whose model file is intact
    (the training state, not needed here, is not read): :func:`load_model` without loading.

    Raises
    ------
    FileNotFoundError
        When ``folder`` holds no checkpoint.
    CheckpointError
        When no model file is intact (or that of ``step`` is not).
    """
    return load_model(folder, lambda file: file, step)[1]


def load_model(folder: str | Path, load: Callable[[Path], T], step: int | None = None) -> tuple[T, Path]:
    """``load(file)`` of the newest checkpoint's model file that loads, and that file: forecasts and
    evaluations, which only read the run. With ``step``, that checkpoint's only (no fallback).

    A checkpoint whose model file is missing, does not match its checksum or that ``load`` refuses
    (another class, damaged, refused by its checks) is skipped with a warning saying why, and the one
    before is tried, as training does; unlike training, nothing is moved.

    Raises
    ------
    FileNotFoundError
        When ``folder`` holds no checkpoint.
    CheckpointError
        When none loads, with each one's reason.
    """
    steps, reasons = (checkpoint_steps(folder) if step is None else [step]), []
    if not steps:
        raise FileNotFoundError(f"no checkpoint in {folder}")
    for step in reversed(steps):
        file = files_of(folder, step)["model"]
        why = problem(folder, step, parts=("model",))
        if why is None:
            try:
                return load(file), file
            except ConfigError:  # the config's fault (a stage, an override): every checkpoint fails alike
                raise
            except Exception as err:  # refused, damaged or of another class: the one before may load
                why = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        logger.warning("checkpoint %s in %s is not used: %s", step, folder, why)
        reasons.append(f"step {step}: {why}")
    raise CheckpointError(f"{folder}: no checkpoint can be used ({'; '.join(reasons)})")


def load_file(file: str | Path, load: Callable[[Path], T]) -> tuple[T, Path]:
    """``load(file)`` of the model file a user named, and that file. A checkpoint's model file
    (``{class}.0.{step}.mdlus``) is checked against its checksum first, as :func:`load_model` does
    with ``step``; it does not fall back to another checkpoint."""
    file = Path(file)
    step = _MODEL.fullmatch(file.name)
    return load_model(file.parent, load, int(step.group(1))) if step else (load(file), file)


# ------------------------------------------------------------------ saving
def save(
    folder,
    model,
    optimizer,
    scheduler,
    scaler,
    step: int,
    metadata: dict,
    keep: int | None = 2,
    rank: int = 0,
    collective: bool = False,
) -> None:
    """Write checkpoint ``step`` atomically with its checksums, and keep only the last ``keep`` (``None``: all).

    Called by rank 0 alone, or by every rank when ``collective`` (FSDP: the
    state is gathered across ranks, rank 0 writes).

    Raises
    ------
    CheckpointError
        When the checkpoint cannot be written (the earlier ones stay as they were).
    """
    folder = Path(folder)
    tmp = folder / ".saving"
    try:
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        if collective:
            torch.distributed.barrier()
        save_checkpoint(
            str(tmp),
            models=model,
            optimizer=optimizer,
            scheduler=scheduler,
            scaler=scaler,
            epoch=step,
            metadata=metadata,
        )
        if rank != 0:
            torch.distributed.barrier()
            return
        files = sorted(tmp.iterdir(), key=lambda p: _STATE.fullmatch(p.name) is not None)  # model first
        (tmp / f"checkpoint.0.{step}.sha256").write_text(json.dumps({p.name: sha256(p) for p in files}))
        for path in files + [tmp / f"checkpoint.0.{step}.sha256"]:  # training state, then checksums, last
            os.replace(path, folder / path.name)
        tmp.rmdir()
    except (OSError, RuntimeError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(
            f"checkpoint {step} not saved: {failure(folder, err)}; the earlier checkpoints in {folder} are intact"
        ) from err
    for old in checkpoint_steps(folder)[:-keep] if keep else []:
        for path in folder.glob(f"*.0.{old}.*"):
            path.unlink()
    if collective:
        torch.distributed.barrier()


def saved_metadata(folder: str | Path, step: int) -> dict:
    """The metadata saved with checkpoint ``step``: ``epoch`` and ``position`` (the data position)
    and, since they are counted, ``samples_seen`` (training samples over all ranks since the run began).

    The training state is read with ``weights_only=True`` (no code runs) and memory-mapped, so the
    optimizer's tensors are not read into memory.

    Raises
    ------
    CheckpointError
        When the checkpoint's training state is missing or damaged, naming it.
    """
    path = files_of(folder, step)["state"]
    why = problem(folder, step, parts=("state",))
    if why is None:
        try:
            return dict(torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("metadata", {}))
        except Exception as err:  # truncated, not a zip torch file, refused by weights_only
            why = f"it does not load ({type(err).__name__})"
    raise CheckpointError(f"checkpoint {step} in {folder}: {why}")


# ------------------------------------------------------------------ resuming
def load(folder, model, optimizer=None, scheduler=None, scaler=None, device="cpu", rank: int = 0) -> tuple[int, dict]:
    """Restore the newest usable checkpoint; returns ``(step, metadata)``, ``(0, {})`` if there is none.

    Rank 0 moves the checkpoints it skips aside; other ranks only skip them.

    Raises
    ------
    CheckpointMismatch
        If the saved model does not fit ``model`` (every checkpoint of the
        run would fail alike), listing the keys.
    CheckpointError
        If the folder holds checkpoints and none of them can be used.
    """
    folder = Path(folder)
    steps, skipped = checkpoint_steps(folder), []
    for step in reversed(steps):
        why = problem(folder, step)
        if why is None:
            try:
                return step, _load_step(folder, step, model, optimizer, scheduler, scaler, device)
            except CheckpointMismatch:  # every checkpoint of the run would fail alike: no fallback
                raise
            except Exception as err:  # unreadable, truncated or refused by weights_only
                why = f"it does not load ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        if rank == 0:
            logger.warning("skipping checkpoint %s in %s: %s; moved to %s", step, folder, why, folder / "skipped")
            _set_aside(folder, step)
        skipped.append(f"step {step}: {why}")
    if skipped:
        raise CheckpointError(
            f"{folder}: no checkpoint can be used ({'; '.join(skipped)}); they are kept in "
            f"{folder / 'skipped'}. Nothing was trained: fix them, or train into a new run_dir"
        )
    return 0, {}


def _load_step(folder: Path, step: int, model, optimizer, scheduler, scaler, device) -> dict:
    # The .mdlus checks of models.mdlus are not needed here: the model is built from the run's config,
    # and PhysicsNeMo's Module.load reads only model.pt (never args.json: no import, no construction
    # from the file), with torch.load's weights_only default, into weights whose shapes must fit
    # (CheckpointMismatch). The file matched the checksum written at its save; a forged one can fail to
    # load (moved aside) but not run code. Only inflation is left, refused by _stored_members.
    files = files_of(folder, step)
    _stored_members(files["model"])
    try:
        if _is_sharded(model):
            metadata: dict = {}
            with _weights_only():
                load_checkpoint(
                    str(folder),
                    models=model,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    scaler=scaler,
                    epoch=step,
                    metadata_dict=metadata,
                    device=device,
                )
            return metadata
        model.load(str(files["model"]))
    except RuntimeError as err:
        if "state_dict" in str(err) or "size mismatch" in str(err):
            raise CheckpointMismatch(f"checkpoint in {folder} does not fit this model: {err}") from err
        raise
    state = torch.load(files["state"], map_location=device, weights_only=True)
    for part, name in ((optimizer, "optimizer"), (scheduler, "scheduler"), (scaler, "scaler")):
        if part is not None and f"{name}_state_dict" in state:
            part.load_state_dict(state[f"{name}_state_dict"])
    return state.get("metadata", {})


def _stored_members(file: Path) -> None:
    """Refuse a zip ``.mdlus`` with compressed members: PhysicsNeMo stores them as they are, and
    reading a compressed one inflates it to whatever size it declares."""
    if zipfile.is_zipfile(file) and not tarfile.is_tarfile(file):
        with zipfile.ZipFile(file) as archive:
            packed = [i.filename for i in archive.infolist() if i.compress_type != zipfile.ZIP_STORED]
        if packed:
            raise CheckpointError(f"{file}: {packed} compressed; not a file this run saved")


def _is_sharded(model) -> bool:
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


@contextmanager
def _weights_only():
    """``torch.load`` with ``weights_only=True`` whatever the caller passes (PhysicsNeMo's
    distributed loader asks for ``False``; our checkpoints hold tensors and plain data only)."""
    original = torch.load

    def safe_load(*args, **kwargs):
        kwargs["weights_only"] = True
        return original(*args, **kwargs)

    torch.load = safe_load
    try:
        yield
    finally:
        torch.load = original


def _set_aside(folder: Path, step: int) -> None:
    """Move checkpoint ``step``'s files to ``folder/skipped/`` (kept, out of the way of resume and pruning)."""
    target = folder / "skipped"
    target.mkdir(exist_ok=True)
    for path in folder.glob(f"*.0.{step}.*"):
        os.replace(path, target / path.name)
