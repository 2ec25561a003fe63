# SPDX-License-Identifier: Apache-2.0
"""Ensembles side by side, over seeds: CRPS, spread/skill and rank histograms from evaluation folders.

    python examples/climax/compare_ensembles.py --out crps_figures \\
        --ensemble "CRPS fine-tune=runs/crps_s0/eval_model,runs/crps_s1/eval_model" \\
        --ensemble "spherical=runs/quickstart/eval_spherical_s0,runs/quickstart/eval_spherical_s1"

Each ``--ensemble NAME=DIR[,DIR...]`` names one kind of ensemble and the ``climax evaluate``
folders of its seeds (their ``scorecard.csv`` and ``rank_histogram.csv``, the ``model`` rows of
one region). The script writes into ``--out`` (a new folder, or one it wrote before with
``--overwrite``):

* ``scores.png``: CRPS and spread/skill against lead, one column per variable, each ensemble's
  mean over seeds with the range of the seeds shaded;
* ``rank_histograms.png``: the rank histograms at ``--lead`` (mean over seeds), one panel per
  variable, the flat frequency dashed;
* ``comparison.md`` (also printed): per variable and lead, each ensemble's CRPS, spread/skill,
  ensemble-mean RMSE and the rank histogram's distance from flat (total variation, 0: flat),
  as the mean over seeds and its range; and the ensemble of lowest CRPS in every seed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

SCORES = ["crps", "spread_skill", "rmse"]
OUTPUTS = ["scores.png", "rank_histograms.png", "comparison.md"]


def read_ensemble(name: str, folders: list[Path], region: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``model`` rows of ``region`` from every seed's folder, with a ``seed`` column.

    Returns
    -------
    scores : DataFrame
        ``ensemble, seed, variable, lead_hours`` and :data:`SCORES`.
    ranks : DataFrame
        ``ensemble, seed, variable, lead_hours, rank, frequency``.
    """
    scores, ranks = [], []
    for seed, folder in enumerate(folders):
        for file in ("scorecard.csv", "rank_histogram.csv"):
            if not (folder / file).is_file():
                raise SystemExit(f"--ensemble {name}: {folder} has no {file} (an ensemble evaluation folder?)")
        card = pd.read_csv(folder / "scorecard.csv")
        card = card[(card.method == "model") & (card.region == region)]
        hist = pd.read_csv(folder / "rank_histogram.csv")
        hist = hist[(hist.method == "model") & (hist.region == region)]
        if card.empty or card.crps.isna().all():
            raise SystemExit(f"--ensemble {name}: {folder} has no ensemble scores for region {region}")
        scores.append(card[["variable", "lead_hours", *SCORES]].assign(ensemble=name, seed=seed))
        ranks.append(hist[["variable", "lead_hours", "rank", "frequency"]].assign(ensemble=name, seed=seed))
    return pd.concat(scores, ignore_index=True), pd.concat(ranks, ignore_index=True)


def off_flat(ranks: pd.DataFrame) -> pd.DataFrame:
    """Total-variation distance of each rank histogram from the flat one: ``0.5 sum |f - 1/K|``."""
    flat = 1.0 / ranks.groupby(["ensemble", "seed", "variable", "lead_hours"])["rank"].transform("count")
    distance = (ranks.frequency - flat).abs() / 2
    return (
        ranks.assign(off_flat=distance)
        .groupby(["ensemble", "seed", "variable", "lead_hours"], as_index=False)["off_flat"]
        .sum()
    )


def summary(scores: pd.DataFrame, ranks: pd.DataFrame) -> pd.DataFrame:
    """Mean, min and max over seeds of every score, per ensemble, variable and lead."""
    table = scores.merge(off_flat(ranks), on=["ensemble", "seed", "variable", "lead_hours"])
    return table.groupby(["variable", "lead_hours", "ensemble"])[[*SCORES, "off_flat"]].agg(["mean", "min", "max"])


