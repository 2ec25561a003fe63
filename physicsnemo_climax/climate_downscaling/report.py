# SPDX-License-Identifier: Apache-2.0
"""The files of a downscaling evaluation, written as one set into ``eval.out_dir``:
``scores.csv``, ``scores.json`` (the scores and what was scored), ``summary.md``,
``spectra.csv`` and ``spectra.png`` (zonal power of every method against the truth)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from ..files import atomic_path, output_folder
from ..forecasting.report import markdown_table

#: The kind of output a downscaling report folder is (:func:`..files.output_folder`).
DOWNSCALING_REPORT_KIND = "climate downscaling evaluation"
#: The metrics of the table, in the order shown.
METRIC_COLUMNS = ("rmse", "mean_bias", "area_weighted_bias", "pearson")
#: How each method's spectrum is drawn (the interpolations overlap at large scales: dashed and dotted).
LINE_STYLES = {
    "truth": dict(color="black", lw=2),
    "model": dict(color="tab:blue"),
    "bilinear": dict(color="tab:orange", ls="--"),
    "conservative": dict(color="tab:green", ls=":"),
}


def write_downscaling_report(cfg: DictConfig, table: pd.DataFrame, spectra: pd.DataFrame, record: dict) -> Path:
    """The evaluation's files into ``eval.out_dir`` (an earlier set is replaced only with
    ``eval.overwrite=true``); returns the folder."""
    with output_folder(
        cfg.eval.out_dir,
        DOWNSCALING_REPORT_KIND,
        overwrite=cfg.eval.overwrite,
        inputs=[cfg.run_dir],
        option="eval.out_dir",
        hint="eval.overwrite=true",
    ) as out:
        table.to_csv(out / "scores.csv", index=False)
        spectra.to_csv(out / "spectra.csv", index=False)
        (out / "scores.json").write_text(json.dumps({**record, "scores": table.to_dict("records")}, indent=1))
        (out / "summary.md").write_text(downscaling_summary(table, record))
        plot_downscaling_spectra(spectra, out / "spectra.png")
    return Path(cfg.eval.out_dir)


def downscaling_summary(table: pd.DataFrame, record: dict) -> str:
    """``summary.md``: what was scored, then one table per metric (variables x methods)."""
    pairs = record["pairs"]
    lines = [
        "# Climate downscaling evaluation",
        "",
        f"- split `{record['split']}`: {record['samples']} samples from {pairs['first']} to {pairs['last']}",
        f"- input store `{record['input_store']}`: {', '.join(record['variables'])}",
        f"- target store `{record['target_store']}`: {', '.join(record['out_variables'])}",
        f"- calendars: input {record['calendars']['input']}, target {record['calendars']['target']} "
        f"(rule `{pairs['calendar_rule']}`, {pairs['dropped_leap_days']} targets on 29 February dropped)",
        f"- residual over the bilinear interpolation: {record['residual']}; device {record['device']}",
        "",
    ]
    for metric in METRIC_COLUMNS:
        pivot = table.pivot(index="variable", columns="method", values=metric)
        lines += [f"## {metric}", "", markdown_table(pivot), ""]
    lines += ["Zonal power spectra: `spectra.csv`, `spectra.png`.", ""]
    return "\n".join(lines)


def plot_downscaling_spectra(spectra: pd.DataFrame, path: Path) -> None:
    """Zonal power against wavenumber, one panel per variable, every method and the truth (log-log)."""
    from matplotlib.figure import Figure

    names = list(dict.fromkeys(spectra.variable))
    fig = Figure(figsize=(4.2 * len(names), 3.4), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names):
        part = spectra[(spectra.variable == name) & (spectra.wavenumber > 0)]
        for method, rows in part.groupby("method", sort=False):
            ax.loglog(rows.wavenumber, rows.power, label=method, **LINE_STYLES.get(method, {}))
        # a field with no power at the last wavenumber (a smooth truth) would stretch the axis over decades
        ax.set_ylim(bottom=part.power.max() * 1e-12)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("zonal wavenumber")
    axes[0].set_ylabel("power")
    axes[0].legend(fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
