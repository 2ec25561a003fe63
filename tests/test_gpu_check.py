# SPDX-License-Identifier: Apache-2.0
"""The GPU check's whole flow on the CPU, as the bare GPU machine would run it.

The wheelhouse is built as ``benchmarks/gpu_wheelhouse.sh`` builds it (for
this Python), installed by ``benchmarks/gpu_run.sh`` into a folder of its
own, and the check runs with ``--device cpu --quick`` while every module that
is neither on the GPU machine's image (``benchmarks/gpu_image.txt``) nor in
the wheelhouse is blocked: a wheel missing from ``gpu_wheels.txt`` fails here,
not on the metered GPU.
"""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))

import wheelhouse  # noqa: E402

BLOCKER = """
import importlib.machinery, os, sys
BLOCKED = {blocked!r}


def _blocked(spec):
    places = [spec.origin] if spec.origin else list(spec.submodule_search_locations or [])
    return bool(places) and all(any(p == b or p.startswith(b + os.sep) for b in BLOCKED) for p in places)


class OnlyTheGpuImage(importlib.machinery.PathFinder):
    # the path finder, blind to files of distributions the GPU machine lacks (a copy that
    # another package vendors stays visible)
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        for entry in (sys.path if path is None else path):
            spec = super().find_spec(name, [entry], target)
            if spec is not None and not _blocked(spec):
                return spec
        return None


sys.meta_path[:] = [OnlyTheGpuImage if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
"""


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def listed(path: Path) -> set[str]:
    words = [line.split("#")[0].split() for line in path.read_text().splitlines()]
    return {normalized(w[0]) for w in words if w}


def blocked_paths() -> list[str]:
    """Where the files of distributions installed here that the GPU machine would not have
    lie: for each file, its shortest folder or module that no distribution it has shares
    (``dinosaur_torch``; ``nvidia/dali`` inside the ``nvidia`` namespace of the CUDA libraries;
    nothing of what setuptools vendors, whose own record lists those files)."""
    import setuptools  # noqa: F401  (puts its vendored distributions in sight, as in any later process)

    allowed = listed(BENCH / "gpu_image.txt") | listed(BENCH / "gpu_wheels.txt") | {"physicsnemo-climax"}
    dists = list(metadata.distributions())
    kept = [normalized(d.metadata["Name"]) in allowed for d in dists]
    shared = set()
    for dist in (d for d, keep in zip(dists, kept) if keep):
        for file in dist.files or []:
            path = Path(os.path.normpath(dist.locate_file(file)))
            shared.update([path, *path.parents])
    blocked = set()
    for dist in (d for d, keep in zip(dists, kept) if not keep):
        root = Path(os.path.normpath(dist.locate_file("")))
        for file in dist.files or []:
            if file.parts[0].endswith((".dist-info", ".data")) or ".." in file.parts:
                continue
            path = Path(os.path.normpath(dist.locate_file(file)))
            mine = next(
                (
                    p
                    for p in [*reversed(path.parents), path]
                    if p.is_relative_to(root) and p != root and p not in shared
                ),
                None,
            )
            if mine is not None and not mine.name.startswith("__"):  # a shared namespace's __init__ stays
                blocked.add(str(mine))
    return sorted(blocked)


@pytest.fixture(scope="module")
def gpu_image(tmp_path_factory):
    """Environment variables that make this Python look like the GPU machine's."""
    folder = tmp_path_factory.mktemp("gpu_image")
    (folder / "sitecustomize.py").write_text(BLOCKER.format(blocked=blocked_paths()))
    return dict(os.environ, PYTHONPATH=str(folder), PYTHON=sys.executable)


def test_the_image_blocks_what_the_gpu_machine_lacks(gpu_image):
    """The simulation itself: a module off the image fails, one on it imports."""
    ends = {Path(p).name for p in blocked_paths()}
    assert {"dinosaur_torch", "dali"} <= ends and not {"torch", "xarray", "nvidia"} & ends
    run = subprocess.run(
        [sys.executable, "-c", "import xarray, torch, setuptools; import dinosaur_torch"],
        env=gpu_image,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1 and "No module named 'dinosaur_torch'" in run.stderr
    run = subprocess.run([sys.executable, "-c", "import nvidia.dali"], env=gpu_image, capture_output=True, text=True)
    assert run.returncode == 1 and "No module named 'nvidia.dali'" in run.stderr


def fake_wheel(path: Path) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("warp/__init__.py", "x = 1\n")
        z.writestr("warp/bin/warp.so", b"\0" * 1000)
        z.writestr("warp/bin/warp-clang.so", b"\1" * 1000)
        z.writestr("warp/examples/a.py", "")
        z.writestr(
            "warp-1.0.dist-info/RECORD",
            "warp/__init__.py,,\nwarp/bin/warp.so,,\n"
            "warp/bin/warp-clang.so,,\nwarp/examples/a.py,,\nwarp-1.0.dist-info/RECORD,,\n",
        )
    return path


def test_slim_drops_the_unused_members_and_stores_the_rest(tmp_path):
    wheel = fake_wheel(tmp_path / "warp_lang-1.0-py3-none-any.whl")
    wheelhouse.slim(wheel)
    with zipfile.ZipFile(wheel) as z:
        assert sorted(z.namelist()) == ["warp-1.0.dist-info/RECORD", "warp/__init__.py", "warp/bin/warp.so"]
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_STORED}
        assert z.read("warp/bin/warp.so") == b"\0" * 1000
        assert z.read("warp-1.0.dist-info/RECORD").decode().split() == [
            "warp/__init__.py,,",
            "warp/bin/warp.so,,",
            "warp-1.0.dist-info/RECORD,,",
        ]


