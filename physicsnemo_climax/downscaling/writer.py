# SPDX-License-Identifier: Apache-2.0
"""The generation file, written block by block in a thread while the next block is drawn.

:class:`GenerationWriter` creates the file's layout (see
:mod:`.generation`) with an unlimited ``time`` dimension, then appends each
:class:`Block` that generation hands it through a bounded queue
(:data:`QUEUE_BLOCKS` blocks), so compute and I/O overlap and memory holds a
few blocks whatever the number of times. An error in the writer thread is
raised in the caller at its next :meth:`~GenerationWriter.put` or at the end.

The file is written to a hidden temporary name beside the target
(``.<stem>.tmp<pid>-<host>.nc``, by :func:`..files.atomic_path`) and renamed only
when every block is in; an interrupted run removes it, and leaves no final
file. After each block the file is flushed, so the partial file can be opened
read-only (``xarray.open_dataset``, ``ncdump``) to follow progress: it then
holds the blocks written so far. It is written with h5py without an HDF5 file
lock, so such a reader cannot block the writer.

HDF5 may leave the process in a broken state when a write hits a full disk
(see :func:`..files.write_netcdf`), so each block is checked against the free
space first and a full disk stops the run with an :class:`..errors.OutputError`.
"""

from __future__ import annotations

import errno
import queue
import shutil
import threading
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import h5netcdf
import numpy as np
import pandas as pd
import torch

from ..errors import DataError
from ..files import FULL_DISK_BYTES, atomic_path
from .domain import Domain

#: Blocks waiting for the writer at most; the drawing of the next one waits beyond.
QUEUE_BLOCKS = 2
#: CF time units of the ``time`` coordinate (the upstream recipe counts hours from the same day).
TIME_UNITS = "seconds since 1990-01-01 00:00:00"


@dataclass
class Block:
    """Consecutive times of a generation, as the networks give them (normalized units).

    Attributes
    ----------
    times : np.ndarray
        ``[t]`` valid times (datetime64).
    inputs : torch.Tensor
        ``[t, C_in, H, W]`` network inputs (coarse upsampled, then invariants).
    mean : torch.Tensor or None
        ``[t, C_out, H, W]`` regression mean (``None`` in diffusion-only generation).
    members : torch.Tensor
        ``[N, t, C_out, H, W]`` ensemble, members in seed order.
    truth : np.ndarray, optional
        ``[t, C_out, H, W]`` fine target in physical units.
    lead_time : np.ndarray, optional
        ``[t]`` leads (timedelta64) when the input was a forecast.
    domain : Domain, optional
        The statistics the block's nets were trained with, which bring it to physical units
        (default the writer's; pairs of nets per lead range may differ: :mod:`.nets_by_lead`).
    """

    times: np.ndarray
    inputs: torch.Tensor
    mean: torch.Tensor | None
    members: torch.Tensor
    truth: np.ndarray | None = None
    lead_time: np.ndarray | None = None
    domain: Domain | None = None


