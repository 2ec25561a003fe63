# SPDX-License-Identifier: Apache-2.0
"""One prepared check of every path only a GPU shows, in one call, within a time budget.

Parts (:mod:`gpu_parts`), each independent: a part that fails is recorded
with its error and the next one runs; a part the remaining budget cannot hold
is skipped and says so. After every part the results are written again, so a
run stopped from outside still leaves them:

* ``gpu_check.json``: everything measured, per part;
* ``gpu_check.md``: the same as Markdown tables, and the issue's targets
  (met / missed / not measured), ready for ``docs/performance.md``.

    python benchmarks/gpu_check.py                          # the full check, into $OUT or ./gpu_check
    python benchmarks/gpu_check.py --device cpu --quick     # the same code at toy sizes (the test suite)
    python benchmarks/gpu_check.py --parts training compile # a rerun of some parts

On the bare GPU machine run it through ``benchmarks/gpu_run.sh``, which
installs the wheelhouse of ``benchmarks/gpu_wheelhouse.sh`` first
(``docs/performance.md``, "The GPU check").
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import gpu_parts

#: (name, function, seconds it needs at full size): in the order they run, most wanted first.
PARTS = [
    ("doctor", gpu_parts.doctor, 15),
    ("ceilings", gpu_parts.ceilings, 20),
    ("climax_step", gpu_parts.climax_step, 60),
    ("training", gpu_parts.training, 120),
    ("datapipe", gpu_parts.datapipe, 40),
    ("corrdiff", gpu_parts.corrdiff, 90),
    ("prognostic", gpu_parts.prognostic, 15),
    ("compile", gpu_parts.compiled, 150),
]


class PartTimeout(Exception):
    """The check's budget ran out inside a part."""


def run_part(check: gpu_parts.Check, name: str, fn, need: float) -> dict:
    """One part's record: ``status`` (ok / failed / skipped), seconds, and what it measured."""
    left = check.left()
    if left < need * check.scale:
        return {
            "status": "skipped",
            "reason": f"{left:.0f} s of the budget left, the part needs about {need * check.scale:.0f} s",
        }
    start = time.monotonic()
    signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(max(1, int(left)))
    try:
        record = {"status": "ok", **fn(check)}
    except Exception as err:  # noqa: BLE001 -- every failure is recorded and the next part runs
        lines = traceback.format_exception(err)
        record = {
            "status": "failed",
            "error": f"{type(err).__name__}: {err}"[:2000],
            "traceback": "".join(lines)[-4000:],
        }
    finally:
        signal.alarm(0)
        check.release()
    record["seconds"] = round(time.monotonic() - start, 1)
    return record


def _timeout(signum, frame):
    raise PartTimeout("the check's time budget ran out in this part")


def watchdog(seconds: float) -> None:
    """End the process ``seconds`` from now, whatever it is doing (a part stuck in a
    device call never returns to Python for the alarm); the results written after
    each finished part stay."""

    def stop():
        time.sleep(seconds)
        print(f"gpu_check: hard stop after {seconds:.0f} s", flush=True)
        os._exit(3)

    threading.Thread(target=stop, daemon=True).start()


def table(rows: list[dict]) -> list[str]:
    """Markdown table of ``rows`` (columns: every key, in first-seen order)."""
    if not rows:
        return []
    columns = list(dict.fromkeys(k for row in rows for k in row))
    cell = lambda v: "" if v is None else str(v)  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]


def markdown(results: dict) -> str:
    """The report: the machine, one line per part, each part's table and notes, then the targets."""
    m = results.get("machine", {})
    lines = [
        f"# GPU check, {results['started']}",
        "",
        f"`{results['command']}`",
        "",
        ", ".join(f"{k} {v}" for k, v in m.items()),
        "",
        "| part | status | seconds | error or reason |",
        "|---|---|---:|---|",
    ]
    parts = results["parts"]
    for name, part in parts.items():
        why = part.get("error") or part.get("reason") or ""
        lines.append(
            f"| {name} | {part['status']} | {part.get('seconds', '')} | {why.splitlines()[0] if why else ''} |"
        )
    for name, part in parts.items():
        if part.get("rows"):
            lines += ["", f"## {name}", "", *table(part["rows"])]
            lines += [""] * bool(part.get("notes")) + part.get("notes", [])
    verdict = {True: "met", False: "missed", None: "not judged (toy sizes or no GPU)"}
    targets = [dict(t, met=verdict[t["met"]]) for part in parts.values() for t in part.get("targets", [])]
    if targets:
        lines += ["", "## targets", "", *table(targets)]
    return "\n".join(lines) + "\n"


def write_results(out: Path, results: dict) -> None:
    """``gpu_check.json`` and ``gpu_check.md``, each replaced whole (never half-written)."""
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (
        ("gpu_check.json", json.dumps(results, indent=2, default=str)),
        ("gpu_check.md", markdown(results)),
    ):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out / name)


def main(argv: list[str] | None = None) -> int:
    names = [name for name, _, _ in PARTS]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (the check) or cpu (its test)")
    parser.add_argument("--quick", action="store_true", help="toy sizes: the same code in about a minute on a CPU")
    parser.add_argument("--out", default=os.environ.get("OUT") or "gpu_check", help="output folder ($OUT when set)")
    parser.add_argument(
        "--budget", type=float, default=420.0, help="seconds for all parts (with the install, 8 minutes in all)"
    )
    parser.add_argument("--parts", nargs="+", choices=names, default=names, help="run only these parts")
    args = parser.parse_args(argv)

    started = time.monotonic()
    watchdog(args.budget + 30)
    out = Path(args.out)
    results = {
        "command": "python benchmarks/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "device": args.device,
        "quick": args.quick,
        "budget_s": args.budget,
        "parts": {},
    }
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as work:
        check = gpu_parts.Check(args.device, args.quick, Path(work), started + args.budget)
        results["machine"] = check.machine()
        write_results(out, results)
        for name, fn, need in PARTS:
            if name not in args.parts:
                continue
            print(f"gpu_check: {name} ...", flush=True)
            results["parts"][name] = run_part(check, name, fn, need)
            part = results["parts"][name]
            print(
                f"gpu_check: {name} {part['status']} ({part.get('seconds', 0)} s) {part.get('error', '')}", flush=True
            )
            write_results(out, results)
    results["seconds"] = round(time.monotonic() - started, 1)
    write_results(out, results)
    print(markdown(results), flush=True)
    return 0 if all(p["status"] != "failed" for p in results["parts"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
