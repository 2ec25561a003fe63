# SPDX-License-Identifier: Apache-2.0
"""Shard stores in the ClimaX layout.

A store is a folder::

    lat.npy, lon.npy                     grid-cell centres [H], [W] (degrees)
    normalize_mean.npz, normalize_std.npz   per variable, shape [1]
    {train,val,test}/{year}_{i}.npz      shards: one array per variable, [T, 1, H, W]
    {split}/climatology.npz              per variable, time mean [1, H, W]
    store.json                           (stores written here) manifest, written last: variables,
                                         time step, the requested splits and the periods the data
                                         cover (``coverage``), units, and the SHA-256 of every
                                         shard (checked on its first read)

It is the layout of the official ClimaX preprocessing, so already-processed
folders load as they are; stores written by :mod:`.prepare` add
``store.json`` (variables, time step, years), written last so that an
interrupted preparation never looks complete. Official folders have no
manifest: their time step is taken from the caller (ClimaX's own
preprocessing keeps hourly data, the default).

Shards saved uncompressed (``np.savez``, as both preprocessors do) are read
by memory-mapping each member, so a sample costs only its own bytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zipfile
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


def npz_member(path: Path, key: str) -> np.ndarray:
    """Array ``key`` of the ``.npz`` file ``path``, memory-mapped when stored uncompressed.

    Raises
    ------
    StoreError
        Naming the file when it is corrupt, truncated or lacks ``key``.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            try:
                info = archive.getinfo(key + ".npy")
            except KeyError:
                raise StoreError(
                    f"{path}: no variable {key!r}; it holds {sorted(n[:-4] for n in archive.namelist())}"
                ) from None
            if info.compress_type != zipfile.ZIP_STORED:
                with archive.open(info) as member:
                    return np.lib.format.read_array(member)
        with open(path, "rb") as raw:
            raw.seek(info.header_offset)
            local = raw.read(30)
            if local[:4] != b"PK\x03\x04":
                raise StoreError(f"{path}: corrupt zip member {key}")
            name_len, extra_len = int.from_bytes(local[26:28], "little"), int.from_bytes(local[28:30], "little")
            start = info.header_offset + 30 + name_len + extra_len
            raw.seek(start)
            version = np.lib.format.read_magic(raw)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(raw)
            offset = raw.tell()
        if offset + int(np.prod(shape)) * dtype.itemsize > path.stat().st_size:
            raise StoreError(f"{path}: truncated (member {key})")
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                         order="F" if fortran else "C")
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise StoreError(f"{path}: unreadable shard ({err})") from err


def npz_keys(path: Path) -> list[str]:
    """Variable names in an ``.npz`` file (error naming the file if corrupt)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return [n[: -len(".npy")] for n in archive.namelist() if n.endswith(".npy")]
    except (zipfile.BadZipFile, OSError) as err:
        raise StoreError(f"{path}: unreadable shard ({err})") from err


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
    _arrays: dict = field(default_factory=dict, repr=False, compare=False)

    def array(self, variable: str) -> np.ndarray:
        """The variable's ``[T, 1, H, W]`` array."""
        if not self.verified:
            self.verify()
        if variable not in self._arrays:
            self._arrays[variable] = npz_member(self.path, variable)
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
                    raise StoreError(f"{self.path}: its content is not what `climax data prepare` wrote "
                                     "(changed or damaged since); restore it or prepare the store again")
                _VERIFIED.add(key)
        self.verified = True

    def read(self, variables: list[str], t: int) -> np.ndarray:
        """Fields ``[V, H, W]`` at time index ``t``."""
        return np.stack([self.array(v)[t, 0] for v in variables])

    def __getstate__(self):
        return {"path": self.path, "steps": self.steps, "checksum": self.checksum, "verified": self.verified,
                "_arrays": {}}


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
            raise StoreError(
                f"{self.root}: hours_per_step {hours_per_step} requested, the store has {stored}"
            )
        if stored is None and hours_per_step is None:
            logger.info("%s has no %s; assuming hourly steps (ClimaX preprocessing)", self.root, MANIFEST)
        self.hours_per_step = float(stored or hours_per_step or 1.0)
        for name in ("lat.npy", "lon.npy"):
            if not (self.root / name).exists():
                raise StoreError(f"{self.root}: missing {name}; not a ClimaX store")

    @cached_property
    def lat(self) -> np.ndarray:
        return np.load(self.root / "lat.npy")

    @cached_property
    def lon(self) -> np.ndarray:
        return np.load(self.root / "lon.npy")

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
            shards.append(Shard(path, npz_member(path, keys[0]).shape[0], checksum))
        return shards

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
            raise StoreError(
                f"{self.root}: variables {missing} are not in the store, which has {have}"
            )

    def statistics(self, variables: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Normalization mean and std ``[V]``."""
        out = []
        for kind in ("mean", "std"):
            path = self.root / f"normalize_{kind}.npz"
            if not path.exists():
                raise StoreError(
                    f"{path} is missing; `climax data prepare` (or `climax data stats`) creates it"
                )
            stats = np.load(path)
            missing = [v for v in variables if v not in stats]
            if missing:
                raise StoreError(f"{path}: no statistics for {missing}; `climax data stats` creates them")
            out.append(np.array([float(np.ravel(stats[v])[0]) for v in variables]))
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
        if day_of_year:
            return np.stack([np.asarray(npz_member(path, v))[:, 0] for v in variables], axis=1)
        return np.stack([np.asarray(npz_member(path, v)).reshape(self.grid) for v in variables])

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
        times, elapsed = [], {}
        for shard in self.shards(split):
            year = shard.path.stem.split("_")[0]
            offset = elapsed.get(year, 0)
            times.append(starts[year] + step * np.arange(offset, offset + shard.steps))
            elapsed[year] = offset + shard.steps
        return times
