# SPDX-License-Identifier: Apache-2.0
"""A Zarr store read as a shard store, without a local copy.

WeatherBench 2 publishes ERA5 on ClimaX's grids as Zarr (``gs://weatherbench2/...``),
Google the ARCO-ERA5 Zarr: copying 40 years of them before training is the
step users of every weather-ML tool name as their bottleneck. A *streamed
store* trains straight from such a store (a URL read through fsspec, or a
local folder). It is a small local folder, the **side folder**, that is a
store in every respect but its shards:

``climax data prepare SOURCE --stream`` reads the source once, as a preparation
does (variables found by their ClimaX names, units converted, NaN refused,
statistics and climatologies computed), and writes ``lat.npy``, ``lon.npy``,
``normalize_*.npz``, ``{split}/climatology.npz`` and a ``store.json`` whose
``stream`` entry says where each field is in the source: its variable, level,
unit conversion, the source's rows and columns, and the steps of each shard.
The source must already be on the store's grid (WeatherBench 2's 64x32 is
ClimaX's 5.625 deg; any grid with ``--grid native``): fields are read, not
regridded.

Without ``--out`` the side folder goes to ``$CLIMAX_CACHE/streams/NAME-HASH``
(:func:`stream_folder`), where ``data.root=URL`` finds it: a URL and the side
folder written for it are one store (:func:`open_store`). A run records the
side folder, so evaluation, climatology and forecasts open it as they open a
prepared store.

Reading (:class:`ChunkReader`): a field is fetched in whole chunks of the
source along time, every level of one source variable in one request, then
laid out as ``[T, H, W]`` float32 in the store's units and grid order and kept
in a memory cache of decoded chunks (least recently used out first) and, when
asked (``chunk_cache_gb``), in a size-bounded cache of memory-mappable ``.npy``
files on local disk, so that a second epoch reads locally. The chunks a batch
needs are fetched in parallel before it is gathered (:meth:`StreamedShard.prefetch`,
called by the reader), and the loader's threads read batches ahead. A failed
request is tried again with back-off; one that keeps failing is an error
naming the URL, the variable and the chunk; no sample is ever skipped.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath

import numpy as np

from ..errors import ConfigError, DataError
from ..files import atomic_path
from .formats import grib_cache, is_url, open_parts
from .sources import read_values, retried
from .store import MANIFEST, ShardStore, StoreError
from .times import STANDARD_CALENDARS

logger = logging.getLogger(__name__)

#: Decoded chunks a process keeps in memory by default, bytes.
MEMORY_BYTES = 2 * 2**30
#: Chunk requests in flight at once (each waits mostly on the network).
FETCHERS = 16


def cache_root() -> Path:
    """``$CLIMAX_CACHE`` or ``~/.cache/physicsnemo_climax`` (where cfgrib's indices also go)."""
    return grib_cache().parent


def stream_folder(source: str | Path) -> Path:
    """Where the side folder of ``source`` (a Zarr URL or folder) goes by default, and where its
    chunk cache is: ``$CLIMAX_CACHE/streams/<name>-<12 hex of its SHA-256>``."""
    text = str(source).rstrip("/") if is_url(source) else str(Path(source).resolve())  # one name per folder
    name = PurePosixPath(text.split("://", 1)[-1]).name or "zarr"
    return cache_root() / "streams" / f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def is_zarr_source(root: str | Path) -> bool:
    """Whether ``root`` names a Zarr store rather than a store folder: a URL, or a folder with Zarr metadata."""
    if is_url(root):
        return True
    folder = Path(root)
    return any((folder / name).exists() for name in (".zgroup", ".zmetadata", "zarr.json"))


def open_store(
    root: str | Path, hours_per_step: float | None = None, cache_gb: float | None = None, memory_gb: float | None = None
) -> ShardStore:
    """The store at ``root``: a prepared folder, a side folder (:class:`StreamedStore`), or a Zarr URL
    or folder whose side folder is in the cache (:func:`stream_folder`).

    Parameters
    ----------
    root : str or Path
    hours_per_step : float, optional
        As for :class:`.store.ShardStore` (folders without a manifest).
    cache_gb : float, optional
        Size of a streamed store's chunk cache on local disk (``None`` or 0: none).
    memory_gb : float, optional
        Decoded chunks a streamed store keeps in memory (default :data:`MEMORY_BYTES`).

    Raises
    ------
    StoreError
        For a Zarr source without a side folder, with the command that writes it.
    """
    if is_zarr_source(root):
        side = stream_folder(root)
        if not (side / MANIFEST).exists():
            raise StoreError(
                f"{root}: a Zarr store is read where it is once its statistics are written: run "
                f"`climax data prepare {root} --stream --variables ... --train ...` (it writes them to {side}), "
                "or give data.root=<the side folder> written with --out"
            )
        root = side
    store = ShardStore(root, hours_per_step)
    if store.manifest is not None and "stream" in store.manifest:
        return StreamedStore(root, hours_per_step, cache_gb, memory_gb)
    return store


@dataclass(frozen=True)
class FieldSource:
    """Where one store variable is in the source Zarr.

    Attributes
    ----------
    variable : str
        The source's variable (``temperature``), or ``None`` for a field computed from the grid.
    level : float or None
        Its pressure level, hPa (``None``: a single-level variable).
    source_scale : float
        The factor from the source's variable to the ClimaX field (surface geopotential to orography).
    scale, offset : float
        Then the conversion a preparation applies: the store's value is
        ``(source * source_scale) * scale + offset``, in float32 as a preparation computes it.
    """

    variable: str | None
    level: float | None = None
    source_scale: float = 1.0
    scale: float = 1.0
    offset: float = 0.0


def check_streamable(config, catalogue, regridded: bool) -> None:
    """A preparation with ``stream`` (``config``, a :class:`.preparation.PrepareConfig`) reads one
    Zarr store of the standard calendar, on the store's grid, complete.

    Raises
    ------
    ConfigError
        Naming what stands in the way and what to do instead.
    """
    where = f"--stream ({', '.join(catalogue.files)})"
    if len(catalogue.files) != 1 or not is_zarr_source(catalogue.files[0]):
        raise ConfigError(f"{where}: a streamed store reads one Zarr store (a URL or a folder), not several files")
    if regridded:
        raise ConfigError(
            f"{where}: the source's grid ({catalogue.lat.size} x {catalogue.lon.size}) is not the store's: "
            "a streamed store reads fields as they are; give the source's grid (--grid native, or its "
            "spacing) or prepare a regridded copy without --stream"
        )
    if config.nan_policy != "raise":
        raise ConfigError(f"{where}: --nan-policy fill would change fields a streamed store reads as they are")
    if catalogue.calendar not in STANDARD_CALENDARS or catalogue.dropped:
        raise ConfigError(f"{where}: the {catalogue.calendar} calendar; prepare a copy of another calendar")


def stream_entry(config, fields: dict[str, dict], index: list | None, listed: dict[str, list]) -> dict:
    """The manifest's ``stream`` entry: the source, where each field is in it, the source's rows and
    columns in the store's order (``index``; ``None``: as they are), each split's shards and steps."""
    source = config.inputs[0]
    return {
        "url": source if is_url(source) else str(Path(source).resolve()),
        "storage_options": config.storage_options,
        "fields": fields,
        "rows": None if index is None else index[0],
        "cols": None if index is None else index[1],
        "shards": listed,
    }


class ChunkCache:
    """Decoded chunks ``[L, H, W]``: in memory (least recently used out first) and, optionally,
    as ``.npy`` files in ``folder`` of at most ``disk_bytes`` in all (files of earlier processes
    counted, oldest removed first). Thread-safe; a file is written whole or not at all.
    """

    def __init__(self, memory_bytes: int = MEMORY_BYTES, folder: Path | None = None, disk_bytes: int = 0):
        self.memory_bytes, self.disk_bytes = memory_bytes, disk_bytes
        self.folder = folder if disk_bytes > 0 else None
        self._memory: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()
        self._files: OrderedDict[Path, int] = OrderedDict()
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            found = sorted(self.folder.glob("*/*.npy"), key=lambda p: p.stat().st_mtime)
            self._files.update((p, p.stat().st_size) for p in found)

    def get(self, key: tuple[str, int]) -> np.ndarray | None:
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                return self._memory[key]
        path = self._path(key)
        if path is None or not path.exists():
            return None
        try:
            # a plain view of the map: np.memmap's own indexing is slow
            array = np.asarray(np.load(path, mmap_mode="r", allow_pickle=False))
        except (OSError, ValueError):  # removed by another process meanwhile, or damaged: fetch again
            return None
        with self._lock:
            if path in self._files:
                self._files.move_to_end(path)
        self._keep(key, array)
        return array

    def put(self, key: tuple[str, int], array: np.ndarray) -> None:
        self._keep(key, array)
        path = self._path(key)
        if path is None:
            return
        path.parent.mkdir(exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:  # not np.save(tmp): it would add a second ".npy"
                np.lib.format.write_array(f, np.ascontiguousarray(array), allow_pickle=False)
        with self._lock:
            self._files[path] = path.stat().st_size
            self._evict_files()

    def _keep(self, key: tuple[str, int], array: np.ndarray) -> None:
        with self._lock:
            if key not in self._memory:
                self._memory[key] = array
                self._held += array.nbytes
            while self._held > self.memory_bytes and len(self._memory) > 1:
                _, old = self._memory.popitem(last=False)
                self._held -= old.nbytes

    def _evict_files(self) -> None:
        """Oldest files out until the cache fits (called with the lock held)."""
        total = sum(self._files.values())
        while total > self.disk_bytes and len(self._files) > 1:
            path, size = self._files.popitem(last=False)
            path.unlink(missing_ok=True)  # only files this cache wrote: its own folder, *.npy
            total -= size

    def _path(self, key: tuple[str, int]) -> Path | None:
        return None if self.folder is None else self.folder / key[0] / f"{key[1]}.npy"


class ChunkReader:
    """The source of a streamed store, opened once per process: fields in whole source chunks
    along time, every level of a source variable fetched in one request, requests in parallel.

    Parameters
    ----------
    url : str
        The Zarr store (fsspec URL or folder).
    fields : dict of str to FieldSource
        The store's variables.
    lat : np.ndarray
        The store's latitudes ``[H]`` (the latitude field's values).
    rows, cols : sequence of int, optional
        The source's latitude rows and longitude columns in the store's order (``None``: as they are).
    options : dict, optional
        fsspec storage options (public buckets are read anonymously).
    cache : ChunkCache
    """

    def __init__(
        self,
        url: str,
        fields: dict[str, FieldSource],
        lat: np.ndarray,
        rows,
        cols,
        options: dict | None,
        cache: ChunkCache,
    ):
        self.url, self.fields, self.lat, self.cache = url, fields, lat, cache
        self.rows = None if rows is None else np.asarray(rows)
        self.cols = None if cols is None else np.asarray(cols)
        self.dataset = open_parts(url, options)[0]  # names brought to time, lat, lon, level (hPa)
        missing = sorted({f.variable for f in fields.values() if f.variable} - set(self.dataset.data_vars))
        if missing:
            raise DataError(f"{url}: variables {missing} are gone from the source since its statistics were written")
        # per field, looked up once: an xarray lookup costs ~60 us, and a batch makes hundreds
        arrays = {n: self.dataset[f.variable] for n, f in fields.items() if f.variable is not None}
        self._timeless = {n for n in fields if n not in arrays or "time" not in arrays[n].dims}
        self._lengths = {
            n: max(1, int(da.encoding.get("preferred_chunks", {}).get("time", 1)))
            for n, da in arrays.items()
            if n not in self._timeless
        }
        self._inflight: dict[tuple[str, int], Future] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(FETCHERS, thread_name_prefix="zarr-fetch")
        self._constants: dict[str, np.ndarray] = {}

    def time_index(self, stamps: np.ndarray) -> np.ndarray:
        """Positions in the source's time axis of ``stamps`` ``[T]``.

        Raises
        ------
        DataError
            Naming the URL and the first time the source lacks.
        """
        index = self.dataset.indexes["time"].get_indexer(stamps.astype("datetime64[ns]"))
        if (index < 0).any():
            raise DataError(f"{self.url}: no time {stamps[index < 0][0]} in the source, which the store steps through")
        return index

    def chunk_length(self, name: str) -> int:
        """Steps of the source in a chunk of ``name`` (its time-varying source variable)."""
        return self._lengths[name]

    def is_constant(self, name: str) -> bool:
        """Whether ``name`` has no time axis (read once: :meth:`constant`)."""
        return name in self._timeless

    def read(self, name: str, positions: np.ndarray) -> np.ndarray:
        """``name`` at the source's time ``positions`` ``[n]``: ``[n, H, W]`` float32."""
        if self.is_constant(name):
            field = self.constant(name)
            return np.broadcast_to(field, (len(positions), *field.shape))
        length = self._lengths[name]
        ids = positions // length
        chunks = np.unique(ids)
        missing = [int(c) for c in chunks if self.cache.get((name, int(c))) is None]
        for future in [self._fetch(self.fields[name].variable, c) for c in missing]:  # in parallel
            future.result()
        out = np.empty((len(positions), *self._grid()), np.float32)
        for c in chunks:
            rows = np.flatnonzero(ids == c)
            out[rows] = self.chunk(name, int(c))[positions[rows] - c * length]
        return out

    def prefetch(self, names: Iterable[str], positions: np.ndarray, wait: bool = True) -> None:
        """Fetch, all at once, the chunks of ``names`` holding ``positions`` that no cache holds;
        ``wait`` until they are here (a request that fails raises here, or when its chunk is read)."""
        futures = []
        for name in names:
            if self.is_constant(name):
                continue
            for c in np.unique(np.asarray(positions) // self.chunk_length(name)):
                if self.cache.get((name, int(c))) is None:
                    futures.append(self._fetch(self.fields[name].variable, int(c)))
        for future in futures if wait else ():
            future.result()

    def chunk(self, name: str, c: int) -> np.ndarray:
        """Chunk ``c`` of ``name``: ``[L, H, W]`` in the store's units and order."""
        while True:  # a chunk fetched may leave the memory cache before it is read: fetch again
            hit = self.cache.get((name, c))
            if hit is not None:
                return hit
            fetched = self._fetch(self.fields[name].variable, c).result()
            if name in fetched:
                return fetched[name]

    def _fetch(self, variable: str, c: int) -> Future:
        """The request for chunk ``c`` of the source's ``variable`` (one in flight per chunk)."""
        with self._lock:
            future = self._inflight.get((variable, c))
            if future is None:
                future = self._pool.submit(self._fetch_now, variable, c)
                self._inflight[(variable, c)] = future
                future.add_done_callback(lambda _, key=(variable, c): self._done(key))
            return future

    def _done(self, key: tuple[str, int]) -> None:
        with self._lock:
            self._inflight.pop(key, None)

    def _fetch_now(self, variable: str, c: int) -> dict[str, np.ndarray]:
        """Chunk ``c`` of ``variable``, every store field it holds laid out and cached."""
        names = [n for n, f in self.fields.items() if f.variable == variable]
        da = self.dataset[variable]
        length = self.chunk_length(names[0])
        lo, hi = c * length, min((c + 1) * length, da.sizes["time"])
        what = f"{variable} chunk {c} (time steps {lo}..{hi - 1})"
        dims = ("time", "level", "lat", "lon") if "level" in da.dims else ("time", "lat", "lon")
        frame = da.isel(time=slice(lo, hi))
        raw = retried(lambda: read_values(frame, self.url, what, dims), self.url, what, is_url(self.url))
        out = {}
        for name in names:  # each a view of the decoded chunk, laid out by _laid_out's one copy
            values = raw
            if "level" in da.dims:
                values = raw[:, int(np.argmin(np.abs(da.level.values - self.fields[name].level)))]
            out[name] = self._laid_out(name, values, what)
            self.cache.put((name, c), out[name])
        return out

    def constant(self, name: str) -> np.ndarray:
        """A field without time (a land-sea mask; the latitude field): ``[H, W]``, read once."""
        if name not in self._constants:
            source = self.fields[name]
            if source.variable is None:  # computed from the grid: the latitude of each cell
                field = np.broadcast_to(self.lat[:, None], self._grid()).astype(np.float32)
            else:
                da = self.dataset[source.variable]
                da = da.sel(level=source.level, method="nearest") if "level" in da.dims else da
                field = self._laid_out(name, read_values(da, self.url, name, ("lat", "lon"))[None], "constant")[0]
            self._constants[name] = field
        return self._constants[name]

    def _laid_out(self, name: str, values: np.ndarray, what: str) -> np.ndarray:
        """``values`` ``[L, H_src, W_src]`` on the store's grid and in its units, float32; NaN refused."""
        if self.rows is not None:
            values = values[:, self.rows[:, None], self.cols[None, :]]
        source = self.fields[name]
        if source.source_scale != 1.0:
            values = values * np.float32(source.source_scale)
        if (source.scale, source.offset) != (1.0, 0.0):
            values = values * np.float32(source.scale) + np.float32(source.offset)
        if not np.isfinite(values.sum()):
            raise DataError(f"{self.url}: NaN in {name} ({what}); the store's fields must be complete")
        return np.ascontiguousarray(values, np.float32)

    def _grid(self) -> tuple[int, int]:
        if self.rows is not None:
            return len(self.rows), len(self.cols)
        return self.dataset.sizes["lat"], self.dataset.sizes["lon"]


class StreamedField:
    """One variable of one shard of a streamed store, indexed as a shard's ``[T, 1, H, W]`` array
    (an integer, a slice or an array of steps first); nothing is read before it is indexed."""

    def __init__(self, shard: StreamedShard, name: str):
        self.shard, self.name = shard, name
        self.shape = (shard.steps, 1, *shard.store.grid)
        self.dtype, self.ndim = np.dtype(np.float32), 4

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        steps = np.arange(self.shape[0])[key[0]]  # ints, slices and arrays as numpy takes them
        values = self.shard.values(self.name, np.atleast_1d(steps))[:, None]  # [n, 1, H, W]
        if np.ndim(steps) == 0:
            return values[0][key[1:]]
        return values[(slice(None), *key[1:])]

    def __array__(self, dtype=None, copy=None):
        values = self[:]
        return values if dtype is None else values.astype(dtype)


@dataclass
class StreamedShard:
    """One shard of a streamed store: ``steps`` consecutive steps of the store, read from the source.

    Attributes
    ----------
    path : PurePosixPath
        ``URL#SPLIT/YEAR_I``: a name (its stem is the shard's, as for a file).
    steps : int
    store : StreamedStore
    split : str
    number : int
        Its place in the split.
    """

    path: PurePosixPath
    steps: int
    store: StreamedStore
    split: str
    number: int
    checksum: str | None = None
    verified: bool = True

    def array(self, variable: str) -> StreamedField:
        return StreamedField(self, variable)

    def verify(self) -> None:
        """Nothing to verify: the source is read through its own store."""

    def read(self, variables: list[str], t: int) -> np.ndarray:
        """Fields ``[V, H, W]`` at step ``t``."""
        return np.stack([self.array(v)[t, 0] for v in variables])

    @property
    def index(self) -> np.ndarray:
        """The source's time positions of the shard's steps ``[T]``."""
        return self.store.source_index(self.split)[self.number]

    def values(self, variable: str, steps: np.ndarray) -> np.ndarray:
        """``variable`` at the shard's ``steps`` ``[n]``: ``[n, H, W]``."""
        return self.store.reader.read(variable, self.index[steps])

    def prefetch(self, variables: Sequence[str], steps: np.ndarray, wait: bool = True) -> None:
        """Fetch in parallel the chunks holding ``variables`` at ``steps`` (before gathering a batch,
        or, without ``wait``, for a later one)."""
        fields = self.store.reader.fields
        self.store.reader.prefetch([v for v in variables if v in fields], self.index[steps], wait)


#: One reader (and its caches) per side folder and process, shared by every split's store.
_READERS: dict[tuple[str, float, int], ChunkReader] = {}
_READERS_LOCK = threading.Lock()


class StreamedStore(ShardStore):
    """A side folder (see the module docstring): a store whose shards are read from its source.

    Parameters
    ----------
    root : str or Path
        The side folder.
    hours_per_step : float, optional
        As for :class:`.store.ShardStore`.
    cache_gb : float, optional
        The chunk cache on local disk, GB (``None`` or 0: none), in :func:`stream_folder` of the source.
    memory_gb : float, optional
        Decoded chunks kept in memory, GB (default :data:`MEMORY_BYTES`): hold the data of the
        run here and every epoch after the first reads from memory.
    """

    fetches = True

    def __init__(
        self,
        root: str | Path,
        hours_per_step: float | None = None,
        cache_gb: float | None = None,
        memory_gb: float | None = None,
    ):
        super().__init__(root, hours_per_step)
        self.stream = self.manifest["stream"]
        self.url = self.stream["url"]
        self.cache_gb = float(cache_gb or 0)
        self.memory_bytes = MEMORY_BYTES if memory_gb is None else int(float(memory_gb) * 1e9)
        self._reader_key = (str(self.root.resolve()), self.cache_gb, self.memory_bytes)
        self._index: dict[str, list[np.ndarray]] = {}

    @property
    def reader(self) -> ChunkReader:
        """The source, opened on first use (once per process and side folder)."""
        key = self._reader_key
        with _READERS_LOCK:
            if key not in _READERS:
                # per side folder too: two of one source may convert a field differently
                folder = stream_folder(self.url) / "chunks" / self.fingerprint[:12]
                cache = ChunkCache(self.memory_bytes, folder, disk_bytes=int(self.cache_gb * 1e9))
                fields = {name: FieldSource(**spec) for name, spec in self.stream["fields"].items()}
                rows, cols = self.stream.get("rows"), self.stream.get("cols")
                options = self.stream.get("storage_options")
                _READERS[key] = ChunkReader(self.url, fields, self.lat, rows, cols, options, cache)
            return _READERS[key]

    @cached_property
    def chunk_steps(self) -> int:
        """The store's steps in the shortest chunk of its source along time (at least 1)."""
        reader = self.reader
        stamps = reader.dataset.time.values[:2]
        source_hours = (stamps[1] - stamps[0]) / np.timedelta64(1, "h") if stamps.size == 2 else self.hours_per_step
        timed = [n for n in reader.fields if not reader.is_constant(n)]
        length = min((reader.chunk_length(n) for n in timed), default=1)
        return max(1, int(length * source_hours // self.hours_per_step))

    def shards(self, split: str) -> list[StreamedShard]:
        listed = self.stream["shards"].get(split)
        if not listed:
            raise StoreError(f"{self.root}: no shards of split {split} (it has {sorted(self.stream['shards'])})")
        return [
            StreamedShard(PurePosixPath(f"{self.url}#{split}") / name, int(steps), self, split, i)
            for i, (name, steps) in enumerate(listed)
        ]

    def source_index(self, split: str) -> list[np.ndarray]:
        """Per shard of ``split``, the source's time positions of its steps."""
        if split not in self._index:
            self._index[split] = [self.reader.time_index(t) for t in self.shard_times(split)]
        return self._index[split]

    def __getstate__(self):
        return {**self.__dict__, "_index": {}}
