# SPDX-License-Identifier: Apache-2.0
"""Shard stores in the ClimaX layout.

A store is a folder::

    lat.npy, lon.npy                     grid-cell centres [H], [W] (degrees)
    normalize_mean.npz, normalize_std.npz   per variable, shape [1]
    {train,val,test}/{year}_{i}.npz      shards: one array per variable, [T, 1, H, W]
    {split}/climatology.npz              per variable, time mean [1, H, W]
    store.json                           (stores written here) manifest, written last: variables,
                                         time step, the requested splits and the periods the data
                                         cover (``coverage``) and the steps absent there
                                         (``missing_times``), units, the sources' ``calendar``,
                                         and the SHA-256 of every shard (checked on its first read)

It is the layout of the official ClimaX preprocessing, so already-processed
folders load as they are; stores written by :mod:`.prepare` add
``store.json`` (variables, time step, years), written last so that an
interrupted preparation never looks complete. Official folders have no
manifest: their time step is taken from the caller (ClimaX's own
preprocessing keeps hourly data, the default).

Shards saved uncompressed (``np.savez``, as both preprocessors do; stores
prepared here by :func:`write_npz`, the same bytes, hashed as they are
written) are read by memory-mapping each member, so a sample costs only its
own bytes.

Every ``.npy`` and ``.npz`` member is read header first (:func:`npz_header`,
:func:`read_npy`): its declared size must be that of its zip entry and within
the file, its shape what the store expects (shards ``[T, 1, H, W]`` on the
grid of ``lat.npy``/``lon.npy``, at most a year of steps; 1-D coordinates of
at most :data:`MAX_COORDINATES` values), no Python objects; a shard's checksum is
verified before any of its members is read, and a compressed member without
one expands at most :data:`MAX_INFLATION` times. Nothing is decompressed or
allocated before these checks.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..files import sha256

logger = logging.getLogger(__name__)

MANIFEST = "store.json"
SPLITS = ("train", "val", "test")
#: The files :attr:`ShardStore.fingerprint` hashes (those a store has).
FINGERPRINTED = (MANIFEST, "normalize_mean.npz", "normalize_std.npz", "lat.npy", "lon.npy")


class StoreError(DataError):
    """A store is missing, incomplete, corrupt or does not hold what was asked."""


#: A compressed member whose checksum was not verified expands at most this much. Deflate
#: (``np.savez_compressed``) cannot pass about 1032:1, which constant fields such as a land-sea
#: mask repeated over time reach, so this stops only other methods (bzip2, lzma: bombs of a
#: million to one); for deflate, the declared sizes (header, zip entry, the store's grid and a
#: year of steps) bound what is inflated.
MAX_INFLATION = 1100
#: Values of ``lat.npy`` / ``lon.npy`` at most.
MAX_COORDINATES = 2**16
#: Hours a shard (``{year}_{i}.npz``) spans at most: a leap year.
YEAR_HOURS = 366 * 24
#: Values of one variable's entry of ``normalize_mean.npz`` / ``normalize_std.npz`` at most (one is read).
STATISTIC_VALUES = 1024


@dataclass(frozen=True)
class Member:
    """An ``.npy`` (a file, or a member of an ``.npz``) as its header declares it.

    Attributes
    ----------
    shape : tuple of int
    dtype : np.dtype
    fortran : bool
    offset : int or None
        Where the data start in the file (a plain file or an uncompressed member); ``None`` when compressed.
    ratio : float
        Expansion of a compressed member (1 when stored).
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran: bool
    offset: int | None
    ratio: float = 1.0


