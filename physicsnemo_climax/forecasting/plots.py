# SPDX-License-Identifier: Apache-2.0
"""The scorecard's pictures (matplotlib's object API, no global state): scores against lead,
rank histograms, bias maps, zonal spectra and the maps of one case. :mod:`.report` decides
what to draw and where."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..files import atomic_path
from .diagnostics import FieldDiagnostics


def plot_scores(table: pd.DataFrame, metrics: list[str], path: Path) -> None:
    """Every metric of ``metrics`` against lead time: a row per metric, a column per variable."""
    from matplotlib.figure import Figure

    variables = list(dict.fromkeys(table.variable))
    fig = Figure(figsize=(3.2 * len(variables), 2.75 * len(metrics)), layout="tight")
    axes = fig.subplots(len(metrics), len(variables), squeeze=False)
    for j, var in enumerate(variables):
        for method, rows in table[table.variable == var].groupby("method"):
            for i, metric in enumerate(metrics):
                axes[i, j].plot(rows.lead_hours, rows[metric], "o-", label=method)
        region = f" ({table.region.iloc[0]})" if "region" in table else ""
        axes[0, j].set_title(var + region, fontsize=9)
        axes[-1, j].set_xlabel("lead (h)")
    for i, metric in enumerate(metrics):
        axes[i, 0].set_ylabel(metric.upper())
    axes[0, 0].legend(fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)


def plot_rank_histograms(ranks: pd.DataFrame, region: str, path: Path) -> None:
    """Rank histograms of each ensemble (rows) and variable (columns) in ``region`` at the longest
    lead; a flat histogram at ``1 / (M + 1)`` is a consistent ensemble."""
    from matplotlib.figure import Figure

    part = ranks[(ranks.region == region) & (ranks.lead_hours == ranks.lead_hours.max())]
    methods, variables = list(dict.fromkeys(part.method)), list(dict.fromkeys(part.variable))
    fig = Figure(figsize=(3.0 * len(variables), 2.4 * len(methods)), layout="tight")
    axes = fig.subplots(len(methods), len(variables), squeeze=False)
    for i, method in enumerate(methods):
        for j, var in enumerate(variables):
            rows = part[(part.method == method) & (part.variable == var)]
            axes[i, j].bar(rows["rank"], rows.frequency)
            axes[i, j].axhline(1 / len(rows), color="k", lw=0.8)
            axes[i, j].set_title(f"{method}: {var}, +{part.lead_hours.max():g} h ({region})", fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)


def plot_bias_maps(
    fields: FieldDiagnostics, lat: np.ndarray, lon: np.ndarray, path: Path, variables: list[str] | None = None
) -> None:
    """Mean forecast - truth of every method (rows) and variable (columns) at the longest diagnosed lead."""
    from matplotlib.figure import Figure

    lead = max(lead for _, lead in fields.errors)
    methods = [m for m, at in fields.errors if at == lead]
    n_var = next(iter(fields.errors.values())).shape[0]
    order, lon_order = np.argsort(lat), np.argsort(lon % 360)
    fig = Figure(figsize=(4.2 * n_var, 2.6 * len(methods)), layout="tight")
    axes = fig.subplots(len(methods), n_var, squeeze=False)
    for i, method in enumerate(methods):
        maps = fields.bias_map(method, lead).numpy()
        for j in range(n_var):
            field = maps[j][order][:, lon_order]
            bound = np.abs(field).max() or 1.0
            mesh = axes[i, j].pcolormesh(
                np.sort(lon % 360), lat[order], field, shading="nearest", cmap="RdBu_r", vmin=-bound, vmax=bound
            )
            fig.colorbar(mesh, ax=axes[i, j])
            name = variables[j] if variables else f"variable {j}"
            axes[i, j].set_title(f"bias {method}: {name}, +{lead:g} h", fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)


def plot_zonal_spectra(fields: FieldDiagnostics, path: Path, variables: list[str] | None = None) -> None:
    """Zonal energy spectra of the truth and every method at each diagnosed lead, per variable."""
    from matplotlib.figure import Figure

    keys = sorted(fields.power, key=lambda k: (k[1], k[0] != "truth", k[0]))
    n_var = next(iter(fields.power.values())).shape[0]
    fig = Figure(figsize=(3.6 * n_var, 3.0), layout="tight")
    axes = fig.subplots(1, n_var, squeeze=False)[0]
    dashes = {lead: ("-", "--", ":", "-.")[i % 4] for i, lead in enumerate(sorted({k[1] for k in keys}))}
    for method, lead in keys:
        power = fields.spectrum(method, lead).numpy()
        k = np.arange(1, power.shape[1])
        for j in range(n_var):
            axes[j].loglog(
                k,
                power[j, 1:],
                dashes[lead],
                color="k" if method == "truth" else None,
                lw=1,
                label=f"{method} +{lead:g} h",
            )
    for j in range(n_var):
        axes[j].set_title(variables[j] if variables else f"variable {j}", fontsize=9)
        axes[j].set_xlabel("zonal wavenumber")
    axes[0].set_ylabel("power")
    axes[0].legend(fontsize=6)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)


def plot_case(case, variable: str, index: int, lat: np.ndarray, lon: np.ndarray, units: str, path: Path) -> None:
    """Maps of truth, forecast and error of one variable for one initial time (``case``: a
    :class:`.report.Case`)."""
    from matplotlib.figure import Figure

    truth, forecast = case.truth[index], case.forecast[index]
    order, lon_order = np.argsort(lat), np.argsort(lon % 360)
    fields = {"truth": truth, "forecast": forecast, "forecast - truth": forecast - truth}
    fig = Figure(figsize=(13, 3.2), layout="tight")
    axes = fig.subplots(1, 3)
    for ax, (title, field) in zip(axes, fields.items()):
        field = field[order][:, lon_order]
        bound = np.abs(field).max()
        kw = (
            {"cmap": "RdBu_r", "vmin": -bound, "vmax": bound}
            if title == "forecast - truth"
            else {"vmin": truth.min(), "vmax": truth.max(), "cmap": "viridis"}
        )
        mesh = ax.pcolormesh(np.sort(lon % 360), lat[order], field, shading="nearest", **kw)
        fig.colorbar(mesh, ax=ax, label=units)
        ax.set_title(f"{title}: {variable}, +{case.lead:.0f} h", fontsize=9)
        ax.set_xlabel("longitude")
    axes[0].set_ylabel("latitude")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
