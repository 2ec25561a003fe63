# SPDX-License-Identifier: Apache-2.0
"""A scorecard's files: ``scorecard.csv``, ``scorecard.json``, ``scores.png``
(every metric against lead, per variable and method), ``case.png`` (truth,
forecast and error maps of one initial time), and the text summary."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..files import atomic_path, write_atomic
from .scoring import METRICS


@dataclass
class Case:
    """One forecast shown on maps: ``[V, H, W]`` fields, the lead and where it starts."""

    truth: np.ndarray
    forecast: np.ndarray
    lead: float
    init: tuple[int, int]


def write_report(table: pd.DataFrame, out: Path, meta: dict, case: Case | None = None,
                 case_map: dict | None = None) -> None:
    """Write the files of a scorecard into ``out``.

    Parameters
    ----------
    table : DataFrame
        From :meth:`.scoring.Scorer.table`.
    meta : dict
        Written at the top of ``scorecard.json`` (run, split, samples, climatology, modes).
    case : Case, optional
        Drawn into ``case.png`` with ``case_map``: ``variable``, ``index`` (in the
        scored variables), ``lat``, ``lon``, ``units``.
    """
    with atomic_path(out / "scorecard.csv") as tmp:
        table.to_csv(tmp, index=False)
    rows = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            for row in table.to_dict("records")]
    write_atomic(out / "scorecard.json", json.dumps({**meta, "scores": rows}, indent=1))
    plot_scores(table, out / "scores.png")
    if case is not None:
        plot_case(case, **case_map, path=out / "case.png")


def summary(table: pd.DataFrame, variables=None, metric: str = "rmse") -> str:
    """One metric as a table, variables x leads, the methods side by side."""
    rows = table if variables is None else table[table.variable.isin(variables)]
    pivot = rows.pivot_table(index=["variable", "method"], columns="lead_hours", values=metric)
    pivot.columns = [f"{int(c)}h" for c in pivot.columns]
    return pivot.to_string(float_format=lambda v: f"{v:.4g}")


def plot_scores(table: pd.DataFrame, path: Path) -> None:
    """Every metric against lead time: a row per metric, a column per variable."""
    from matplotlib.figure import Figure

    variables = list(dict.fromkeys(table.variable))
    metrics = [m for m in METRICS if m in table]
    fig = Figure(figsize=(3.2 * len(variables), 2.75 * len(metrics)), layout="tight")
    axes = fig.subplots(len(metrics), len(variables), squeeze=False)
    for j, var in enumerate(variables):
        for method, rows in table[table.variable == var].groupby("method"):
            for i, metric in enumerate(metrics):
                axes[i, j].plot(rows.lead_hours, rows[metric], "o-", label=method)
        axes[0, j].set_title(var, fontsize=9)
        axes[-1, j].set_xlabel("lead (h)")
    for i, metric in enumerate(metrics):
        axes[i, 0].set_ylabel(metric.upper())
    axes[0, 0].legend(fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)


def plot_case(case: Case, variable: str, index: int, lat: np.ndarray, lon: np.ndarray, units: str,
              path: Path) -> None:
    """Maps of truth, forecast and error of one variable for one initial time."""
    from matplotlib.figure import Figure

    truth, forecast = case.truth[index], case.forecast[index]
    order, lon_order = np.argsort(lat), np.argsort(lon % 360)
    fields = {"truth": truth, "forecast": forecast, "forecast - truth": forecast - truth}
    fig = Figure(figsize=(13, 3.2), layout="tight")
    axes = fig.subplots(1, 3)
    for ax, (title, field) in zip(axes, fields.items()):
        field = field[order][:, lon_order]
        bound = np.abs(field).max()
        kw = ({"cmap": "RdBu_r", "vmin": -bound, "vmax": bound} if title == "forecast - truth"
              else {"vmin": truth.min(), "vmax": truth.max(), "cmap": "viridis"})
        mesh = ax.pcolormesh(np.sort(lon % 360), lat[order], field, shading="nearest", **kw)
        fig.colorbar(mesh, ax=ax, label=units)
        ax.set_title(f"{title}: {variable}, +{case.lead:.0f} h", fontsize=9)
        ax.set_xlabel("longitude")
    axes[0].set_ylabel("latitude")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
