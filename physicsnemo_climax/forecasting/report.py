# SPDX-License-Identifier: Apache-2.0
"""A scorecard's files: ``scorecard.csv`` and ``scorecard.json`` (a row per variable,
lead, method and region), ``summary.md`` (one page, readable on GitHub),
``scores.png`` (every metric against lead, per variable and method, in the
main region; ``regions/scores_<region>.png`` for the others), ``bias_maps.png``,
``spectra.png`` (zonal energy spectra of forecasts and truth), ``case.png``
(truth, forecast and error maps of one initial time) and, for ensembles,
``rank_histogram.csv`` and ``.png``."""

from __future__ import annotations

import json
import math
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..files import atomic_path, holding_only, output_folder, write_atomic
from .diagnostics import FieldDiagnostics
from .plots import plot_bias_maps, plot_case, plot_rank_histograms, plot_scores, plot_zonal_spectra

#: Score columns in the order they are shown; those a table lacks or holds only NaN are left out.
#: The optional ones (:mod:`.probabilistic`) follow; ``brier>`` and ``bss>`` columns by threshold after them.
SHOWN = (
    "rmse",
    "acc",
    "bias",
    "mae",
    "seeps",
    "crps",
    "spread",
    "spread_skill",
    "wind_vector_rmse",
    "energy_score",
    "debiased_mse",
    "rps",
    "rpss",
)
#: Prefixes of the columns named by a threshold (``brier>q0.9``), shown after :data:`SHOWN`.
THRESHOLD_COLUMNS = ("brier>", "bss>")
#: Climatologies computed from the scored period itself.
IN_SAMPLE = ("time_mean", "day_of_year")
#: Scores in ``summary.md`` (the others are in the tables and plots).
SUMMARY = ("rmse", "acc", "seeps", "crps", "spread_skill", "energy_score", "rpss")
#: The kind of output a scorecard folder is (:func:`..files.output_folder`).
EVALUATION = "evaluation"
#: What a scorecard folder holds: a folder holding only these (``scorecard.csv`` among them) is one
#: written before scorecards carried their marker.
REPORT_FILES = (
    "scorecard.csv",
    "scorecard.json",
    "summary.md",
    "scores.png",
    "regions",
    "bias_maps.png",
    "spectra.png",
    "case.png",
    "rank_histogram.csv",
    "rank_histogram.png",
    "forecasts.zarr",
)


@dataclass
class Case:
    """One forecast shown on maps: ``[V, H, W]`` fields, the lead and where it starts."""

    truth: np.ndarray
    forecast: np.ndarray
    lead: float
    init: tuple[int, int]


@dataclass
class Pictures:
    """What the pictures are drawn from: the case, the field diagnostics, rank histograms
    (:meth:`.scoring.Scorer.rank_histograms`) and the map's ``variable``, ``index`` (in the
    scored variables), ``lat``, ``lon`` and ``units``."""

    case: Case | None
    fields: FieldDiagnostics | None
    ranks: pd.DataFrame | None
    case_map: dict


#: Whether a folder without a marker is a scorecard folder of an older version.
is_report = holding_only(REPORT_FILES, required=("scorecard.csv",))


def main_region(table: pd.DataFrame) -> str | None:
    """The region the headline numbers are for: ``global``, else the run's own region, else the first."""
    if "region" not in table:
        return None
    names = list(dict.fromkeys(table.region))
    return next((n for n in ("global", "run_region") if n in names), names[0])


def shown(table: pd.DataFrame) -> list[str]:
    """The score columns of ``table`` that hold a value."""
    named = [c for p in THRESHOLD_COLUMNS for c in table.columns if str(c).startswith(p)]
    return [m for m in [*SHOWN, *named] if m in table and table[m].notna().any()]


def write_report(table: pd.DataFrame, out: Path, meta: dict, pictures: Pictures | None = None) -> None:
    """Write the files of a scorecard into ``out``.

    Parameters
    ----------
    table : DataFrame
        From :meth:`.scoring.Scorer.table`.
    meta : dict
        Written at the top of ``scorecard.json`` and ``summary.md`` (run, split, samples,
        climatology, regions, externals, modes).
    pictures : Pictures, optional
    """
    write_scorecard_tables(table, out, meta)
    main = main_region(table)
    for region, part in table.groupby("region"):
        plot_scores(part, shown(part), out / ("scores.png" if region == main else f"regions/scores_{region}.png"))
    images = ["scores.png"]
    if pictures is not None:
        images += draw(pictures, out)
    write_atomic(out / "summary.md", summary_markdown(table, meta, images))


def write_scorecard_tables(table: pd.DataFrame, out: Path, meta: dict) -> None:
    """``scorecard.csv`` (the rows) and ``scorecard.json`` (``meta``, then the rows with ``null``
    for NaN) into ``out``."""
    with atomic_path(out / "scorecard.csv") as tmp:
        table.to_csv(tmp, index=False)
    rows = [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in table.to_dict("records")
    ]
    write_atomic(out / "scorecard.json", json.dumps({**meta, "scores": rows}, indent=1))


def evaluation_folder(e, inputs: list) -> AbstractContextManager[Path]:
    """The staging folder of the scorecard in ``e.out_dir`` (:func:`..files.output_folder`: swapped in
    whole when the block ends; a folder that may not be replaced refused first), whose ``inputs``
    it must not be (the run and its store)."""
    return output_folder(
        e.out_dir,
        EVALUATION,
        overwrite=e.overwrite,
        inputs=inputs,
        legacy=is_report,
        option="eval.out_dir",
        hint="eval.overwrite=true",
    )


