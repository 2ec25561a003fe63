# SPDX-License-Identifier: Apache-2.0
"""A ``.mdlus`` archive read within bounds, building nothing: what :mod:`.mdlus` checks.

:func:`read_file` reads a zip (or PhysicsNeMo's older, uncompressed tar):

* the members ``args.json``, ``metadata.json`` and ``model.pt`` are there and
  their declared sizes lie within the file; the JSON members are at most
  :data:`MAX_JSON_BYTES`; a compressed member expands at most
  :data:`MAX_RATIO` times (PhysicsNeMo stores them uncompressed). Nothing
  else is inflated to check this;
* ``args.json`` and ``metadata.json`` are plain JSON within bounds
  (:func:`argument_problem`);
* ``model.pt``'s tensors are read on the meta device: torch reads the pickle
  (``weights_only``), not the data, giving each tensor's shape, checked to
  lie within its storage, and the storages within the member.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import CheckpointError

MEMBERS = ("args.json", "metadata.json", "model.pt")
#: ``args.json`` / ``metadata.json`` at most (a ClimaX's longest arguments, lat/lon lists, take kB).
MAX_JSON_BYTES = 16 * 2**20
#: Expansion of a compressed member at most (JSON compresses about 10 times, weights hardly).
MAX_RATIO = 100
#: JSON bounds: integers within int32 (every count and size of these models), characters of a string,
#: items of a list or object, levels of nesting.
MAX_INT = 2**31 - 1
MAX_STRING = 2**16
MAX_ITEMS = 2**20
MAX_NESTING = 16
#: Grid arguments (``img_size``, ``img_resolution``): cells per side and in all (4096 x 8192).
GRID_ARGUMENTS = ("img_size", "img_resolution")
MAX_AXIS = 2**16
MAX_CELLS = 2**25


class MdlusError(CheckpointError, ValueError):
    """A ``.mdlus`` file refused before loading; the message names the file and the item."""


@dataclass
class Saved:
    """What a ``.mdlus`` file holds, read without building anything.

    Attributes
    ----------
    path : Path
    args : dict
        ``args.json``: ``{"__name__", "__module__", "__args__"}`` and nested modules' entries.
    metadata : dict
        ``metadata.json`` (PhysicsNeMo version, ``mdlus_file_version``).
    tensors : dict of str to (tuple of int, int)
        Shape and bytes of each tensor of ``model.pt``.
    """

    path: Path
    args: dict
    metadata: dict
    tensors: dict[str, tuple[tuple[int, ...], int]]


def read_file(path: str | Path) -> Saved:
    """The :class:`Saved` contents of a ``.mdlus``, its archive and JSON members checked.

    Raises
    ------
    MdlusError
        Not a ``.mdlus``, or members beyond the bounds (named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        # PhysicsNeMo's order: an older tar file ending in model.pt (itself a zip) also looks like a zip
        if tarfile.is_tarfile(path):
            return _read_tar(path)
        if zipfile.is_zipfile(path):
            return _read_zip(path)
    except MdlusError:
        raise
    except (
        OSError,
        EOFError,
        RuntimeError,
        ValueError,
        tarfile.TarError,
        zipfile.BadZipFile,
        pickle.UnpicklingError,
    ) as err:
        raise MdlusError(f"{path}: not a readable .mdlus checkpoint ({first_line(err)})") from err
    raise MdlusError(f"{path}: not a PhysicsNeMo .mdlus checkpoint (neither a zip nor a tar archive)")


@dataclass(frozen=True)
class _Member:
    size: int  # bytes once extracted
    stored: int  # bytes in the archive
    offset: int | None  # where an uncompressed member's bytes start in the file; None when compressed


def _read_zip(path: Path) -> Saved:
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        if len({i.filename for i in infos}) != len(infos):
            raise MdlusError(f"{path}: the archive holds a member name twice")
        members = {i.filename: _Member(i.file_size, i.compress_size, _zip_offset(path, i)) for i in infos}
        _check_members(path, members)
        args, metadata = (_json(path, name, archive.read(name)) for name in MEMBERS[:2])
        weights = members["model.pt"]
        if weights.offset is None:  # compressed (not as PhysicsNeMo writes it, within MAX_RATIO)
            with archive.open("model.pt") as stream:
                return Saved(path, args, metadata, _tensors(path, stream, weights.size))
    with open(path, "rb") as raw:
        return Saved(path, args, metadata, _tensors(path, _Window(raw, weights.offset, weights.size), weights.size))


def _zip_offset(path: Path, info: zipfile.ZipInfo) -> int | None:
    """Where a stored (uncompressed) member's bytes start: after its local header."""
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as raw:
        raw.seek(info.header_offset)
        local = raw.read(30)
    if local[:4] != b"PK\x03\x04":
        raise MdlusError(f"{path}: corrupt zip member {info.filename}")
    return info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")


def _read_tar(path: Path) -> Saved:
    try:
        archive = tarfile.open(path, "r:")
    except tarfile.ReadError as err:
        raise MdlusError(f"{path}: a compressed tar archive; PhysicsNeMo's tar .mdlus files are not") from err
    with archive:
        entries = {m.name.removeprefix("./"): m for m in archive.getmembers()}
        odd = [n for n in MEMBERS if n in entries and not entries[n].isfile()]
        if odd:
            raise MdlusError(f"{path}: {odd} are not plain files in the archive")
        members = {n: _Member(m.size, m.size, m.offset_data) for n, m in entries.items() if m.isfile()}
        _check_members(path, members)
        args, metadata = (_json(path, n, archive.extractfile(entries[n]).read()) for n in MEMBERS[:2])
    weights = members["model.pt"]
    with open(path, "rb") as raw:
        return Saved(path, args, metadata, _tensors(path, _Window(raw, weights.offset, weights.size), weights.size))


def _check_members(path: Path, members: dict[str, _Member]) -> None:
    """The three members are there, their sizes fit in the file and expand within bounds."""
    missing = [n for n in MEMBERS if n not in members]
    if missing:
        raise MdlusError(f"{path}: not a PhysicsNeMo .mdlus checkpoint ({', '.join(missing)} missing)")
    size = path.stat().st_size
    for name in MEMBERS:
        m = members[name]
        if name.endswith(".json") and m.size > MAX_JSON_BYTES:
            raise MdlusError(
                f"{path}: {name} declares {size_text(m.size)}, more than the "
                f"{size_text(MAX_JSON_BYTES)} a .mdlus's arguments take: not loaded"
            )
        if m.offset is None and m.size > MAX_RATIO * max(m.stored, 1):
            raise MdlusError(
                f"{path}: {name} would expand {m.size / max(m.stored, 1):.0f} times, to "
                f"{size_text(m.size)} (at most {MAX_RATIO} times): refused before decompression"
            )
        if m.offset is not None and (m.stored != m.size or m.offset + m.size > size):
            raise MdlusError(f"{path}: {name} declares {size_text(m.size)} beyond the end of the file (truncated)")


class _Window(io.RawIOBase):
    """Bytes ``[start, start + size)`` of an open file, as a file (an uncompressed member, for torch.load)."""

    def __init__(self, raw, start: int, size: int):
        super().__init__()
        self.raw, self.start, self.size, self.position = raw, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.position, 2: self.size}[whence]
        self.position = min(max(base + offset, 0), self.size)
        return self.position

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.size - self.position)
        self.raw.seek(self.start + self.position)
        got = self.raw.readinto(memoryview(buffer)[:n])
        self.position += got
        return got


