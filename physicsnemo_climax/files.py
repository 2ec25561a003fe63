# SPDX-License-Identifier: Apache-2.0
"""Writing files so that a failure never leaves half a file or destroys the old one.

What this package writes for a user (forecasts, scorecards, plots, converted
checkpoints, run records, generation output) goes through :func:`atomic_path`
(NetCDF through :func:`write_netcdf`):
the content goes to a hidden file beside the target, renamed over it only
when complete. On failure the partial file is removed, the old target is
intact, and an :class:`~.errors.OutputError` names the target and, when the
disk is full, says so (libraries such as netCDF or torch report a full disk
in their own words).
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import xarray as xr

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


@contextmanager
def atomic_folder(target: str | Path) -> Iterator[Path]:
    """A temporary folder to write a folder ``target`` (a Zarr store) into; swapped in on success.

    An existing ``target`` is moved aside, the new one renamed into place, and the
    old one removed only then, so a failure at any point leaves one complete folder.
    """
    target = Path(target)
    with atomic_path(target.with_name(target.name + ".new")) as tmp:
        yield tmp
    new, old = target.with_name(target.name + ".new"), target.with_name(f".{target.name}.old{os.getpid()}")
    try:
        if target.exists():
            os.replace(target, old)
        os.replace(new, target)
    except OSError as err:
        raise OutputError(failure(target, err)) from err
    shutil.rmtree(old, ignore_errors=True)


def write_atomic(target: str | Path, text: str) -> Path:
    """Write ``text`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text)
    return Path(target)


def write_netcdf(target: str | Path, root: xr.Dataset, groups: dict[str, xr.Dataset] | None = None,
                 encoding: dict | None = None) -> Path:
    """Write a NetCDF-4 file, with optional groups, atomically.

    The file is built in memory (h5netcdf) and written to disk with Python's
    own I/O. Reason: when a write to disk fails (a full disk), the netCDF and
    HDF5 C libraries leave a state that crashes the process (at exit, or at
    once); in memory they cannot fail that way, and the disk write then fails
    with a plain ``OSError`` that :func:`atomic_path` reports.
    """
    with atomic_path(target) as tmp:
        buffer = io.BytesIO()
        if groups:
            tree = xr.DataTree.from_dict({"/": root, **{f"/{name}": ds for name, ds in groups.items()}})
            tree.to_netcdf(buffer, engine="h5netcdf")
        else:
            root.to_netcdf(buffer, engine="h5netcdf", encoding=encoding)
        tmp.write_bytes(buffer.getbuffer())
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
