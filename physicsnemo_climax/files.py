# SPDX-License-Identifier: Apache-2.0
"""Writing files so that a failure never leaves half a file or destroys what it did not make.

What this package writes for a user (forecasts, scorecards, plots, converted
checkpoints, run records, generation output) goes through :func:`atomic_path`
(NetCDF through :func:`write_netcdf`):
the content goes to a hidden file beside the target, renamed over it only
when complete. On failure the partial file is removed, the old target is
intact, and an :class:`~.errors.OutputError` names the target and, when the
disk is full, says so (libraries such as netCDF or torch report a full disk
in their own words).

What a command may replace is decided before any work, by two rules:

* a **file output** named by the user (:func:`check_file_output`) is never one
  of the command's inputs or a folder, and an existing file is replaced only
  when the user says so (``--overwrite``);
* a **folder output** (:func:`output_folder`: a WeatherBench 2 Zarr, an
  evaluation's set of files) replaces only a folder of its own kind,
  recognised by the marker file it carries (:data:`OUTPUT_MARKER`), and also
  only when the user says so. The new folder is written beside the target
  and swapped in by one rename, so a failure or a signal at any moment leaves
  either the old set or the new one, whole.

Temporary names carry the writing process's id and host; a later write of the
same target removes those left by processes of this host that are gone
(kill -9), and puts back an old folder that a crash left aside.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import io
import json
import os
import re
import shutil
import socket
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import xarray as xr

from .errors import ClimaxError, OutputError

#: Below this many free bytes a failed write is reported as a full disk.
FULL_DISK_BYTES = 64 * 2**20
#: The file in a folder output that names its kind (and that this package wrote it).
OUTPUT_MARKER = ".climax-output.json"
#: This host, as it appears in temporary names (a shared file system may hold other hosts' ones).
HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]


def temporary_name(target: Path, tag: str) -> Path:
    """``.{stem}.{tag}{pid}-{host}{suffix}`` beside ``target`` (the suffix kept for writers that
    choose the format from it: ``.png``, ``.nc``, ``.mdlus``)."""
    return target.with_name(f".{target.stem}.{tag}{os.getpid()}-{HOST}{target.suffix}")


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """A temporary path to write ``target``'s content to; renamed to ``target`` on success."""
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(failure(target, err)) from err
    clean_stale(target)
    tmp = temporary_name(target, "tmp")
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException as err:
        remove(tmp)
        if isinstance(err, (OSError, RuntimeError)) and not isinstance(err, ClimaxError):
            raise OutputError(failure(target, err)) from err
        raise


# ------------------------------------------------------------------ what a command may replace
def check_file_output(
    target: str | Path, *, overwrite: bool, inputs: Sequence = (), option: str = "--output", hint: str = "--overwrite"
) -> Path:
    """``target`` as a file output the user named: never an input or a folder, and an
    existing file only with ``overwrite``.

    Raises
    ------
    OutputError
        Naming ``target`` and the way out; nothing has been written.
    """
    target = Path(target)
    refuse_inputs(target, inputs, option)
    if target.is_dir():
        raise OutputError(f"{option} {target} is a folder; give the name of a file")
    if (target.exists() or target.is_symlink()) and not overwrite:
        raise OutputError(f"{option} {target} exists; pass {hint} to replace it (nothing was changed)")
    return target


def refuse_inputs(target: Path, inputs: Sequence, option: str) -> None:
    """An :class:`OutputError` when ``target`` is one of ``inputs`` or holds one of them."""
    for given in inputs:
        if not isinstance(given, (str, Path)):  # an input not given, or not one path (a list of files)
            continue
        if same_file(target, given):
            raise OutputError(f"{option} {target} is the input {given}; write the output elsewhere")
        if Path(target).is_dir() and is_inside(Path(given), Path(target)):
            raise OutputError(f"{option} {target} holds the input {given}; write the output elsewhere")


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file or folder, however spelled (relative, ``..``, links)."""
    a, b = Path(a), Path(b)
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def is_inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies below it (links resolved)."""
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