def _tensors(path: Path, stream, size: int) -> dict[str, tuple[tuple[int, ...], int]]:
    """Shape and bytes of each tensor of ``model.pt`` (``size`` bytes), read on the meta device:
    torch reads the pickle, not the data, and ``weights_only`` builds nothing but tensors."""
    state = torch.load(stream, map_location="meta", weights_only=True)
    if not isinstance(state, dict):
        raise MdlusError(f"{path}: model.pt holds a {type(state).__name__}, not a state dict")
    tensors, storages = {}, {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        storage = value.untyped_storage()
        storages[storage._cdata] = storage.nbytes()  # one entry per storage shared by several tensors
        last = value.storage_offset() + sum((n - 1) * s for n, s in zip(value.shape, value.stride()))
        if value.numel() and (last + 1) * value.element_size() > storage.nbytes():
            raise MdlusError(f"{path}: model.pt's {key} reaches beyond its storage (damaged or forged)")
        tensors[str(key)] = (tuple(value.shape), value.numel() * value.element_size())
    if sum(storages.values()) > size:
        raise MdlusError(
            f"{path}: model.pt declares {size_text(sum(storages.values()))} of weights, the file "
            f"holds {size_text(size)} (truncated or forged)"
        )
    return tensors


# ------------------------------------------------------------------ the arguments
def _json(path: Path, name: str, data: bytes) -> dict:
    try:
        value = json.loads(data.decode("utf-8"))  # NaN and Infinity parse; argument_problem refuses NaN
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise MdlusError(f"{path}: {name} is not valid JSON ({first_line(err)})") from err
    if not isinstance(value, dict):
        raise MdlusError(f"{path}: {name} holds a {type(value).__name__}, not an object")
    problem = argument_problem(value, name)
    if problem:
        raise MdlusError(f"{path}: {problem}; not a file this package loads (damaged or edited)")
    return value


def argument_problem(value, where: str, depth: int = 0) -> str | None:
    """What is out of bounds in a JSON value (``None``: nothing): NaN (``Infinity`` is allowed:
    PhysicsNeMo's EDM nets save ``sigma_max=inf``), integers beyond int32, strings over
    :data:`MAX_STRING` characters, lists or objects over :data:`MAX_ITEMS` items, nesting over
    :data:`MAX_NESTING`, and grids (:data:`GRID_ARGUMENTS`) over :data:`MAX_AXIS` / :data:`MAX_CELLS`."""
    if depth > MAX_NESTING:
        return f"{where} nests deeper than {MAX_NESTING} levels"
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return f"{where}={value} is beyond +-{MAX_INT}" if abs(value) > MAX_INT else None
    if isinstance(value, float):
        return f"{where} is NaN" if math.isnan(value) else None
    if isinstance(value, str):
        return (
            f"{where} is a string of {len(value)} characters (at most {MAX_STRING})"
            if len(value) > MAX_STRING
            else None
        )
    if len(value) > MAX_ITEMS:
        return f"{where} holds {len(value)} items (at most {MAX_ITEMS})"
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        inner = f"{where}.{key}" if isinstance(value, dict) else f"{where}[{key}]"
        problem = argument_problem(item, inner, depth + 1) or (
            _grid_problem(item, inner) if isinstance(value, dict) and key in GRID_ARGUMENTS else None
        )
        if problem:
            return problem
    return None


def _grid_problem(value, where: str) -> str | None:
    """A grid argument (``[H, W]`` or one side) of whole sides of 1 to :data:`MAX_AXIS` cells, at most
    :data:`MAX_CELLS` in all: the grid sizes buffers a constructor computes before any weight exists."""
    sides = value if isinstance(value, list) else [value, value]
    if not sides or not all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= MAX_AXIS for s in sides):
        return f"{where}={value}: each side must be a whole number of 1 to {MAX_AXIS} cells"
    if math.prod(sides) > MAX_CELLS:
        return f"{where}={value}: {math.prod(sides)} cells, more than {MAX_CELLS}"
    return None


def size_text(n: int) -> str:
    """Bytes in words: ``2.5 TB``."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def first_line(err: BaseException) -> str:
    """The first line of an error's message (its type when it has none)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
