# SPDX-License-Identifier: Apache-2.0
"""Dependency warnings that tell a CPU user nothing stay out of a command's output,
and come back when debugging (``physicsnemo_climax.dependency_warnings``)."""

import os
import subprocess
import sys

import pytest
import torch

from physicsnemo_climax.dependency_warnings import SINGLE_PROCESS, WARP_NO_DRIVER

LAUNCHERS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "CLIMAX_DEBUG")


def run(code: str, debug: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHERS}
    if debug:
        env["CLIMAX_DEBUG"] = "1"
    return subprocess.run(
        [sys.executable, "-W", "default", "-c", code], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="Warp finds a CUDA driver here")
def test_warps_no_driver_line_is_held_back_unless_debugging():
    quiet, loud = (run("import physicsnemo_climax.cli", debug) for debug in (False, True))
    assert quiet.returncode == 0 and loud.returncode == 0
    assert WARP_NO_DRIVER not in quiet.stderr and quiet.stderr.strip() == ""
    assert WARP_NO_DRIVER in loud.stderr


def test_the_debug_flag_prints_what_the_import_held_back(capsys):
    from physicsnemo_climax import cli, dependency_warnings

    held = list(dependency_warnings.held_back)
    dependency_warnings.held_back[:] = [f"{WARP_NO_DRIVER}. (test)\n"]
    try:
        cli.main(["--debug", "demo", "--depth", "1", "--embed-dim", "32", "--num-heads", "2", "--batch", "1"])
    finally:
        dependency_warnings.held_back[:] = held
    assert f"{WARP_NO_DRIVER}. (test)" in capsys.readouterr().err
    assert "CLIMAX_DEBUG" not in os.environ  # the flag holds for the command only


def test_single_process_warning_is_held_back_unless_debugging():
    code = "from physicsnemo_climax.engine.distributed import setup_distributed; print(setup_distributed().world_size)"
    quiet, loud = (run(code, debug) for debug in (False, True))
    assert quiet.stdout.split()[-1] == loud.stdout.split()[-1] == "1"  # one process either way
    assert SINGLE_PROCESS not in quiet.stderr
    assert SINGLE_PROCESS in loud.stderr


def test_without_a_temporary_file_warp_initialises_as_usual(monkeypatch):
    import tempfile

    import warp

    from physicsnemo_climax import dependency_warnings

    calls = []
    monkeypatch.setattr(warp, "init", lambda: calls.append("init"))
    monkeypatch.delenv("CLIMAX_DEBUG", raising=False)

    def no_file(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", no_file)
    dependency_warnings.init_warp()  # no error: the package still imports
    assert calls == ["init"]
