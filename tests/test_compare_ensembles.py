# SPDX-License-Identifier: Apache-2.0
"""examples/climax/compare_ensembles.py: seeds summarised, the winner counted, rank histograms'
distance from flat, and an output folder it did not write left alone."""

import subprocess
import sys
from pathlib import Path

import pandas as pd

SCRIPT = Path(__file__).parents[1] / "examples" / "climax" / "compare_ensembles.py"


def evaluation(folder: Path, crps: dict, spread_skill: float, frequencies: list[float]) -> Path:
    """A minimal ``climax evaluate`` folder: ``crps`` per lead for z500, one rank histogram per lead."""
    folder.mkdir(parents=True)
    rows = [
        dict(variable="z500", lead_hours=lead, method=method, region="global", samples=4, rmse=2 * value,
             crps=value if method == "model" else None, spread_skill=spread_skill if method == "model" else None)
        for lead, value in crps.items()
        for method in ("model", "persistence")
    ]  # fmt: skip
    pd.DataFrame(rows).to_csv(folder / "scorecard.csv", index=False)
    ranks = [
        dict(method="model", lead_hours=lead, region="global", variable="z500", rank=k, frequency=f)
        for lead in crps
        for k, f in enumerate(frequencies)
    ]
    pd.DataFrame(ranks).to_csv(folder / "rank_histogram.csv", index=False)
    return folder


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


def test_seeds_are_summarised_and_the_lowest_crps_counted(tmp_path):
    a0 = evaluation(tmp_path / "a0", {6: 1.0, 24: 3.0}, 0.9, [0.25, 0.25, 0.25, 0.25])
    a1 = evaluation(tmp_path / "a1", {6: 2.0, 24: 5.0}, 0.7, [0.25, 0.25, 0.25, 0.25])
    b0 = evaluation(tmp_path / "b0", {6: 1.5, 24: 2.0}, 0.3, [0.5, 0.0, 0.0, 0.5])
    b1 = evaluation(tmp_path / "b1", {6: 1.5, 24: 6.0}, 0.5, [0.4, 0.1, 0.1, 0.4])
    out = tmp_path / "out"
    done = run("--out", out, "--ensemble", f"A={a0},{a1}", "--ensemble", f"B={b0},{b1}", "--lead", 24)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["comparison.md", "rank_histograms.png", "scores.png"]
    lines = (out / "comparison.md").read_text().splitlines()
    rows = {tuple(c.strip() for c in line.split("|")[1:4]): line.split("|")[4:9] for line in lines[2:]}
    a6, b6 = rows[("z500", "6", "A")], rows[("z500", "6", "B")]
    assert a6[0].strip() == "1.5 (1–2)" and b6[0].strip() == "1.5"  # CRPS: mean (min–max) over seeds
    assert a6[1].strip() == "0.8 (0.7–0.9)"  # spread/skill
    assert a6[2].strip() == "3 (2–4)"  # RMSE of the ensemble mean
    assert a6[3].strip() == "0" and b6[3].strip() == "0.4 (0.3–0.5)"  # off flat: 0.5 * sum |f - 1/4|: 0.5, 0.3
    assert a6[4].strip() == "1/2" and b6[4].strip() == "1/2"  # seed 0: A (1.0 < 1.5); seed 1: B (1.5 < 2.0)
    assert rows[("z500", "24", "A")][4].strip() == "1/2" and rows[("z500", "24", "B")][4].strip() == "1/2"


def test_a_folder_it_did_not_write_is_refused_and_kept(tmp_path):
    a0 = evaluation(tmp_path / "a0", {6: 1.0}, 0.9, [0.5, 0.5])
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    done = run("--out", out, "--ensemble", f"A={a0}")
    assert done.returncode != 0 and "holds files this script did not write (notes.txt)" in done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert run("--out", tmp_path / "new", "--ensemble", f"A={a0}").returncode == 0
    again = run("--out", tmp_path / "new", "--ensemble", f"A={a0}")
    assert again.returncode != 0 and "pass --overwrite" in again.stderr
    assert run("--out", tmp_path / "new", "--ensemble", f"A={a0}", "--overwrite").returncode == 0
    missing = run("--out", tmp_path / "x", "--ensemble", f"A={tmp_path / 'nope'}")
    assert missing.returncode != 0 and "--ensemble A:" in missing.stderr and "scorecard.csv" in missing.stderr
