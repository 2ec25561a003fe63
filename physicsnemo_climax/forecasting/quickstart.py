# SPDX-License-Identifier: Apache-2.0
"""The main job (``climax quickstart``): the embedded Held-Suarez data simulated (cached)
and prepared, a small ClimaX trained and evaluated, the scorecard and its verdicts printed.

The quickstart owns its ``data.root`` and ``run_dir``: it rebuilds them when the
simulation changes, and refuses folders it did not make.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..data.simulate import prepare_simulation, write_simulation
from ..engine.run_folder import read_run_record
from ..errors import OutputError
from ..files import write_atomic
from .evaluation import evaluate
from .report import main_region, summary, verdicts
from .training import train


def quickstart(cfg: DictConfig) -> None:
    """Simulate (cached), prepare, train a small ClimaX, evaluate, print the scorecard and verdicts.

    Parameters
    ----------
    cfg : DictConfig
        ``conf/quickstart.yaml`` with the command line's overrides.
    """
    sim, store = cfg.simulation, Path(cfg.data.root)
    made_from = store / "made_from.json"
    if store.exists() and any(store.iterdir()) and not made_from.exists():  # before minutes of simulation
        raise OutputError(
            f"data.root={store} holds a store not made by the quickstart (no {made_from.name}); "
            "the quickstart rebuilds its own store when the simulation changes: give it a new folder"
        )
    raw = write_simulation(sim.raw_dir, sim.days, sim.spinup_days, sim.seed)  # cached
    stamp = json.loads((Path(raw) / "simulation.json").read_text())["params"]
    wanted = {"simulation": stamp, "splits": OmegaConf.to_container(sim.splits)}
    if not made_from.exists() or json.loads(made_from.read_text()) != wanted:
        check_quickstart_run(Path(cfg.run_dir), store)
        shutil.rmtree(store, ignore_errors=True)
        shutil.rmtree(Path(cfg.run_dir), ignore_errors=True)  # trained on other data
        prepare_simulation(raw, store, sim.splits)
        write_atomic(made_from, json.dumps(wanted, indent=1))
    print(f"data: {store}")
    run_dir = train(cfg)
    table = evaluate(cfg)
    print(summary(table))
    print(verdicts(table[table.region == main_region(table)]))
    print(f"run folder {run_dir}; scorecard and plots in {cfg.eval.out_dir}")


def check_quickstart_run(run_dir: Path, store: Path) -> None:
    """Refuse to delete ``run_dir`` unless it is empty or a run trained on the quickstart's ``store``."""
    if not run_dir.exists() or not any(run_dir.iterdir()):
        return
    try:
        recorded = read_run_record(run_dir).data_root
    except (OSError, ValueError):  # no run.json, or a damaged one: not a run the quickstart made
        recorded = None
    root = Path(recorded) if recorded else None
    if root is None or root.resolve() != store.resolve():
        raise OutputError(
            f"run_dir={run_dir} is not a quickstart run on {store}; the quickstart retrains its own "
            "run when its data change: give it a new run_dir"
        )
