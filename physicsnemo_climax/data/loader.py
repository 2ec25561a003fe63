# SPDX-License-Identifier: Apache-2.0
"""Batches from one or more forecast sources, sharded over ranks and workers.

Each epoch every source's samples are shuffled from ``(seed, epoch)`` alone,
so all ranks agree on the order without communicating. Rank ``r`` of ``R``
takes positions ``r, r + R, ...``; worker ``w`` of ``W`` within a rank takes
every ``W``-th of those. Nothing is repeated, so an evaluation epoch covers
every sample exactly once however the counts divide. For training
(``even=True``) each source is first cut to a multiple of ``R`` (the cut part
changes every epoch), so every rank runs the same number of batches and
DDP's collectives never wait on a rank that has run out.

A source read over the network (a streamed store, :mod:`.streamed`) shuffles
in blocks (``block``: its chunk length): whole blocks of consecutive samples
are put in random order, then the samples of every :data:`WINDOW` blocks
are shuffled among themselves. A batch then needs the chunks of a few blocks,
which the next batches reuse, instead of a chunk per sample; and the loader
asks for the chunks of the batches after the ones it reads
(:data:`LOOKAHEAD`), so that they arrive while the model trains.

Several sources (different variable sets, e.g. ERA5 and CMIP6 models) mix in
one run on any number of ranks: every batch comes from one source (ClimaX
takes one variable list per batch) and batches of different sources are
interleaved in a seeded random order.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..errors import ConfigError
from .reader import ClimaXShardReader

logger = logging.getLogger(__name__)

#: Blocks whose samples are shuffled together in a block shuffle.
WINDOW = 4
#: Batches ahead of the ones being read whose chunks a loader asks for (without waiting).
LOOKAHEAD = 8


def partition(
    n: int,
    rank: int,
    world: int,
    worker: int = 0,
    workers: int = 1,
    seed: int = 0,
    epoch: int = 0,
    shuffle: bool = True,
    even: bool = False,
    block: int = 1,
) -> np.ndarray:
    """Sample indices of one (rank, worker) for one epoch.

    Parameters
    ----------
    n : int
        Samples in the source.
    rank, world : int
        This rank and the number of ranks.
    worker, workers : int
        This data-loading worker and the number of workers per rank.
    seed, epoch : int
        Shuffle seed; the order depends on nothing else.
    shuffle : bool
        Shuffle (training) or keep the natural order (evaluation).
    even : bool
        Cut to a multiple of ``world`` so every rank gets ``n // world``.
    block : int
        Shuffle whole blocks of this many consecutive samples, then samples within
        every :data:`WINDOW` blocks (:func:`block_order`); 1: every sample alone.
    """
    if not (0 <= rank < world and 0 <= worker < workers):
        raise ValueError(f"rank {rank}/{world}, worker {worker}/{workers} out of range")
    order = np.arange(n)
    if shuffle:
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(n) if block <= 1 else block_order(n, block, rng)
    if even:
        order = order[: (n // world) * world]
    return order[rank::world][worker::workers]


def block_order(n: int, block: int, rng: np.random.Generator) -> np.ndarray:
    """The ``n`` samples in a chunk-friendly random order: blocks of ``block`` consecutive samples
    in random order, then the samples of every :data:`WINDOW` blocks shuffled among themselves."""
    starts = rng.permutation(np.arange(0, n, block))
    windows = [
        rng.permutation(np.concatenate([np.arange(s, min(s + block, n)) for s in starts[g : g + WINDOW]]))
        for g in range(0, len(starts), WINDOW)
    ]
    return np.concatenate(windows) if windows else np.arange(0)


@dataclass
class Batch:
    """A batch of forecast samples from one source.

    Attributes
    ----------
    x : torch.Tensor
        ``[B, V, H, W]``.
    y : torch.Tensor
        ``[B, V_out, H, W]`` or ``[B, S, V_out, H, W]``.
    lead_time : torch.Tensor
        ``[B]`` hours.
    variables, out_variables : list of str
    source : int
        Which source it came from.
    index : torch.Tensor
        ``[B]`` sample indices within the source.
    time : torch.Tensor, optional
        ``[B]`` float64 initial times, seconds since 1970 (what forcings are computed from).
    """

    x: torch.Tensor
    y: torch.Tensor
    lead_time: torch.Tensor
    variables: list[str]
    out_variables: list[str]
    source: int
    index: torch.Tensor
    time: torch.Tensor | None = None

    def _map(self, fn) -> Batch:
        return replace(
            self,
            x=fn(self.x),
            y=fn(self.y),
            lead_time=fn(self.lead_time),
            time=None if self.time is None else fn(self.time),
        )

    def to(self, device, non_blocking: bool = True) -> Batch:
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Batch:
        return self._map(torch.Tensor.pin_memory)


class ForecastBatches(IterableDataset):
    """Batches of one epoch for this rank, split among DataLoader workers.

    Parameters
    ----------
    sources : sequence of ClimaXShardReader
        One or more sources; each batch comes from one of them.
    batch_size : int
        Samples per batch (the last batch of a worker and source may be smaller
        unless ``drop_last``).
    rank, world : int
        Distributed position (e.g. from ``DistributedManager``).
    seed : int
        Shuffling and random-lead seed.
    shuffle, even, drop_last : bool
        See :func:`partition`; ``drop_last`` drops incomplete batches.
    """

    def __init__(
        self,
        sources: Sequence[ClimaXShardReader],
        batch_size: int,
        rank: int = 0,
        world: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        even: bool = True,
        drop_last: bool = False,
    ):
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.sources = list(sources)
        if not self.sources:
            raise ConfigError("at least one source is needed")
        self.batch_size, self.rank, self.world = batch_size, rank, world
        self.seed, self.shuffle, self.even, self.drop_last = seed, shuffle, even, drop_last
        self.epoch = 0
        for source in self.sources:
            source.set_generator(torch.Generator().manual_seed(seed))

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch (shuffle order and random leads)."""
        self.epoch = epoch
        for source in self.sources:
            source.set_epoch(epoch)

    def plan(self, worker: int = 0, workers: int = 1) -> list[tuple[int, np.ndarray]]:
        """``(source, sample indices)`` of each batch of this epoch, in order."""
        batches = []
        for s, source in enumerate(self.sources):
            idx = partition(
                len(source),
                self.rank,
                self.world,
                worker,
                workers,
                self.seed + s,
                self.epoch,
                self.shuffle,
                self.even,
                source.shuffle_block,
            )
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start : start + self.batch_size]
                if len(chunk) == self.batch_size or not self.drop_last:
                    batches.append((s, chunk))
        if len(self.sources) > 1 and self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch, self.rank, worker]).permutation(len(batches))
            batches = [batches[i] for i in order]
        return batches

    def num_batches(self, workers: int = 1) -> int:
        """Batches in this epoch on this rank when read by ``workers`` workers."""
        return sum(len(self.plan(w, workers)) for w in range(workers))

    def load(self, source: int, indices: np.ndarray) -> Batch:
        """Read and collate one batch."""
        reader = self.sources[source]
        arrays = reader.read_batch(indices)
        return Batch(
            x=torch.from_numpy(arrays["x"]),
            y=torch.from_numpy(arrays["y"]),
            lead_time=torch.from_numpy(arrays["lead_time"]),
            variables=reader.variables,
            out_variables=reader.out_variables,
            source=source,
            index=torch.as_tensor(indices),
            time=torch.from_numpy(arrays["time"]),
        )

    def warm(self, source: int, indices: np.ndarray) -> None:
        """Ask for the chunks of a later batch without waiting (streamed sources; others ignore it)."""
        self.sources[source].warm(indices)

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        for source, indices in self.plan(worker, workers):
            yield self.load(source, indices)


