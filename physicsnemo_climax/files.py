# SPDX-License-Identifier: Apache-2.0
"""Writing files so that a failure never leaves half a file or destroys the old one.

What this package writes for a user (forecasts, scorecards, plots, converted
checkpoints, run records, generation output) goes through :func:`atomic_path`:
the content goes to a hidden file beside the target, renamed over it only
when complete. On failure the partial file is removed, the old target is
intact, and an :class:`~.errors.OutputError` names the target and, when the
disk is full, says so (libraries such as netCDF or torch report a full disk
in their own words).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import ClimaxError, OutputError

#: Below this many free bytes a failed write is reported as a full disk.
FULL_DISK_BYTES = 64 * 2**20


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """A temporary path to write ``target``'s content to; renamed to ``target`` on success.

    The temporary name keeps the suffix (``.png``, ``.nc``, ``.mdlus``) for
    writers that choose the format from it.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(failure(target, err)) from err
    tmp = target.with_name(f".{target.stem}.tmp{os.getpid()}{target.suffix}")
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException as err:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        if isinstance(err, (OSError, RuntimeError)) and not isinstance(err, ClimaxError):
            raise OutputError(failure(target, err)) from err
        raise


def write_atomic(target: str | Path, text: str) -> Path:
    """Write ``text`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text)
    return Path(target)


def sha256(path: str | Path) -> str:
    """The SHA-256 of a file's content (hex), read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**22), b""):
            digest.update(block)
    return digest.hexdigest()


def failure(target: Path, err: BaseException) -> str:
    """Why writing ``target`` failed, in words a user can act on."""
    code = getattr(err, "errno", None)
    reason = (getattr(err, "strerror", None) or str(err).strip().splitlines()[0]) if str(err).strip() else type(err).__name__
    try:
        free = shutil.disk_usage(_existing(target.parent)).free
    except OSError:
        free = None
    if code == errno.ENOSPC or (free is not None and free < FULL_DISK_BYTES):
        return f"could not write {target}: the disk is full ({free} bytes free); free space or write elsewhere"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"could not write {target}: {reason}; choose a folder you can write to"
    return f"could not write {target}: {reason}"


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path
