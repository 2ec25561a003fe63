# SPDX-License-Identifier: Apache-2.0
"""Warnings of dependencies that tell a user nothing, held back unless debugging.

Two messages reach every ``climax`` command on a machine without a GPU:

* Warp (imported by PhysicsNeMo) prints "Could not find or load the NVIDIA
  CUDA driver" from C when it initialises. :func:`init_warp` initialises it
  first with the C ``stderr`` captured; that one line is held back and
  anything else Warp says is passed on.
* PhysicsNeMo's ``DistributedManager`` warns "Could not initialize using ENV,
  SLURM or OPENMPI methods" for every single-process job.
  :func:`single_process_warning_filter` filters it where the engine sets the
  process group up.

Both are shown when debugging: ``climax --debug`` or ``CLIMAX_DEBUG=1``
(:func:`debugging`). ``climax doctor`` reports the GPU and driver either way.
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from contextlib import contextmanager

#: The Warp line held back (it is C output, not a Python warning).
WARP_NO_DRIVER = "Warp CUDA warning: Could not find or load the NVIDIA CUDA driver"
#: The start of PhysicsNeMo's warning for a job launched without torchrun, SLURM or MPI.
SINGLE_PROCESS = "Could not initialize using ENV, SLURM or OPENMPI methods"

#: What :func:`init_warp` held back, for :func:`replay`.
held_back: list[str] = []


def debugging() -> bool:
    """Whether dependency warnings are shown: ``CLIMAX_DEBUG`` set to anything but ``0``
    (``climax --debug`` sets it, so ranks and workers it starts see it too)."""
    return os.environ.get("CLIMAX_DEBUG", "") not in ("", "0")


def init_warp() -> None:
    """Initialise Warp (when installed) with its driver line held back; a no-op once
    Warp is initialised, and when debugging (Warp then prints as usual)."""
    try:
        import warp
    except ImportError:
        return
    if debugging():
        warp.init()
        return
    warp.config.log_level = warp.LOG_WARNING  # no greeting: the level PhysicsNeMo sets after its init
    captured: list[str] = []
    try:
        with _captured_stderr(captured):
            warp.init()
    except OSError:  # no file descriptor 2 or no temporary file (a daemon, a read-only /tmp): print as usual
        warp.init()
    lines = "".join(captured).splitlines(keepends=True)
    held_back.extend(line for line in lines if line.startswith(WARP_NO_DRIVER))
    passed_on = "".join(line for line in lines if not line.startswith(WARP_NO_DRIVER))
    if passed_on:
        sys.stderr.write(passed_on)


def replay() -> None:
    """Print what was held back (``climax --debug``, where the import came first)."""
    for line in held_back:
        sys.stderr.write(line)


@contextmanager
def _captured_stderr(into: list[str]):
    """The process's file descriptor 2 sent to a temporary file while the block runs
    (C writes there, below Python's ``sys.stderr``); its text is appended to ``into``."""
    with tempfile.TemporaryFile(mode="w+") as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            into.append(sink.read())


@contextmanager
def single_process_warning_filter():
    """PhysicsNeMo's single-process warning filtered while the block runs, unless debugging."""
    with warnings.catch_warnings():
        if not debugging():
            warnings.filterwarnings("ignore", message=SINGLE_PROCESS)
        yield
