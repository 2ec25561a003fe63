# SPDX-License-Identifier: Apache-2.0
"""Downscaling evaluation: the run against bilinear and conservative interpolation.

The test split (``eval.split``) of the run's stores is paired as in
training; at most ``eval.max_samples`` samples, evenly spread, are scored.
Each output is scored for the model and, when it is also an input, for the
bilinear and the conservative interpolation of the input
(:func:`..data.regrid.regrid_weights`), with :class:`.scores.DownscalingScores`.
:mod:`.report` writes the files into ``eval.out_dir``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from ..data.regrid import regrid_weights
from ..data.store import ShardStore, StoreError
from ..data.streamed import open_store
from ..engine.run_folder import data_root
from ..errors import DataError
from .data import PairedFields, StorePair, bilinear_matrices, interpolate
from .inference import DownscalingRun
from .pairing import pair_times
from .report import write_downscaling_report
from .scores import DownscalingScores


def run_stores(cfg: DictConfig, run: DownscalingRun) -> StorePair:
    """The stores the run was trained on, with its variables and statistics: where ``run.json``
    records them, or ``data.root`` / ``data.input_root`` when the command line moves them.

    Raises
    ------
    DataError
        A store missing, or whose fingerprint is not the one recorded (naming the key to give).
    """
    facts = run.facts
    saved = OmegaConf.load(run.run_dir / "config.yaml").data.get("input_root")
    given = cfg.data.get("input_root")
    input_root = given if given is not None and str(given) != str(saved) else facts["input_root"]
    target = checked_store("data.root", data_root(cfg, run.run_dir), run.info.data_fingerprint, run.run_dir)
    source = checked_store("data.input_root", input_root, facts["input_fingerprint"], run.run_dir)
    names = (facts["input_variables"], facts["constants"], run.info.out_variables)
    return StorePair(source, target, *(tuple(n) for n in names), run.statistics)


def checked_store(key: str, root, fingerprint: str, run_dir: Path) -> ShardStore:
    """The store at ``root``, refused unless its fingerprint is the recorded one."""
    try:
        store = open_store(root)
    except StoreError as err:
        raise DataError(f"{key}: {err}; give {key}=<the store the run was trained on>") from err
    if store.fingerprint != fingerprint:
        raise DataError(
            f"{root} is not the store the run {run_dir} was trained on (its fingerprint differs from "
            f"run.json's); give {key}=<the training store>"
        )
    return store


def physical(fields: torch.Tensor, stats: dict, names) -> torch.Tensor:
    """Normalized ``[B, V, H, W]`` fields of ``names`` back in physical units (float64)."""
    mean = torch.tensor([stats[n]["mean"] for n in names], dtype=torch.float64)[:, None, None]
    std = torch.tensor([stats[n]["std"] for n in names], dtype=torch.float64)[:, None, None]
    return fields.double().cpu() * std + mean


def evenly(n: int, most: int | None) -> list[int]:
    """At most ``most`` of ``range(n)``, evenly spread (all when ``most`` is ``None``)."""
    if most is None or n <= most:
        return list(range(n))
    return np.unique(np.linspace(0, n - 1, most).round().astype(int)).tolist()


@torch.no_grad()
def evaluate(cfg: DictConfig) -> pd.DataFrame:
    """Scores of the run and of both interpolations on ``eval.split``; the files into ``eval.out_dir``.

    Returns
    -------
    pd.DataFrame
        One row per method (``model``, ``bilinear``, ``conservative``) and output variable:
        ``rmse``, ``mean_bias``, ``area_weighted_bias``, ``pearson``, ``samples``.
    """
    run = DownscalingRun.load(cfg.run_dir, cfg.eval.device, "eval.device")
    pair = run_stores(cfg, run)
    pairs = pair_times(pair.input_store, pair.target_store, cfg.eval.split)
    data = PairedFields(pair, pairs)
    chosen = evenly(len(data), cfg.eval.max_samples)
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(data, chosen), batch_size=cfg.eval.batch_size)
    scores = score_batches(run, pair, loader)
    table = scores.table()
    record = {
        "split": cfg.eval.split,
        "samples": len(chosen),
        "device": str(run.device),
        "checkpoint": str(run.checkpoint.resolve()),
        "input_store": str(pair.input_store.root.resolve()),
        "target_store": str(pair.target_store.root.resolve()),
        "variables": list(pair.variables),
        "constants": list(pair.constants),
        "out_variables": list(pair.out_variables),
        "residual": run.facts["residual"],
        "calendars": run.facts["calendars"],
        "pairs": pairs.summary(),
    }
    write_downscaling_report(cfg, table, scores.spectra(), record)
    return table


def score_batches(run: DownscalingRun, pair: StorePair, loader) -> DownscalingScores:
    """The model and both interpolations scored over ``loader``'s batches of :class:`.data.PairedFields`."""
    source, target = pair.input_store, pair.target_store
    stats, outs = run.statistics, list(pair.out_variables)
    shared = [v for v in outs if v in pair.variables]  # outputs an interpolation can predict
    matrices = {
        "bilinear": bilinear_matrices(source.lat, source.lon, target.lat, target.lon),
        "conservative": tuple(
            torch.as_tensor(w, dtype=torch.float64)
            for w in regrid_weights(source.lat, source.lon, target.lat, target.lon, "conservative")
        ),
    }
    # the baselines interpolate the coarse fields in physical units and float64 (interpolate casts the weights)
    scores = DownscalingScores(torch.as_tensor(target.lat), {v: stats["target"][v]["mean"] for v in outs})
    for batch in loader:
        truth = physical(batch["y"], stats["target"], outs)
        scores.add("model", outs, physical(run.predict(batch["x"]), stats["target"], outs), truth)
        if shared:
            rows = [list(pair.variables).index(v) for v in shared]
            coarse = physical(batch["coarse"][:, rows], stats["input"], shared)
            for method, weights in matrices.items():
                scores.add(method, shared, interpolate(coarse, weights), truth[:, [outs.index(v) for v in shared]])
    return scores


def summarize(table: pd.DataFrame, cfg: DictConfig) -> str:
    """What ``climax evaluate`` prints: the scores of every method per variable, and where the files are."""
    shown = table.set_index(["variable", "method"]).drop(columns="samples").sort_index()
    return f"{shown.to_string(float_format=lambda v: f'{v:.4g}')}\nscores, spectra and summary in {cfg.eval.out_dir}"