def draw(pictures: Pictures, out: Path) -> list[str]:
    """The pictures beyond the score curves; returns the file names written."""
    written = []
    if pictures.ranks is not None and len(pictures.ranks):
        with atomic_path(out / "rank_histogram.csv") as tmp:
            pictures.ranks.to_csv(tmp, index=False)
        plot_rank_histograms(pictures.ranks, main_region(pictures.ranks), out / "rank_histogram.png")
        written.append("rank_histogram.png")
    if pictures.fields is not None and pictures.fields.errors:
        m = pictures.case_map
        plot_bias_maps(pictures.fields, m["lat"], m["lon"], out / "bias_maps.png", variables=m.get("variables"))
        plot_zonal_spectra(pictures.fields, out / "spectra.png", variables=m.get("variables"))
        written += ["bias_maps.png", "spectra.png"]
    if pictures.case is not None:
        plot_case(
            pictures.case, **{k: v for k, v in pictures.case_map.items() if k != "variables"}, path=out / "case.png"
        )
        written.append("case.png")
    return written


def summary(table: pd.DataFrame, variables=None, metric: str = "rmse") -> str:
    """One metric in the main region as a table, variables x leads, the methods side by side."""
    rows = table if variables is None else table[table.variable.isin(variables)]
    if "region" in rows:
        rows = rows[rows.region == main_region(rows)]
    pivot = rows.pivot_table(index=["variable", "method"], columns="lead_hours", values=metric)
    pivot.columns = [f"{int(c)}h" for c in pivot.columns]
    return pivot.to_string(float_format=lambda v: f"{v:.4g}")


def markdown_table(frame: pd.DataFrame) -> str:
    """A DataFrame as a GitHub Markdown table (index as the first column)."""

    def cell(v):
        return f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v)

    head = [frame.index.name or ""] + [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join([cell(i)] + [cell(v) for v in row]) + " |" for i, row in zip(frame.index, frame.values)]
    return "\n".join(lines)


def summary_markdown(table: pd.DataFrame, meta: dict, images: list[str]) -> str:
    """``summary.md``: what was scored, each score against lead in the main region, every region's RMSE."""
    main = main_region(table)
    part = table[table.region == main]
    lines = [
        f"# Scorecard of `{meta.get('run_dir', '')}`",
        "",
        f"Split `{meta.get('split')}`, {meta.get('samples')} initial times, climatology "
        f"`{meta.get('climatology')}`"
        + (" (in-sample: a mean of the scored period itself)" if meta.get("climatology") in IN_SAMPLE else "")
        + ". RMSE is the square root of the time-mean MSE and ACC the time mean of "
        "uncentred anomaly correlations (WeatherBench 2); weights are cell areas.",
        "",
    ]
    for name, report in (meta.get("external") or {}).items():
        missing = report.get("missing") or {}
        lines.append(
            f"External `{name}` ({report.get('source')}): "
            + (
                "every initial time and lead present."
                if not missing
                else "missing " + ", ".join(f"{v['missing']} at {k} h" for k, v in missing.items()) + "."
            )
        )
    if meta.get("skipped_regions"):
        lines.append("Not scored: " + ", ".join(f"{k} ({v})" for k, v in meta["skipped_regions"].items()) + ".")
    for metric in [m for m in shown(part) if m in SUMMARY]:
        lines += ["", f"## {metric.upper()}, {main}", ""]
        for var, rows in part.groupby("variable"):
            pivot = rows.pivot_table(index="method", columns="lead_hours", values=metric)
            pivot.columns = [f"{c:g} h" for c in pivot.columns]
            pivot.index.name = var
            lines += [markdown_table(pivot), ""]
    model = table[table.method == "model"]
    if model.region.nunique() > 1:
        lead = model.lead_hours.max()
        pivot = model[model.lead_hours == lead].pivot_table(index="region", columns="variable", values="rmse")
        lines += ["", f"## Model RMSE by region at {lead:g} h", "", markdown_table(pivot)]
    lines += ["", *[f"![{Path(i).stem}]({i})" for i in images], ""]
    return "\n".join(lines)


def verdicts(table) -> str:
    """Per variable and lead: whether the model's RMSE beats the better of persistence and climatology."""
    rmse = table.pivot_table(index=["variable", "lead_hours"], columns="method", values="rmse")
    baselines = [m for m in ("persistence", "climatology") if m in rmse]
    lines = ["model against the better baseline (RMSE):"]
    for (var, lead), row in rmse.iterrows():
        best = min(baselines, key=lambda m: row[m])
        verdict = "beats both" if row["model"] < row[best] else f"does NOT beat {best}"
        lines.append(f"  {var} +{lead:g} h: {row['model']:.4g} vs {best} {row[best]:.4g}: {verdict}")
    wins = sum("beats both" in line for line in lines)
    lines.append(f"  {wins} of {len(lines) - 1} variable-lead pairs beat both baselines")
    return "\n".join(lines)


def summarize(table: pd.DataFrame, cfg) -> str:
    """What ``climax evaluate`` prints of a forecasting scorecard: RMSE by variable, method and
    lead in the main region, and where the files are."""
    return f"{summary(table)}\nscorecard and plots in {cfg.eval.out_dir}"