class GenerationWriter:
    """Append :class:`Block` s to a generation file in a background thread.

    Use as a context manager; on a clean exit the file is complete and renamed
    to ``path``, on an exception it is removed.

    Parameters
    ----------
    path : str or Path
        The final file.
    domain : Domain
        Channel names, statistics (to physical units) and ``lat``/``lon``.
    members : int
        Ensemble size ``N``.
    truth, lead_time : bool
        Whether blocks carry a truth, and leads.
    regression : bool
        Whether blocks carry a regression mean (not in diffusion-only generation: no ``regression`` group).
    attrs : dict, optional
        More attributes of the file (the seeds).
    """

    def __init__(
        self,
        path: str | Path,
        domain: Domain,
        members: int,
        truth: bool = True,
        lead_time: bool = False,
        regression: bool = True,
        attrs: dict | None = None,
    ):
        self.path, self.domain, self.members, self.attrs = Path(path), domain, int(members), dict(attrs or {})
        self.truth, self.lead_time, self.regression = truth, lead_time, regression
        self.written = 0
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_BLOCKS)
        self._error: BaseException | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------ the caller's side
    def __enter__(self) -> GenerationWriter:
        self._stack = ExitStack()
        self.tmp = self._stack.enter_context(atomic_path(self.path))
        try:
            self._file = h5netcdf.File(self.tmp, "w", locking=False)
            self._layout()
        except BaseException as err:
            self._close_file()
            self._stack.__exit__(type(err), err, err.__traceback__)
            raise
        self._thread = threading.Thread(target=self._run, name="generation-writer", daemon=True)
        self._thread.start()
        return self

    def put(self, block: Block) -> None:
        """Queue ``block`` for writing; waits while :data:`QUEUE_BLOCKS` are queued.

        Raises
        ------
        BaseException
            The writer thread's error, if it failed.
        """
        while True:
            self._raise_error()
            try:
                self._queue.put(block, timeout=0.1)
                return
            except queue.Full:
                continue

    def __exit__(self, kind, error, trace) -> bool:
        if error is None:
            self._send_end()
        else:
            self._stop.set()
            self._drain()
        self._thread.join()
        self._close_file()
        if error is None and self._error is not None:  # the writer failed: clean up, then raise its error
            failed = self._error
            if not self._stack.__exit__(type(failed), failed, failed.__traceback__):
                raise failed
            return False
        return bool(self._stack.__exit__(kind, error, trace))

    def _send_end(self) -> None:
        while self._thread.is_alive():
            try:
                self._queue.put(None, timeout=0.1)
                return
            except queue.Full:
                continue

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _drain(self) -> None:
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._queue.put(None)

    def _close_file(self) -> None:
        if getattr(self, "_file", None) is not None:
            try:
                self._file.close()
            finally:
                self._file = None

    # ------------------------------------------------------------ the writer thread
    def _run(self) -> None:
        while True:
            block = self._queue.get()
            if block is None or self._stop.is_set():
                return
            try:
                self._append(block)
            except BaseException as err:  # handed to the caller
                self._error = err
                return

    def _layout(self) -> None:
        """Dimensions, coordinates, attributes and the (empty) variables of every group."""
        f, d = self._file, self.domain
        f.dimensions = {"time": None, "ensemble": self.members, "y": d.shape[0], "x": d.shape[1]}
        f.attrs.update(source="physicsnemo-climax CorrDiff", factor=d.factor, **self.attrs)
        time = f.create_variable("time", ("time",), "i8", chunks=(1024,))
        time.attrs.update(units=TIME_UNITS, calendar="standard", standard_name="time")
        if self.lead_time:
            lead = f.create_variable("lead_time", ("time",), "i8", chunks=(1024,))
            lead.attrs.update(units="seconds", dtype="timedelta64[ns]", long_name="lead time")
        f.create_variable("ensemble", ("ensemble",), "i8", data=np.arange(self.members))
        for name, values, unit in (("lat", d.lat, "degrees_north"), ("lon", d.lon, "degrees_east")):
            values = np.full(d.shape, np.nan) if values is None else values  # unknown: NaN, as upstream
            var = f.create_variable(name, ("y", "x"), "f4", data=np.asarray(values, np.float32))
            var.attrs.update(standard_name={"lat": "latitude", "lon": "longitude"}[name], units=unit)
        for group, names, dims in self._groups():
            g = f.create_group(group)
            chunks = (1,) * (len(dims) - 2) + tuple(d.shape)
            units = d.units.get("input" if group == "input" else "output", {})
            for name in names:
                var = g.create_variable(name, dims, "f4", chunks=chunks)
                if units.get(name):
                    var.attrs["units"] = units[name]
        f.flush()
        f._h5file.flush()

    def _groups(self) -> list[tuple[str, list[str], tuple[str, ...]]]:
        d, field = self.domain, ("time", "y", "x")
        groups = [("input", d.input_channels, field)] + (
            [("regression", d.output_variables, field)] if self.regression else []
        )
        groups += [("prediction", d.output_variables, ("ensemble", *field))]
        return groups + ([("truth", d.output_variables, field)] if self.truth else [])

    def _append(self, block: Block) -> None:
        """Write ``block`` after the times already written, channel by channel, then flush."""
        if block.members.shape[0] != self.members:
            raise ValueError(f"a block of {block.members.shape[0]} members for a file of {self.members}")
        parts = (
            (block.inputs, block.members)
            + ((block.mean,) if self.regression else ())
            + ((block.truth,) if self.truth else ())
        )
        self._check_space(4 * sum(int(np.prod(a.shape)) for a in parts))  # written as float32
        start, count = self.written, len(block.times)
        self._file.resize_dimension("time", start + count)
        at = slice(start, start + count)
        self._file["time"][at] = _seconds(pd.to_datetime(block.times) - pd.Timestamp("1990-01-01"))
        if self.lead_time:
            self._file["lead_time"][at] = _seconds(pd.to_timedelta(block.lead_time))
        for group, names, _ in self._groups():
            variables = self._file.groups[group].variables
            for k, name in enumerate(names):
                if group == "prediction":
                    variables[name][:, at] = self._physical(group, block, k)
                else:
                    variables[name][at] = self._physical(group, block, k)
        self._file.flush()
        self._file._h5file.flush()  # h5netcdf's flush writes its metadata only; HDF5's makes the file readable
        self.written += count

    def _physical(self, group: str, block: Block, k: int) -> np.ndarray:
        """Channel ``k`` of ``group`` in physical units, float32 (one channel at a time: no copy of the block)."""
        d = block.domain or self.domain
        if group == "truth":
            return np.asarray(block.truth[:, k], np.float32)
        if group == "input":
            return block.inputs[:, k].float().numpy() * d.input_std[k] + d.input_mean[k]
        field = block.mean[:, k] if group == "regression" else block.members[:, :, k]
        return field.float().numpy() * d.output_std[k] + d.output_mean[k]

    def _check_space(self, need: int) -> None:
        free = shutil.disk_usage(self.tmp.parent).free
        if free < need + FULL_DISK_BYTES:
            raise OSError(
                errno.ENOSPC, f"No space left on device for the next {need} bytes (block at time index {self.written})"
            )


def _seconds(delta) -> np.ndarray:
    """Whole seconds of a pandas timedelta index (a finer part is an error: the file stores seconds)."""
    ns = np.asarray(pd.to_timedelta(delta)).astype("timedelta64[ns]").astype(np.int64)
    if (ns % 10**9).any():
        raise DataError(f"times with a fraction of a second cannot be written: {list(pd.to_timedelta(delta))}")
    return ns // 10**9