def _header(stream, path: Path, item: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Shape, order, dtype and length of the ``.npy`` header at the stream's position (numpy's reader,
    which bounds the header's size and parses it without pickle); refuses arrays of objects."""
    start = stream.tell()
    version = np.lib.format.read_magic(stream)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(stream)
    if dtype.hasobject:
        raise StoreError(f"{path}: {item} holds Python objects (pickles), which a store never holds")
    return tuple(shape), fortran, dtype, stream.tell() - start


def npz_header(path: Path, key: str) -> Member:
    """The header of member ``key`` of the ``.npz`` file ``path``, read without decompressing its data;
    the size it declares must be that of the zip entry, within the file.

    Raises
    ------
    StoreError
        Naming the file and member: missing, unreadable, objects, sizes that disagree.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            try:
                info = archive.getinfo(key + ".npy")
            except KeyError:
                raise StoreError(
                    f"{path}: no variable {key!r}; it holds {sorted(n[:-4] for n in archive.namelist())}"
                ) from None
            if info.compress_type == zipfile.ZIP_STORED:
                with open(path, "rb") as raw:
                    raw.seek(_stored_start(path, raw, info))
                    shape, fortran, dtype, length = _header(raw, path, f"member {key}")
                    member = Member(shape, dtype, fortran=fortran, offset=raw.tell())
            else:  # only the header is inflated
                with archive.open(info) as stream:
                    shape, fortran, dtype, length = _header(stream, path, f"member {key}")
                member = Member(
                    shape, dtype, fortran=fortran, offset=None, ratio=info.file_size / max(info.compress_size, 1)
                )
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
        if isinstance(err, StoreError):
            raise
        raise StoreError(f"{path}: unreadable member {key} ({err})") from err
    data = math.prod(shape) * dtype.itemsize
    if length + data != info.file_size:
        raise StoreError(
            f"{path}: member {key} declares shape {shape} of {dtype} ({data} bytes) but its zip "
            f"entry holds {info.file_size - length} bytes (damaged or forged)"
        )
    if member.offset is not None and member.offset + data > path.stat().st_size:
        raise StoreError(f"{path}: truncated (member {key})")
    return member


def _stored_start(path: Path, raw, info: zipfile.ZipInfo) -> int:
    """Where an uncompressed member's bytes start: after its local header."""
    raw.seek(info.header_offset)
    local = raw.read(30)
    if local[:4] != b"PK\x03\x04":
        raise StoreError(f"{path}: corrupt zip member {info.filename}")
    return info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")


def npz_member(
    path: Path, key: str, shape: tuple[int, ...] | None = None, max_values: int | None = None, verified: bool = False
) -> np.ndarray:
    """Array ``key`` of the ``.npz`` file ``path``, memory-mapped when stored uncompressed.

    Its header is checked first (:func:`npz_header`), then against ``shape`` (exact) or
    ``max_values``; a compressed member is inflated only then, and only within
    :data:`MAX_INFLATION` unless ``verified`` (its file matched its checksum).

    Raises
    ------
    StoreError
        Naming the file and member when it is corrupt, truncated, lacks ``key`` or is not as expected.
    """
    member = npz_header(path, key)
    if shape is not None and member.shape != tuple(shape):
        raise StoreError(f"{path}: member {key} has shape {member.shape}, expected {tuple(shape)}")
    if max_values is not None and math.prod(member.shape) > max_values:
        raise StoreError(
            f"{path}: member {key} declares {math.prod(member.shape)} values (shape {member.shape}), "
            f"more than the {max_values} it can hold"
        )
    if member.offset is not None:
        return np.memmap(
            path,
            dtype=member.dtype,
            mode="r",
            offset=member.offset,
            shape=member.shape,
            order="F" if member.fortran else "C",
        )
    if member.ratio > MAX_INFLATION and not verified:
        raise StoreError(
            f"{path}: member {key} would expand {member.ratio:.0f} times (at most {MAX_INFLATION} "
            "without a verified checksum): refused before decompression"
        )
    try:
        with zipfile.ZipFile(path) as archive, archive.open(key + ".npy") as stream:
            return np.lib.format.read_array(stream, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
        raise StoreError(f"{path}: unreadable member {key} ({err})") from err


def read_npy(path: Path, max_values: int = MAX_COORDINATES) -> np.ndarray:
    """A 1-D ``.npy`` of numbers (``lat.npy``, ``lon.npy``), its header checked before the data are read:
    at most ``max_values`` values, exactly the bytes the file holds after its header.

    Raises
    ------
    StoreError
        Naming the file: unreadable, not 1-D numbers, too long, or sizes that disagree.
    """
    try:
        with open(path, "rb") as f:
            shape, _, dtype, length = _header(f, path, "the array")
    except (EOFError, OSError, ValueError) as err:
        if isinstance(err, StoreError):
            raise
        raise StoreError(f"{path}: unreadable ({err})") from err
    if len(shape) != 1 or dtype.kind not in "fiu":
        raise StoreError(f"{path}: {dtype} of shape {shape}; grid coordinates are 1-D numbers")
    data, size = math.prod(shape) * dtype.itemsize, path.stat().st_size - length
    if not 1 <= shape[0] <= max_values or data != size:
        raise StoreError(
            f"{path}: declares shape {shape} ({data} bytes) but holds {size} bytes after its header "
            f"(1 to {max_values} values expected)"
        )
    return np.load(path, allow_pickle=False)


def npz_keys(path: Path) -> list[str]:
    """Variable names in an ``.npz`` file (error naming the file if corrupt)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return [n[: -len(".npy")] for n in archive.namelist() if n.endswith(".npy")]
    except (zipfile.BadZipFile, OSError) as err:
        raise StoreError(f"{path}: unreadable ({err})") from err


def npz_arrays(path: Path, max_values: int) -> dict[str, np.ndarray]:
    """Every member of an ``.npz`` file, in memory, each read as :func:`npz_member` reads it."""
    return {key: np.array(npz_member(path, key, max_values=max_values)) for key in npz_keys(path)}


def write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> str:
    """Write ``arrays`` as ``np.savez(path, **arrays)`` does (the same bytes: uncompressed
    members, zipfile's layout) and return the file's SHA-256 (hex), taken from the bytes as
    they are written rather than by reading the file again.

    Each array's bytes go to the file as they are (no copy, where ``np.savez`` copies them in
    blocks first); arrays contiguous in neither order are copied once. A member is hashed in a
    second thread while the next one is written (zipfile's CRC-32 of it).

    Raises
    ------
    StoreError
        For an array of Python objects (pickles), which a store never holds.
    """
    with open(path, "wb") as file, ThreadPoolExecutor(1, thread_name_prefix="npz-hash") as hasher:
        out = _HashedOutput(file, hasher)
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
            for key, value in arrays.items():
                value = np.asanyarray(value)
                if value.dtype.hasobject:
                    raise StoreError(f"{path}: member {key} holds Python objects; a store holds numbers only")
                if not (value.flags.c_contiguous or value.flags.f_contiguous):
                    value = np.ascontiguousarray(value)
                header = io.BytesIO()
                fields = np.lib.format.header_data_from_array_1_0(value)  # Fortran order kept, as numpy does
                try:
                    np.lib.format.write_array_header_1_0(header, fields)
                except ValueError:  # a header longer than version 1.0 holds, as numpy's writer does
                    np.lib.format.write_array_header_2_0(header, fields)
                with archive.open(key + ".npy", "w", force_zip64=True) as member:  # as np.savez opens it
                    member.write(header.getvalue())
                    member.write((value.T if fields["fortran_order"] else value).reshape(-1).view(np.uint8).data)
                out.hash_written()  # the member's header is final once it is closed
        out.hash_written()  # the central directory
        return out.hexdigest()


class _HashedOutput:
    """A binary file being written by :mod:`zipfile`, with the SHA-256 of its bytes.

    zipfile writes a member's local header, then its data, then seeks back to
    write the header again with the CRC-32 and sizes. Bytes appended are therefore
    kept (by reference: an array's buffer is not copied) and hashed, in order, by
    ``hasher`` (one thread) only when :meth:`hash_written` says they are final; the
    rewrite of a header lands on bytes not yet hashed, and any other rewrite is refused.
    """

    def __init__(self, file, hasher: ThreadPoolExecutor):
        self.file, self.hasher = file, hasher
        self.digest = hashlib.sha256()
        self.position = self.end = 0
        self.pending: list[tuple[int, bytes | memoryview]] = []  # (offset, bytes) not hashed yet
        self.hashing: list[Future] = []

    def write(self, data) -> int:
        data = data if isinstance(data, bytes) else memoryview(data).cast("B")
        if self.position == self.end:
            self.pending.append((self.position, data))
        else:
            self._rewrite(bytes(data))
        self.file.write(data)
        self.position += len(data)
        self.end = max(self.end, self.position)
        return len(data)

    def _rewrite(self, data: bytes) -> None:
        for k, (start, piece) in enumerate(self.pending):
            at = self.position - start
            if isinstance(piece, bytes) and 0 <= at and at + len(data) <= len(piece):
                self.pending[k] = (start, piece[:at] + data + piece[at + len(data) :])
                return
        raise RuntimeError(f"rewriting bytes {self.position}..{self.position + len(data)} already hashed")

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = self.file.seek(offset, whence)
        return self.position

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        self.file.flush()

    def hash_written(self) -> None:
        """Hash the bytes written so far (they will not be rewritten), in the hasher's thread."""
        pieces = [piece for _, piece in self.pending]
        self.pending = []
        self.hashing.append(self.hasher.submit(lambda: [self.digest.update(piece) for piece in pieces]))

    def hexdigest(self) -> str:
        """The SHA-256 of every byte written, once :meth:`hash_written` has covered them."""
        for job in self.hashing:
            job.result()
        return self.digest.hexdigest()


#: Shards whose checksum this process has verified: ``(path, size, mtime_ns)``.
_VERIFIED: set[tuple[str, int, int]] = set()


@dataclass
class Shard:
    """One shard file: its path, number of time steps and, for stores prepared
    here, the SHA-256 it was written with.

    The checksum is verified on the first read of the shard in a process (a
    shard changed or damaged since preparation is an error naming it).
    Member arrays are opened on first use and kept (memory maps cost no
    memory); they are not pickled, so each worker process opens its own.
    """

    path: Path
    steps: int
    checksum: str | None = None
    verified: bool = False
    grid: tuple[int, int] | None = None
    _arrays: dict = field(default_factory=dict, repr=False, compare=False)

    def array(self, variable: str) -> np.ndarray:
        """The variable's ``[T, 1, H, W]`` array (its header checked first; the checksum before any
        member is read or decompressed)."""
        if not self.verified:
            self.verify()
        if variable not in self._arrays:
            shape = None if self.grid is None else (self.steps, 1, *self.grid)
            self._arrays[variable] = npz_member(self.path, variable, shape, verified=self.checksum is not None)
        return self._arrays[variable]

    def verify(self) -> None:
        """Check the shard against its checksum (once per process and file version).

        Raises
        ------
        StoreError
            When its content is not the one prepared.
        """
        if self.checksum is not None:
            stat = self.path.stat()
            key = (str(self.path), stat.st_size, stat.st_mtime_ns)
            if key not in _VERIFIED:
                if sha256(self.path) != self.checksum:
                    raise StoreError(
                        f"{self.path}: its content is not what `climax data prepare` wrote "
                        "(changed or damaged since); restore it or prepare the store again"
                    )
                _VERIFIED.add(key)
        self.verified = True

    def read(self, variables: list[str], t: int) -> np.ndarray:
        """Fields ``[V, H, W]`` at time index ``t``."""
        return np.stack([self.array(v)[t, 0] for v in variables])

    def prefetch(self, variables: list[str], steps: np.ndarray, wait: bool = True) -> None:
        """Nothing to fetch ahead: a shard file is memory-mapped (a streamed shard fetches here)."""

    def __getstate__(self):
        return {
            "path": self.path,
            "steps": self.steps,
            "checksum": self.checksum,
            "verified": self.verified,
            "grid": self.grid,
            "_arrays": {},
        }


class ShardStore:
    """Read access to a store (see the module docstring).

    Parameters
    ----------
    root : str or Path
        The store folder.
    hours_per_step : float, optional
        Time between consecutive steps of a shard, for folders without
        ``store.json`` (official ClimaX folders: 1 hour); a manifest's value
        wins and a contradicting one is an error.
    """

    #: Consecutive steps best read together (a streamed store's chunk); a memory map has no preference.
    chunk_steps = 1
    #: Whether reads are fetched ahead (a streamed store); a memory map has nothing to fetch.
    fetches = False

    def __init__(self, root: str | Path, hours_per_step: float | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            partial = self.root.with_name(self.root.name + ".partial")
            hint = f" (an unfinished preparation is in {partial})" if partial.exists() else ""
            raise StoreError(f"{self.root}: no such store{hint}")
        manifest = self.root / MANIFEST
        self.manifest = json.loads(manifest.read_text()) if manifest.exists() else None
        stored = None if self.manifest is None else self.manifest["hours_per_step"]
        if stored is not None and hours_per_step is not None and stored != hours_per_step:
            raise StoreError(f"{self.root}: hours_per_step {hours_per_step} requested, the store has {stored}")
        if stored is None and hours_per_step is None:
            logger.info("%s has no %s; assuming hourly steps (ClimaX preprocessing)", self.root, MANIFEST)
        self.hours_per_step = float(stored or hours_per_step or 1.0)
        for name in ("lat.npy", "lon.npy"):
            if not (self.root / name).exists():
                raise StoreError(f"{self.root}: missing {name}; not a ClimaX store")

    @cached_property
    def lat(self) -> np.ndarray:
        return read_npy(self.root / "lat.npy")

    @cached_property
    def lon(self) -> np.ndarray:
        return read_npy(self.root / "lon.npy")

    @property
    def grid(self) -> tuple[int, int]:
        return self.lat.size, self.lon.size

    def shards(self, split: str) -> list[Shard]:
        """The split's shards in name order (year, then index)."""
        folder = self.root / split
        files = sorted(
            (p for p in folder.glob("*.npz") if not p.name.startswith("climatology")),
            key=lambda p: tuple(int(s) if s.isdigit() else s for s in p.stem.split("_")),
        )
        if not files:
            raise StoreError(f"{folder}: no shards")
        checksums = (self.manifest or {}).get("checksums", {})
        shards = []
        for path in files:
            keys = npz_keys(path)
            if not keys:
                raise StoreError(f"{path}: empty shard")
            checksum = checksums.get(f"{split}/{path.name}")
            shards.append(Shard(path, self._steps(path, keys[0]), checksum, grid=self.grid))
        return shards

    def _steps(self, path: Path, key: str) -> int:
        """Time steps of a shard, from its first member's header (nothing is read or decompressed):
        ``[T, 1, H, W]`` on the store's grid, ``T`` at most a year of steps (shards are per year)."""
        shape, most = npz_header(path, key).shape, math.ceil(YEAR_HOURS / self.hours_per_step)
        if len(shape) != 4 or shape[1] != 1 or tuple(shape[2:]) != self.grid:
            raise StoreError(
                f"{path}: member {key} has shape {shape}; shards hold [T, 1, H, W] on the store's grid {self.grid}"
            )
        if shape[0] > most:
            raise StoreError(
                f"{path}: member {key} declares {shape[0]} steps of {self.hours_per_step:g} h, more "
                f"than the {most} of a year (a shard holds one year at most): damaged or forged"
            )
        return shape[0]

    def variables(self, split: str = "train") -> list[str]:
        """Variables of the store (manifest, or the first shard of ``split``)."""
        if self.manifest is not None:
            return list(self.manifest["variables"])
        return npz_keys(self.shards(split)[0].path)

    def check_variables(self, requested: list[str], split: str = "train") -> None:
        """Error listing the difference when the store lacks requested variables."""
        have = self.variables(split)
        missing = [v for v in requested if v not in have]
        if missing:
            raise StoreError(f"{self.root}: variables {missing} are not in the store, which has {have}")

    def statistics(self, variables: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Normalization mean and std ``[V]``."""
        out = []
        for kind in ("mean", "std"):
            path = self.root / f"normalize_{kind}.npz"
            if not path.exists():
                raise StoreError(f"{path} is missing; `climax data prepare` (or `climax data stats`) creates it")
            held = npz_keys(path)
            missing = [v for v in variables if v not in held]
            if missing:
                raise StoreError(f"{path}: no statistics for {missing}; `climax data stats` creates them")
            out.append(
                np.array([float(np.ravel(npz_member(path, v, max_values=STATISTIC_VALUES))[0]) for v in variables])
            )
        if (out[1] <= 0).any():
            bad = [v for v, s in zip(variables, out[1]) if s <= 0]
            raise StoreError(f"{self.root}: non-positive std for {bad}")
        return out[0], out[1]

    def climatology(self, split: str, variables: list[str], day_of_year: bool = False) -> np.ndarray:
        """Time-mean climatology ``[V, H, W]`` of ``split``, or with ``day_of_year``
        the day-of-year climatology ``[366, V, H, W]``."""
        name = "climatology_doy.npz" if day_of_year else "climatology.npz"
        path = self.root / split / name
        if not path.exists():
            how = "`climax data stats --day-of-year`" if day_of_year else "`climax data prepare`"
            raise StoreError(f"{path} is missing; {how} creates it")
        cells = self.grid[0] * self.grid[1]
        if day_of_year:
            return np.stack([np.asarray(npz_member(path, v, max_values=366 * cells))[:, 0] for v in variables], axis=1)
        return np.stack([np.asarray(npz_member(path, v, max_values=cells)).reshape(self.grid) for v in variables])

    @cached_property
    def fingerprint(self) -> str:
        """The SHA-256 of what defines the store: ``store.json`` (variables, periods, units and every
        shard's checksum), the statistics and the grid. A run records it, and evaluation refuses a
        store in its place whose fingerprint differs."""
        digest = hashlib.sha256()
        for name in FINGERPRINTED:
            if (self.root / name).exists():
                digest.update(f"{name}:{sha256(self.root / name)};".encode())
        return digest.hexdigest()

    def shard_times(self, split: str) -> list[np.ndarray]:
        """Time stamps of each shard of ``split`` (stores with a manifest only)."""
        if self.manifest is None:
            raise StoreError(f"{self.root} has no {MANIFEST}: its shards carry no time stamps")
        periods = self.manifest.get("coverage", self.manifest["splits"])[split]  # where the data start
        starts = {p[0][:4]: np.datetime64(p[0], "h") for p in periods}
        step = np.timedelta64(int(self.hours_per_step), "h")
        absent = np.array(self.manifest.get("missing_times", {}).get(split, []), "datetime64[h]")
        times, elapsed = [], {}
        for shard in self.shards(split):
            year = shard.path.stem.split("_")[0]
            offset = elapsed.get(year, 0)
            # the steps from the period's start, less those the source lacked (a noleap 29 February)
            every = starts[year] + step * np.arange(offset + shard.steps + absent.size)
            every = every[~np.isin(every, absent)] if absent.size else every
            times.append(every[offset : offset + shard.steps])
            elapsed[year] = offset + shard.steps
        return times
