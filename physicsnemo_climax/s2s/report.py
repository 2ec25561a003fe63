# SPDX-License-Identifier: Apache-2.0
"""The files of a sub-seasonal scorecard and what ``climax evaluate`` prints of it.

``scorecard.csv`` and ``scorecard.json`` hold one row per window, variable,
method and region (the forecasting scorecard's columns, with the window's
label and bounds in days, and ``rpss`` for ensembles); ``summary.md`` shows
RMSE, ACC and, with members, RPSS per window in the main region, the
baselines beside the model.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..data.windows import TimeWindow
from ..files import atomic_path, write_atomic
from ..forecasting.report import main_region, markdown_table, write_scorecard_tables
from .terciles import rpss


def window_table(table: pd.DataFrame, windows: tuple[TimeWindow, ...]) -> pd.DataFrame:
    """The scorer's table (:meth:`..forecasting.scoring.Scorer.table`, leads = window starts) with
    each window's ``window`` label, ``start_days`` and ``end_days``, and ``rpss`` where the RPS was
    scored."""
    by_start = {w.start_hours: w for w in windows}
    out = table.copy()
    out.insert(1, "window", [by_start[h].label for h in out.lead_hours])
    out.insert(2, "start_days", [by_start[h].start_hours / 24 for h in out.lead_hours])
    out.insert(3, "end_days", [by_start[h].end_hours / 24 for h in out.lead_hours])
    if "rps" in out:
        out["rpss"] = [rpss(a, b) for a, b in zip(out.rps, out.rps_climatology)]
    return out.drop(columns="lead_hours")


def pivot(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``metric`` in the main region: rows (variable, method), a column per window in their order."""
    rows = table[table.region == main_region(table)].dropna(subset=[metric])
    order = list(dict.fromkeys(rows.sort_values("start_days").window))
    out = rows.pivot_table(index=["variable", "method"], columns="window", values=metric)
    return out[[w for w in order if w in out.columns]]


def window_summary(table: pd.DataFrame) -> str:
    """RMSE (and RPSS for ensembles) per window in the main region, as ``climax evaluate`` prints."""
    parts = [f"RMSE\n{pivot(table, 'rmse').to_string(float_format=lambda v: f'{v:.4g}')}"]
    if "rpss" in table:
        parts.append(
            f"RPSS (terciles, against climatology)\n{pivot(table, 'rpss').to_string(float_format=lambda v: f'{v:.3f}')}"
        )
    return "\n\n".join(parts)


def summarize(table: pd.DataFrame, cfg) -> str:
    """What ``climax evaluate`` prints of a sub-seasonal scorecard, and where its files are."""
    return f"{window_summary(table)}\nscorecard in {cfg.eval.out_dir}"


def write_window_report(table: pd.DataFrame, out: Path, meta: dict, ranks: pd.DataFrame) -> None:
    """``scorecard.csv``, ``scorecard.json`` (``meta`` then the rows), ``summary.md`` and, for an
    ensemble, ``rank_histogram.csv`` into ``out``."""
    write_scorecard_tables(table, out, meta)
    if len(ranks):
        with atomic_path(out / "rank_histogram.csv") as tmp:
            ranks.rename(columns={"lead_hours": "window_start_hours"}).to_csv(tmp, index=False)
    write_atomic(out / "summary.md", window_summary_markdown(table, meta))


def window_summary_markdown(table: pd.DataFrame, meta: dict) -> str:
    """``summary.md``: what was scored, then each score per window in the main region."""
    lines = [
        f"# Sub-seasonal scorecard of `{meta.get('run_dir', '')}`",
        "",
        f"Split `{meta.get('split')}`, {meta.get('samples')} initial times, climatology "
        f"`{meta.get('climatology')}`. Each window is the mean of the states from its first day "
        "(included) to its last (excluded) after the initial time. Baselines: the climatology "
        f"averaged over the window, and that plus the anomaly of the last {meta.get('persisted_days')} "
        "days up to the initial time. Weights are cell areas; ACC is against the window's climatology.",
        "",
    ]
    metrics = [m for m in ("rmse", "acc", "bias", "crps", "spread_skill", "rpss") if m in table]
    for metric in metrics:
        frame = pivot(table, metric)
        if len(frame):
            frame.index = [f"{v} / {m}" for v, m in frame.index]
            frame.index.name = metric
            lines += [f"## {metric} ({main_region(table)})", "", markdown_table(frame), ""]
    if meta.get("terciles"):
        lines += [f"RPSS: terciles of the training split's window means, {meta['terciles']}.", ""]
    return "\n".join(lines)
