# SPDX-License-Identifier: Apache-2.0
"""ClimateBench evaluation: predict the test scenario, score the whole
``eval_years`` period at once with the NRMSEs, next to linear pattern
scaling, and draw the period-mean maps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from ..engine import checkpointing
from ..engine.checks import config_error
from ..engine.run_folder import data_root
from ..files import atomic_path, holding_only, output_folder
from ..models import mdlus
from .data import ClimateBenchDataset
from .model import ClimaXClimateBench
from .scores import nrmse, pattern_scaling
from .training import STATS_FILE, read_scenarios

#: The kind of output a ClimateBench report folder is (:func:`..files.output_folder`), and its files.
REPORT_KIND = "ClimateBench evaluation"
TABLE_FILES = ("climatebench.csv", "climatebench.json", "climatebench_maps.png")
#: Whether a folder without a marker is a ClimateBench report of an older version.
is_climatebench_report = holding_only(TABLE_FILES)


@torch.no_grad()
def evaluate(cfg: DictConfig) -> pd.DataFrame:
    """NRMSE table (model and pattern scaling) on ``task.test_scenario`` over ``task.eval_years``, with maps."""
    task, run_dir = cfg.task, Path(cfg.run_dir)
    model, _ = checkpointing.load_model(
        run_dir / "checkpoints", lambda file: mdlus.load_module(file, ClimaXClimateBench)
    )
    model.eval()
    saved = json.loads((run_dir / STATS_FILE).read_text())
    stats = (np.array(saved["mean"], np.float32), np.array(saved["std"], np.float32))
    cfg.data.root = data_root(cfg, run_dir)  # where the run's data are, from any folder
    scenarios = read_scenarios(cfg, [task.test_scenario, "historical", *task.train_scenarios])
    test = scenarios[task.test_scenario]
    first, last = task.eval_years
    period = (test.years >= first) & (test.years <= last)
    if not period.any():
        raise config_error(
            "task.eval_years", list(task.eval_years), f"outside the test years {test.years[0]}..{test.years[-1]}"
        )
    data = ClimateBenchDataset(
        [test], task.targets, history=task.history, stats=stats, historical=scenarios["historical"]
    )
    x = torch.stack([data[i]["x"] for i, (_, _, year) in enumerate(data.index) if first <= year <= last])
    # all years of the period are predicted before scoring: the NRMSEs see the whole period at once
    pred = torch.cat([model(chunk, model.variables) for chunk in x.split(cfg.eval.batch_size)]).numpy()
    rows, maps = [], {}
    train = [scenarios[n] for n in task.train_scenarios]
    for k, target in enumerate(task.targets):
        truth = test.outputs[target][period]
        baseline = pattern_scaling(train, test, target)[period]
        for method, field in (("climax", pred[:, k]), ("pattern_scaling", baseline)):
            rows.append({"method": method, "target": target, **nrmse(field, truth, test.lat)})
        maps[target] = (truth.mean(0), pred[:, k].mean(0), baseline.mean(0))
    table = pd.DataFrame(rows)
    record = {"test_scenario": task.test_scenario, "years": [first, last], "rows": rows}
    write_tables(cfg, table, record, maps, test, f"{task.test_scenario} {first}-{last} mean")
    return table


def summarize(table: pd.DataFrame, cfg: DictConfig) -> str:
    """What ``climax evaluate`` prints of a ClimateBench evaluation: the NRMSE table and where
    the files are."""
    return f"{table.to_string(index=False, float_format='%.4f')}\ntable and maps in {cfg.eval.out_dir}"


def write_tables(cfg: DictConfig, table: pd.DataFrame, record: dict, maps: dict, test, title: str) -> None:
    """``climatebench.csv``, ``climatebench.json`` and the maps into ``eval.out_dir``, as one set
    (:func:`..files.output_folder`: an earlier set is replaced only with ``eval.overwrite=true``)."""
    with output_folder(
        cfg.eval.out_dir,
        REPORT_KIND,
        overwrite=cfg.eval.overwrite,
        inputs=[cfg.run_dir],
        legacy=is_climatebench_report,
        option="eval.out_dir",
        hint="eval.overwrite=true",
    ) as out:
        table.to_csv(out / "climatebench.csv", index=False)
        (out / "climatebench.json").write_text(json.dumps(record, indent=1))
        plot_period_maps(maps, test.lat, test.lon, title, out / "climatebench_maps.png")


def plot_period_maps(maps: dict, lat, lon, title: str, path: Path) -> None:
    """Per target: truth, ClimaX and pattern-scaling period means, and ClimaX's error."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 2.6 * len(maps)), layout="constrained")
    axes = fig.subplots(len(maps), 4, squeeze=False)
    for row, (target, (truth, model, baseline)) in zip(axes, maps.items()):
        lo, hi = min(a.min() for a in (truth, model, baseline)), max(a.max() for a in (truth, model, baseline))
        for ax, field, name in zip(row, (truth, model, baseline), ("truth", "ClimaX", "pattern scaling")):
            image = ax.pcolormesh(lon, lat, field, vmin=lo, vmax=hi, cmap="RdBu_r" if lo < 0 < hi else "viridis")
            ax.set_title(f"{target}: {name}", fontsize=9)
        fig.colorbar(image, ax=row[:3], shrink=0.8)
        err = model - truth
        bound = float(np.abs(err).max()) or 1.0
        image = row[3].pcolormesh(lon, lat, err, vmin=-bound, vmax=bound, cmap="RdBu_r")
        row[3].set_title(f"{target}: ClimaX - truth", fontsize=9)
        fig.colorbar(image, ax=row[3], shrink=0.8)
    fig.suptitle(title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