@contextmanager
def output_folder(
    target: str | Path,
    kind: str,
    *,
    overwrite: bool,
    inputs: Sequence = (),
    legacy: Callable[[Path], bool] | None = None,
    option: str = "--output",
    hint: str = "--overwrite",
) -> Iterator[Path]:
    """A new, empty folder to write the folder output ``target`` into; swapped in for ``target`` on success.

    Parameters
    ----------
    kind : str
        What the output is (``"WeatherBench 2 forecast"``, ``"evaluation"``): recorded in its
        :data:`OUTPUT_MARKER`; an existing ``target`` is replaced only when it is of this kind.
    overwrite : bool
        Whether an existing output of this kind may be replaced.
    inputs : sequence of path
        What the command reads: ``target`` may not be or hold one of them.
    legacy : callable, optional
        ``legacy(folder)``: whether a folder without a marker is this kind's output written by an
        older version of this package (checked by its content).
    option, hint : str
        The option that named ``target``, and the one that allows replacing, for messages.

    Raises
    ------
    OutputError
        Before anything is written, when ``target`` may not be replaced (naming it and why);
        after a failed write, naming it (the previous output, if any, is as it was).
    """
    target = Path(target)
    clean_stale(target)
    refuse_inputs(target, inputs, option)
    check_replaceable(target, kind, overwrite, legacy, option, hint)
    staging = temporary_name(target, "new")
    try:
        staging.mkdir(parents=True)
        yield staging
        (staging / OUTPUT_MARKER).write_text(json.dumps({"kind": kind}))
        swap_in(staging, target)
    except BaseException as err:
        remove(staging)
        if isinstance(err, (OSError, RuntimeError)) and not isinstance(err, ClimaxError):
            raise OutputError(failure(target, err)) from err
        raise


def check_replaceable(target: Path, kind: str, overwrite: bool, legacy, option: str, hint: str) -> None:
    """Refuse, naming ``target``, to replace anything but an earlier output of ``kind`` (and that only
    with ``overwrite``); an empty folder may be used."""
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise OutputError(
            f"{option} {target} is {'a link' if target.is_symlink() else 'a file'}, not "
            f"{article(kind)} {kind} folder; nothing was changed: choose another name"
        )
    if not target.exists() or not any(target.iterdir()):
        return
    if output_kind(target) != kind and not (legacy is not None and output_kind(target) is None and legacy(target)):
        held = sorted(p.name for p in target.iterdir())
        listed = ", ".join(held[:4]) + (", ..." if len(held) > 4 else "")
        raise OutputError(
            f"{option} {target} is not {article(kind)} {kind} written by climax (it holds {listed}); "
            "nothing was changed: choose another name"
        )
    if not overwrite:
        raise OutputError(f"{option} {target} holds an earlier {kind}; pass {hint} to replace it (nothing was changed)")


def article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" else "a"


def holding_only(names: Sequence[str], required: Sequence[str] = ()) -> Callable[[Path], bool]:
    """A ``legacy`` test for :func:`output_folder`: whether a folder holds nothing but ``names``
    (and every one of ``required``), as outputs of a kind did before they carried a marker."""

    def test(folder: Path) -> bool:
        held = {p.name for p in Path(folder).iterdir()}
        return set(required) <= held <= set(names)

    return test


def output_kind(folder: Path) -> str | None:
    """The kind recorded in ``folder``'s :data:`OUTPUT_MARKER`, or ``None``."""
    try:
        return json.loads((folder / OUTPUT_MARKER).read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return None


def swap_in(new: Path, target: Path) -> None:
    """Put the folder ``new`` in place of ``target`` (absent or a folder) in one step where the
    system allows it, then remove the old content."""
    if not target.exists():
        os.replace(new, target)
    elif exchange(new, target):  # ``new`` now holds the old content
        shutil.rmtree(new, ignore_errors=True)
    else:  # two renames: a crash between them leaves the old one aside, put back by clean_stale
        old = temporary_name(target, "old")
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); ``False`` where the system
    has no such call. Python's ``os`` has none: a replace of a non-empty folder is impossible."""
    call = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if call is None:
        return False
    at_cwd, rename_exchange = -100, 2
    if call(at_cwd, os.fsencode(a), at_cwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):  # a file system or kernel without it
        return False
    raise OSError(code, os.strerror(code), str(b))


# ------------------------------------------------------------------ what killed writers leave
def clean_stale(target: Path) -> None:
    """Remove the temporary files and folders of ``target`` left by processes of this host that
    are gone (kill -9), after putting back an old folder a crash left aside mid-swap."""
    pattern = re.compile(rf"\.{re.escape(target.stem)}\.(tmp|new|old)(\d+)-{HOST}{re.escape(target.suffix)}")
    try:
        leftovers = [(p, m) for p in target.parent.iterdir() if (m := pattern.fullmatch(p.name))]
    except OSError:
        return
    for path, match in leftovers:
        if alive(int(match.group(2))):
            continue
        if match.group(1) == "old" and not target.exists():
            os.replace(path, target)
        else:
            remove(path)


def alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (another user's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove(path: Path) -> None:
    """Delete a temporary file or folder of this module, whichever it is."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write_atomic(target: str | Path, text: str) -> Path:
    """Write ``text`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text)
    return Path(target)


def write_netcdf(
    target: str | Path, root: xr.Dataset, groups: dict[str, xr.Dataset] | None = None, encoding: dict | None = None
) -> Path:
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
    reason = (
        (getattr(err, "strerror", None) or str(err).strip().splitlines()[0]) if str(err).strip() else type(err).__name__
    )
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
