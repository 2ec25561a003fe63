# SPDX-License-Identifier: Apache-2.0
"""Downscalers side by side, lead by lead: CRPS and MAE from ``climax downscale score`` folders.

    python examples/corrdiff/compare_downscalers.py \\
        --scores "trained on analyses=scores_analyses" --scores "trained on forecasts=scores_forecasts"

Each ``--scores NAME=DIR`` names one downscaler and the folder ``climax downscale score`` wrote
for its generation file (its ``scores.csv``). The files must come from forecast inputs, so that
they are scored per lead. The first downscaler is the reference: the table printed (Markdown)
gives, per variable and lead, every downscaler's CRPS and the MAE of its ensemble mean, and each
other one's ratio to the reference (below 1: better). ``--method`` picks the rows to compare
(``corrdiff``, the ensemble; ``regression``, the mean alone; ``bilinear``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from physicsnemo_climax.forecasting.report import markdown_table

SCORES = ["crps", "mae"]


def read_scores(name: str, folder: Path, method: str) -> pd.DataFrame:
    """``variable, lead_hours, crps, mae`` of ``method`` from a scorecard folder.

    Raises
    ------
    SystemExit
        Naming the downscaler: no ``scores.csv``, no leads (not from forecasts), no such method.
    """
    path = folder / "scores.csv"
    if not path.is_file():
        raise SystemExit(f"--scores {name}: {folder} has no scores.csv (a `climax downscale score` folder?)")
    table = pd.read_csv(path)
    if "lead_hours" not in table:
        raise SystemExit(f"--scores {name}: {path} has no lead_hours; generate from forecast inputs to score per lead")
    rows = table[table.method == method]
    if rows.empty:
        raise SystemExit(f"--scores {name}: {path} has no {method!r} rows (has {sorted(set(table.method))})")
    return rows.set_index(["variable", "lead_hours"])[SCORES]


def comparison(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every downscaler's scores side by side, and each one's ratio to the first.

    Returns
    -------
    DataFrame
        Indexed by ``(variable, lead_hours)`` (those every downscaler has); columns ``"crps NAME"``,
        ``"mae NAME"`` and, for every name after the first, ``"crps ratio NAME"`` and ``"mae ratio NAME"``.
    """
    names = list(tables)
    reference = tables[names[0]]
    columns = {}
    for score in SCORES:
        for name in names:
            columns[f"{score} {name}"] = tables[name][score]
        for name in names[1:]:
            columns[f"{score} ratio {name}"] = tables[name][score] / reference[score]
    return pd.DataFrame(columns).dropna().sort_index()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scores", action="append", required=True, metavar="NAME=DIR", help="a downscaler's scores")
    parser.add_argument("--method", default="corrdiff", help="rows of scores.csv to compare (default corrdiff)")
    args = parser.parse_args(argv)
    tables = {}
    for item in args.scores:
        name, sep, folder = item.partition("=")
        if not sep or not name or not folder:
            raise SystemExit(f"--scores {item!r}: write NAME=DIR")
        if name in tables:
            raise SystemExit(f"--scores {name}: named twice")
        tables[name] = read_scores(name, Path(folder), args.method)
    if len(tables) < 2:
        raise SystemExit("--scores: give at least two downscalers to compare")
    print(markdown_table(comparison(tables).reset_index(level="lead_hours")))


if __name__ == "__main__":
    main()
