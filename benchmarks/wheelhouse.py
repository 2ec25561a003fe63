# SPDX-License-Identifier: Apache-2.0
"""Wheels for a machine with no package index, in parts that each fit one transfer.

The GPU machine this project borrows takes at most 64 MiB per call and keeps
what earlier calls sent while it stays warm. PhysicsNeMo imports NVIDIA Warp
at ``import physicsnemo``, and Warp's wheel alone is 142 MiB (its native
library ``warp.so`` is 285 MB; no compressor brings it under 64 MiB). So the
wheels are packed into one xz-compressed tar, Warp's rewritten without its
CPU-kernel compiler, examples and tests and with its members *stored* (so xz
compresses the library itself, not deflated bytes), and the tar is cut into
numbered parts of at most ``--part-mib``. Every part folder carries the same
manifest, so the machine can tell which parts it holds.

    python benchmarks/wheelhouse.py pins [--build] benchmarks/gpu_wheels.txt   # name==version, as installed here
    python benchmarks/wheelhouse.py slim WHEEL                        # Warp without what the check never loads
    python benchmarks/wheelhouse.py pack WHEEL_DIR DEST [--part-mib 56] [--level 9]
    python3 benchmarks/wheelhouse.py unpack DEST OUT_DIR               # on the GPU machine

``benchmarks/gpu_wheelhouse.sh`` runs the first three; ``benchmarks/gpu_run.sh``
the last. Standard library only: the GPU machine runs it before anything is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as metadata
import io
import json
import lzma
import shutil
import sys
import tarfile
import zipfile
from pathlib import Path

#: Members of the Warp wheel that nothing here loads: the clang library that
#: compiles Warp kernels for the CPU, and the examples and tests.
WARP_UNUSED = ("warp/bin/warp-clang.so", "warp/examples/", "warp/tests/")
MANIFEST = "manifest.json"
CHUNK = "wheels.tar.xz.part"


def pins(list_file: Path, build: bool = False) -> list[str]:
    """``name==version`` of the distributions named in ``list_file``, as installed here:
    those marked ``[build]`` (source only on PyPI) when ``build``, else the others.

    Raises
    ------
    SystemExit
        Naming the distributions this environment lacks.
    """
    lines = [line.split("#")[0].split() for line in list_file.read_text().splitlines()]
    names = [words[0] for words in lines if words and ("[build]" in words) == build]
    missing, out = [], []
    for name in names:
        try:
            out.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            missing.append(name)
    if missing:
        raise SystemExit(
            f"{list_file}: {missing} are not installed here; install the test extra first "
            "(pip install -e '.[test]') so the GPU machine gets the versions CI tests"
        )
    return out


def slim(wheel: Path, drop: tuple[str, ...] = WARP_UNUSED) -> None:
    """Rewrite ``wheel`` in place without the members starting with ``drop``, every member
    stored uncompressed, and its RECORD without the dropped files."""
    tmp = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            if info.filename.startswith(drop):
                continue
            data = src.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                rows = data.decode().splitlines()
                data = ("\n".join(r for r in rows if not r.startswith(drop)) + "\n").encode()
            info.compress_type = zipfile.ZIP_STORED
            dst.writestr(info, data)
    tmp.replace(wheel)


def pack(wheel_dir: Path, dest: Path, part_mib: float = 56, level: int = 9) -> list[Path]:
    """Every ``*.whl`` of ``wheel_dir`` as one ``.tar.xz`` cut into ``dest/1``, ``dest/2``, ...

    ``dest`` is replaced whole at the end (built beside it first), so a failed
    run leaves the previous wheelhouse as it was.
    """
    wheels = sorted(wheel_dir.glob("*.whl"))
    if not wheels:
        raise SystemExit(f"{wheel_dir}: no wheels to pack")
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w") as tar:
        for wheel in wheels:
            tar.add(wheel, arcname=wheel.name)
    packed = lzma.compress(stream.getvalue(), preset=level | (lzma.PRESET_EXTREME if level >= 9 else 0))
    size = int(part_mib * 2**20)
    chunks = [packed[i : i + size] for i in range(0, len(packed), size)]
    manifest = {
        "parts": len(chunks),
        "sha256": [hashlib.sha256(c).hexdigest() for c in chunks],
        "wheels": [w.name for w in wheels],
        "bytes": len(packed),
    }
    staging = dest.with_name(dest.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    for i, chunk in enumerate(chunks, 1):
        part = staging / str(i)
        part.mkdir(parents=True)
        (part / CHUNK).write_bytes(chunk)
        (part / MANIFEST).write_text(json.dumps(manifest, indent=1))
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    return [dest / str(i) for i in range(1, len(chunks) + 1)]


def unpack(src: Path, out: Path) -> list[Path]:
    """The wheels of the parts under ``src`` into ``out``, after checking every part is there and intact.

    Raises
    ------
    SystemExit
        Naming the parts that are missing or damaged (on the GPU machine: a part
        sent in an earlier call was lost when the machine went cold; send it again).
    """
    manifests = sorted(src.glob(f"*/{MANIFEST}"))
    if not manifests:
        raise SystemExit(f"{src}: no wheelhouse parts (build them with benchmarks/gpu_wheelhouse.sh)")
    manifest = json.loads(manifests[0].read_text())
    chunks, bad = [], []
    for i, digest in enumerate(manifest["sha256"], 1):
        path = src / str(i) / CHUNK
        data = path.read_bytes() if path.exists() else b""
        if hashlib.sha256(data).hexdigest() != digest:
            bad.append(f"{src / str(i)} ({'damaged' if data else 'missing'})")
        chunks.append(data)
    if bad:
        raise SystemExit(
            f"wheelhouse parts missing or damaged: {', '.join(bad)}; all {manifest['parts']} parts must be present"
        )
    out.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(lzma.decompress(b"".join(chunks))), mode="r") as tar:
        tar.extractall(out, filter="data")
    return [out / name for name in manifest["wheels"]]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("pins")
    p.add_argument("list_file", type=Path)
    p.add_argument("--build", action="store_true", help="the [build] ones (source only on PyPI)")
    commands.add_parser("slim").add_argument("wheel", type=Path)
    p = commands.add_parser("pack")
    p.add_argument("wheel_dir", type=Path)
    p.add_argument("dest", type=Path)
    p.add_argument("--part-mib", type=float, default=56)
    p.add_argument("--level", type=int, default=9, help="xz preset 0-9 (9: smallest, slowest)")
    p = commands.add_parser("unpack")
    p.add_argument("src", type=Path)
    p.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.command == "pins":
        print(" ".join(pins(args.list_file, args.build)))
    elif args.command == "slim":
        before = args.wheel.stat().st_size
        slim(args.wheel)
        print(
            f"{args.wheel.name}: {before / 2**20:.0f} MiB -> {args.wheel.stat().st_size / 2**20:.0f} MiB "
            "uncompressed, for xz",
            file=sys.stderr,
        )
    elif args.command == "pack":
        parts = pack(args.wheel_dir, args.dest, args.part_mib, args.level)
        sizes = ", ".join(f"{p} {(p / CHUNK).stat().st_size / 2**20:.1f} MiB" for p in parts)
        print(f"{len(parts)} part(s): {sizes}")
    else:
        wheels = unpack(args.src, args.out)
        print(f"{len(wheels)} wheels in {args.out}")


if __name__ == "__main__":
    main()