def _round_robin(plans: list[list]) -> list:
    """Items of several lists taken in turn, skipping exhausted ones (torch's worker order)."""
    out = []
    for k in range(max(map(len, plans), default=0)):
        out += [plan[k] for plan in plans if k < len(plan)]
    return out


class ThreadedLoader:
    """Batches read by worker threads of the main process.

    Reading is memory-mapped gathers and numpy copies, which release the GIL,
    so threads read in parallel without the inter-process copy that
    ``DataLoader`` worker processes pay for every batch (see
    ``docs/performance.md``). Batches come in the same order as from a
    ``DataLoader`` with as many worker processes.

    Parameters
    ----------
    batches : ForecastBatches
    num_workers : int
        Reading threads.
    prefetch : int
        Batches in flight per thread.
    pin_memory : bool
        Page-locked batches (pinned by the reading threads), so that copies
        to a GPU are asynchronous instead of waiting for the device.
    """

    def __init__(self, batches: ForecastBatches, num_workers: int = 2, prefetch: int = 2, pin_memory: bool = False):
        self.batches, self.num_workers, self.prefetch = batches, max(1, num_workers), prefetch
        self.pin_memory = pin_memory

    def _load(self, source: int, indices) -> Batch:
        batch = self.batches.load(source, indices)
        return batch.pin_memory() if self.pin_memory else batch

    def __len__(self) -> int:
        return self.batches.num_batches(self.num_workers)

    def __iter__(self):
        workers = self.num_workers
        plan = _round_robin([self.batches.plan(w, workers) for w in range(workers)])
        with ThreadPoolExecutor(workers) as pool:
            pending: deque = deque()
            for k, item in enumerate(plan):
                if k + LOOKAHEAD < len(plan):
                    self.batches.warm(*plan[k + LOOKAHEAD])
                pending.append(pool.submit(self._load, *item))
                if len(pending) >= workers * self.prefetch:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()


def make_loader(batches: ForecastBatches, num_workers: int = 2, backend: str = "threads", pin_memory: bool = False):
    """An iterable of :class:`Batch` es for one epoch at a time.

    Parameters
    ----------
    batches : ForecastBatches
        Call ``batches.set_epoch(e)`` before iterating each epoch.
    num_workers : int
        Reading threads or processes; 0 reads in the main thread.
    backend : {"threads", "processes"}
        :class:`ThreadedLoader`, or a torch ``DataLoader`` with worker
        processes (started per epoch so that they see the epoch).
    pin_memory : bool
        Page-locked batches, for asynchronous copies to a GPU.
    """
    if backend == "threads" and num_workers > 0:
        return ThreadedLoader(batches, num_workers, pin_memory=pin_memory)
    if backend not in ("threads", "processes"):
        raise ConfigError(f"backend must be 'threads' or 'processes', got {backend!r}")
    return DataLoader(
        batches,
        batch_size=None,
        num_workers=num_workers,
        pin_memory=pin_memory,
        prefetch_factor=2 if num_workers > 0 else None,
    )