def plot_scores(table: pd.DataFrame, names: list[str], path: Path) -> None:
    """CRPS (top row) and spread/skill (bottom row) against lead, one column per variable."""
    variables = list(table.index.get_level_values("variable").unique())
    fig, axes = plt.subplots(2, len(variables), figsize=(3.6 * len(variables), 6), squeeze=False)
    for col, variable in enumerate(variables):
        for name in names:
            rows = table.xs((variable, name), level=("variable", "ensemble"))
            leads = rows.index.to_numpy()
            for row, score in enumerate(("crps", "spread_skill")):
                ax = axes[row, col]
                ax.plot(leads, rows[(score, "mean")], marker="o", label=name)
                ax.fill_between(leads, rows[(score, "min")], rows[(score, "max")], alpha=0.25)
        axes[0, col].set_title(variable)
        axes[1, col].axhline(1.0, color="k", lw=0.8, ls="--")
        axes[1, col].set_xlabel("lead (h)")
    axes[0, 0].set_ylabel("CRPS")
    axes[1, 0].set_ylabel("spread / skill")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_ranks(ranks: pd.DataFrame, names: list[str], lead: float, path: Path) -> None:
    """The rank histograms at ``lead`` (mean over seeds), one panel per variable."""
    at = ranks[ranks.lead_hours == lead]
    if at.empty:
        raise SystemExit(f"--lead {lead}: no rank histogram at that lead (leads: {sorted(ranks.lead_hours.unique())})")
    variables = list(at.variable.unique())
    fig, axes = plt.subplots(1, len(variables), figsize=(3.6 * len(variables), 3), squeeze=False)
    width = 0.8 / len(names)
    for ax, variable in zip(axes[0], variables):
        for k, name in enumerate(names):
            mean = at[(at.variable == variable) & (at.ensemble == name)].groupby("rank").frequency.mean()
            ax.bar(mean.index + (k - (len(names) - 1) / 2) * width, mean.values, width, label=name)
            ax.axhline(1.0 / len(mean), color="k", lw=0.8, ls="--")
        ax.set_title(f"{variable}, +{lead:g} h")
        ax.set_xlabel("rank of the truth")
    axes[0, 0].set_ylabel("frequency")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(table: pd.DataFrame, scores: pd.DataFrame, names: list[str]) -> str:
    """The comparison, one row per variable, lead and ensemble: ``mean (min–max)`` over seeds of
    each score, and in how many seeds the ensemble had the lowest CRPS at that variable and lead."""

    def cell(values, digits=3):
        if values["min"] == values["max"]:
            return f"{values['mean']:.{digits}g}"
        return f"{values['mean']:.{digits}g} ({values['min']:.{digits}g}–{values['max']:.{digits}g})"

    header = ["variable", "lead (h)", "ensemble", "CRPS", "spread/skill", "RMSE of the mean", "off flat", "lowest CRPS"]
    lines = ["| " + " | ".join(header) + " |", "|---|---:|---|---:|---:|---:|---:|---:|"]
    for (variable, lead), rows in table.groupby(level=["variable", "lead_hours"]):
        at = scores[(scores.variable == variable) & (scores.lead_hours == lead)]
        winners = at.loc[at.groupby("seed").crps.idxmin(), "ensemble"].value_counts()
        for name in names:
            values = rows.xs(name, level="ensemble").iloc[0]
            cells = [cell(values[score]) for score in ("crps", "spread_skill", "rmse", "off_flat")]
            wins = f"{winners.get(name, 0)}/{at.seed.nunique()}"
            lines.append("| " + " | ".join([variable, f"{lead:g}", name, *cells, wins]) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ensemble", action="append", required=True, metavar="NAME=DIR[,DIR...]")
    parser.add_argument("--out", required=True, type=Path, help="a new folder (or this script's, with --overwrite)")
    parser.add_argument("--region", default="global")
    parser.add_argument("--lead", type=float, default=None, help="lead of the rank histograms (default: the first)")
    parser.add_argument("--overwrite", action="store_true", help="replace this script's files in --out")
    args = parser.parse_args(argv)
    scores, ranks, names = [], [], []
    for given in args.ensemble:
        name, _, folders = given.partition("=")
        if not name or not folders:
            parser.error(f"--ensemble {given!r}: give NAME=DIR[,DIR...]")
        s, r = read_ensemble(name, [Path(f) for f in folders.split(",")], args.region)
        scores.append(s)
        ranks.append(r)
        names.append(name)
    scores, ranks = pd.concat(scores, ignore_index=True), pd.concat(ranks, ignore_index=True)
    check_out(args.out, args.overwrite)
    table = summary(scores, ranks)
    args.out.mkdir(parents=True, exist_ok=True)
    plot_scores(table, names, args.out / "scores.png")
    plot_ranks(
        ranks,
        names,
        args.lead if args.lead is not None else float(np.min(ranks.lead_hours)),
        args.out / "rank_histograms.png",
    )
    text = markdown(table, scores, names)
    (args.out / "comparison.md").write_text(text)
    print(text)


def check_out(out: Path, overwrite: bool) -> None:
    """``--out`` is a new folder, or holds only this script's files and ``--overwrite`` is given."""
    if not out.exists():
        return
    if not out.is_dir():
        raise SystemExit(f"--out {out} is a file; give a folder")
    others = sorted(p.name for p in out.iterdir() if p.name not in OUTPUTS)
    if others:
        raise SystemExit(
            f"--out {out} holds files this script did not write ({', '.join(others[:3])}); give a new folder"
        )
    if any(out.iterdir()) and not overwrite:
        raise SystemExit(f"--out {out} exists; pass --overwrite to replace its {', '.join(OUTPUTS)}")


if __name__ == "__main__":
    main()
