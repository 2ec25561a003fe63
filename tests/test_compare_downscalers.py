# SPDX-License-Identifier: Apache-2.0
"""examples/corrdiff/compare_downscalers.py: two scorecards side by side, lead by lead."""

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "corrdiff" / "compare_downscalers.py"


def write_scores(folder: Path, rows: list[tuple]) -> None:
    """A ``scores.csv`` as ``climax downscale score`` writes it for forecast inputs."""
    folder.mkdir()
    columns = ["method", "variable", "lead_hours", "rmse", "mae", "crps", "spread", "spread_skill"]
    pd.DataFrame(rows, columns=columns).to_csv(folder / "scores.csv", index=False)


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


def test_two_downscalers_are_compared_lead_by_lead_with_ratios_to_the_first(tmp_path):
    write_scores(
        tmp_path / "an",
        [
            ("corrdiff", "t", 6, 1.0, 0.8, 0.5, 0.3, 0.9),
            ("corrdiff", "t", 72, 2.0, 1.6, 1.2, 0.3, 0.4),
            ("regression", "t", 72, 2.0, 1.5, 1.5, 0.0, 0.0),
        ],
    )
    write_scores(
        tmp_path / "fc",
        [
            ("corrdiff", "t", 72, 1.5, 1.2, 0.9, 0.9, 1.0),
            ("corrdiff", "t", 6, 1.0, 0.8, 0.4, 0.3, 0.9),
        ],
    )
    done = run("--scores", f"analyses={tmp_path / 'an'}", "--scores", f"forecasts={tmp_path / 'fc'}")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == [
        "variable", "lead_hours", "crps analyses", "crps forecasts", "crps ratio forecasts",
        "mae analyses", "mae forecasts", "mae ratio forecasts",
    ]  # fmt: skip
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert rows == [
        ["t", "6", "0.5", "0.4", "0.8", "0.8", "0.8", "1"],
        ["t", "72", "1.2", "0.9", "0.75", "1.6", "1.2", "0.75"],
    ]  # the regression rows are not the ensemble's


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda f: None, "--scores b: .* has no scores.csv"),
        (lambda f: pd.DataFrame({"method": ["corrdiff"], "crps": [1.0]}).to_csv(f / "scores.csv"), "has no lead_hours"),
    ],
)
def test_a_folder_that_is_not_a_per_lead_scorecard_is_named(tmp_path, make, message):
    write_scores(tmp_path / "a", [("corrdiff", "t", 6, 1.0, 0.8, 0.5, 0.3, 0.9)])
    (tmp_path / "b").mkdir()
    make(tmp_path / "b")
    done = run("--scores", f"a={tmp_path / 'a'}", "--scores", f"b={tmp_path / 'b'}")
    assert done.returncode != 0
    assert re.search(message, done.stderr), done.stderr