def test_pack_and_unpack_round_trip_and_name_missing_parts(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    payload = {f"p{i}-1.0-py3-none-any.whl": os.urandom(3000) for i in range(3)}  # incompressible
    for name, data in payload.items():
        (wheels / name).write_bytes(data)
    parts = wheelhouse.pack(wheels, tmp_path / "whl", part_mib=4000 / 2**20, level=0)
    assert len(parts) == 3  # ~9 kB of random bytes in parts of 4000 bytes
    out = wheelhouse.unpack(tmp_path / "whl", tmp_path / "out")
    assert {p.name: p.read_bytes() for p in out} == payload

    (parts[1] / wheelhouse.CHUNK).write_bytes(b"damaged")
    (parts[2] / wheelhouse.CHUNK).unlink()
    with pytest.raises(SystemExit, match=r"whl/2 \(damaged\), .*whl/3 \(missing\)"):
        wheelhouse.unpack(tmp_path / "whl", tmp_path / "out2")


def test_pins_are_the_versions_installed_here(tmp_path):
    listing = tmp_path / "wheels.txt"
    listing.write_text("# comment\ntorch   # the framework\nantlr4-python3-runtime [build]\n")
    assert wheelhouse.pins(listing) == [f"torch=={metadata.version('torch')}"]
    assert wheelhouse.pins(listing, build=True) == [
        f"antlr4-python3-runtime=={metadata.version('antlr4-python3-runtime')}"
    ]
    listing.write_text("no-such-distribution-here\n")
    with pytest.raises(SystemExit, match="no-such-distribution-here"):
        wheelhouse.pins(listing)


@pytest.mark.slow
def test_the_whole_flow_on_the_cpu(tmp_path, gpu_image):
    """Wheelhouse -> install on a simulated bare machine -> ``gpu_check.py --device cpu --quick``."""
    whl, out, site = tmp_path / "whl", tmp_path / "out", tmp_path / "site"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    build = subprocess.run(
        ["bash", str(BENCH / "gpu_wheelhouse.sh"), str(whl)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHON=sys.executable, PYTHON_VERSION=version, XZ_LEVEL="0", PART_MIB="60"),
    )
    assert build.returncode == 0, build.stderr[-3000:]
    assert len(list(whl.glob("*/wheels.tar.xz.part"))) >= 2  # Warp alone is more than one part

    env = dict(gpu_image, OUT=str(out), WHEELS=str(whl), SITE=str(site))
    run = subprocess.run(
        ["bash", str(BENCH / "gpu_run.sh"), "--device", "cpu", "--quick", "--budget", "600"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    log = (out / "gpu_check.log").read_text() if (out / "gpu_check.log").exists() else run.stdout
    assert run.returncode == 0, log[-4000:] + run.stderr[-2000:]

    results = json.loads((out / "gpu_check.json").read_text())
    assert Path(results["machine"]["package"]).is_relative_to(site)  # the wheel's copy ran, not this checkout
    assert {name: p["status"] for name, p in results["parts"].items()} == dict.fromkeys(
        ["doctor", "ceilings", "climax_step", "training", "datapipe", "corrdiff", "prognostic", "compile"], "ok"
    )
    parts = results["parts"]
    assert parts["prognostic"]["rows"][0]["leads h"] == [0, 6, 12, 18]
    assert all(r["finite"] and r["decreasing"] and r["samples/s"] > 0 for r in parts["training"]["rows"])
    assert {r["aggregation"] for r in parts["climax_step"]["rows"]} == {"fused", "naive"}
    report = (out / "gpu_check.md").read_text()
    assert "## targets" in report and "not judged" in report and "| compile | ok |" in report
