# SPDX-License-Identifier: Apache-2.0
"""The scaling study (ClimaX paper section 4.5): test RMSE of several trained and
evaluated runs against model size, training samples seen, distinct training data
and grid resolution, with fitted power laws (``climax report scaling``).

Each run folder gives one row per scored variable:

========================  ====================================================================
``embed_dim``, ``depth``  the saved ``config.yaml``'s ``model`` section
``params``                parameters of the scored model file, loaded as every model file of a
                          run is (:meth:`.run.Run.load`); buffers (a residual model's
                          climatology) are not parameters
``samples_seen``          training samples over all ranks up to the scored checkpoint, as the
                          engine records them in every checkpoint (older runs: optimizer steps
                          x ``train.total_batch_size``, or ``batch_size x grad_accum`` on one rank)
``train_samples``         time steps in the training split of the run's stores: the distinct
                          training data (``data.root`` and every ``data.extra_sources`` store)
``pretrain_samples``      the same of the run ``init=`` names a model file of (the pretraining
                          data of a fine-tuned run); empty without one
``resolution_deg``        the grid spacing of ``run.json``'s longitudes
``rmse``                  the model's global RMSE at the lead, from ``<run>/eval/scorecard.csv``
========================  ====================================================================

:func:`fit_power_laws` fits ``rmse = a * x ** slope`` per variable by least squares of
``log rmse`` on ``log x`` (``numpy.polyfit``, degree 1), runs that differ in another axis kept
in separate groups; a group needs two distinct ``x`` values.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from ..data.streamed import open_store
from ..engine.checkpointing import checkpoint_steps, files_of, model_file, saved_metadata
from ..engine.run_folder import read_run_record
from ..errors import ClimaxError, InputError
from ..files import atomic_path, output_folder, write_atomic
from .report import main_region
from .run import Run, locate_run

logger = logging.getLogger(__name__)

#: The kind of output a scaling report folder is (:func:`..files.output_folder`).
SCALING_REPORT = "scaling report"
#: The axes RMSE is fitted against, and the columns that tell runs of one group apart for each.
AXES = {
    "params": ("samples_seen", "train_samples", "pretrain_samples", "resolution_deg"),
    "samples_seen": ("embed_dim", "depth", "train_samples", "pretrain_samples", "resolution_deg"),
    "train_samples": ("embed_dim", "depth", "samples_seen", "pretrain_samples", "resolution_deg"),
    "pretrain_samples": ("embed_dim", "depth", "samples_seen", "train_samples", "resolution_deg"),
    "resolution_deg": ("embed_dim", "depth", "samples_seen", "train_samples", "pretrain_samples"),
}
#: Axis titles of the figure.
TITLES = {
    "params": "parameters",
    "samples_seen": "training samples seen",
    "train_samples": "distinct training samples (time steps)",
    "pretrain_samples": "distinct pretraining samples (time steps)",
    "resolution_deg": "grid spacing (degrees)",
}
#: How the fit is made, written with it.
FIT_METHOD = "least squares of log(rmse) on log(x) (numpy.polyfit, degree 1): rmse = exp(intercept) * x**slope"


@dataclass(frozen=True)
class RunFacts:
    """What one run folder says about its place in a scaling study (see the module docstring)."""

    run: str
    embed_dim: int
    depth: int
    params: int
    steps: int
    samples_seen: int
    train_samples: float
    pretrain_samples: float
    resolution_deg: float


def run_facts(run_dir: str | Path, checkpoint: str | None = None) -> RunFacts:
    """The :class:`RunFacts` of ``run_dir`` at its checkpoint ``checkpoint`` (a model file's name,
    default the newest intact one).

    Raises
    ------
    InputError
        When ``run_dir`` is not a readable training run (its ``run.json``, ``config.yaml``
        or checkpoints), naming it.
    """
    run_dir = Path(run_dir)
    try:
        info = read_run_record(run_dir)
        cfg = OmegaConf.load(run_dir / "config.yaml")
        folder = run_dir / "checkpoints"
        file = folder / checkpoint if checkpoint else model_file(folder)
        if not file.is_file():  # pruned by training on after the evaluation
            raise InputError(f"the scored model file {file.name} is gone: evaluate the run again")
        step = int(file.name.rsplit(".", 2)[-2])  # <Model>.0.<step>.mdlus
        params = sum(p.numel() for p in Run.load(file, "cpu").model.parameters())
        seen = samples_seen(folder, step, cfg.train)
    except (ClimaxError, OSError, ValueError) as err:
        raise InputError(f"{run_dir}: not a readable training run ({err})") from err
    return RunFacts(
        run=str(run_dir),
        embed_dim=int(cfg.model.embed_dim),
        depth=int(cfg.model.depth),
        params=int(params),
        steps=step,
        samples_seen=seen,
        train_samples=training_samples([info.data_root or cfg.data.root, *extra_roots(cfg)]),
        pretrain_samples=pretraining_samples(cfg.get("init")),
        resolution_deg=grid_spacing(info.lon),
    )


def samples_seen(folder: Path, step: int, train) -> int:
    """Training samples seen up to checkpoint ``step`` of the run whose ``train`` section is given:
    as the checkpoint records them, else ``step`` times the samples of an optimizer step."""
    recorded = saved_metadata(folder, step).get("samples_seen") if step in checkpoint_steps(folder) else None
    if recorded is not None:
        return int(recorded)
    total = train.get("total_batch_size")
    per_step = int(total) if total is not None else int(train.batch_size) * int(train.grad_accum)
    logger.warning(
        "%s: checkpoint %s does not record the samples seen; counted as %s steps x %s samples (one rank "
        "assumed unless train.total_batch_size is set)",
        files_of(folder, step)["model"].parent.parent,
        step,
        step,
        per_step,
    )
    return step * per_step


def extra_roots(cfg) -> list[str]:
    """The stores of ``data.extra_sources`` (pretraining on several sources)."""
    return [str(source.root) for source in (cfg.data.get("extra_sources") or [])]


def training_samples(roots: Sequence[str]) -> float:
    """Time steps in the training splits of the stores ``roots``, NaN when one cannot be read
    (a store moved since training)."""
    try:
        return float(sum(shard.steps for root in roots for shard in open_store(root).shards("train")))
    except (ClimaxError, OSError) as err:
        logger.warning("distinct training data unknown: %s", err)
        return math.nan


def pretraining_samples(init: str | None) -> float:
    """:func:`training_samples` of the run that the model file ``init`` belongs to: the data a
    fine-tuned run was pretrained on. NaN without ``init``, for a file outside a run folder (an
    official checkpoint) or a run that cannot be read."""
    if not init:
        return math.nan
    try:
        run_dir, _ = locate_run(init, "init")
        saved = OmegaConf.load(run_dir / "config.yaml")
        return training_samples([read_run_record(run_dir).data_root or saved.data.root, *extra_roots(saved)])
    except (ClimaxError, OSError, ValueError) as err:
        logger.warning("pretraining data unknown: %s", err)
        return math.nan


def grid_spacing(lon: Sequence[float]) -> float:
    """The grid spacing in degrees: the median step between longitudes (NaN for fewer than two)."""
    steps = np.abs(np.diff(np.asarray(lon, dtype=float)))
    return float(np.median(steps)) if steps.size else math.nan


# ------------------------------------------------------------------ the table
def scored_rmse(run_dir: str | Path, lead: float, variables: Sequence[str] | None) -> tuple[pd.DataFrame, str | None]:
    """The model's RMSE at ``lead`` in the main region of ``<run_dir>/eval`` (``climax evaluate``'s
    default output), one row per variable, and the name of the model file that was scored.

    Raises
    ------
    InputError
        When the run has no evaluation (naming the command that makes one), or it lacks the lead
        or a variable (listing those it has).
    """
    folder = Path(run_dir) / "eval"
    command = f"climax evaluate run_dir={run_dir} eval.leads=[{lead:g}]"
    if not (folder / "scorecard.csv").is_file():
        raise InputError(f"{run_dir} has no evaluation ({folder}/scorecard.csv): make it with `{command}`")
    model, meta = model_scores(folder)
    leads = sorted(model.lead_hours.unique())
    if not np.isclose(leads, lead).any():
        raise InputError(f"{run_dir} was evaluated at leads {[f'{x:g}' for x in leads]} h, not {lead:g} h: `{command}`")
    model = model[np.isclose(model.lead_hours, lead)]
    wanted = list(variables or model.variable)
    missing = sorted(set(wanted) - set(model.variable))
    if missing:
        raise InputError(f"{run_dir}: its evaluation has no {missing} (it scored {sorted(model.variable)})")
    rows = model.set_index("variable").loc[wanted, ["rmse"]].reset_index()
    return rows.assign(lead=float(lead)), meta.get("checkpoint")


def model_scores(folder: Path) -> tuple[pd.DataFrame, dict]:
    """The model's rows of the scorecard in ``folder``, main region, and its ``scorecard.json``
    metadata (empty when absent).

    Raises
    ------
    InputError
        When the scorecard cannot be read as one, naming it.
    """
    try:
        table = pd.read_csv(folder / "scorecard.csv")
        meta = json.loads((folder / "scorecard.json").read_text()) if (folder / "scorecard.json").is_file() else {}
        return table[(table.method == "model") & (table.region == main_region(table))], meta
    except (OSError, ValueError, AttributeError, KeyError) as err:  # damaged, or not a scorecard
        raise InputError(f"{folder / 'scorecard.csv'} is not a readable scorecard ({err})") from err


def scaling_table(
    runs: Sequence[str | Path], lead: float = 72.0, variables: Sequence[str] | None = None
) -> pd.DataFrame:
    """One row per run and variable: the run's :class:`RunFacts`, ``lead``, ``variable``, ``rmse``.

    Parameters
    ----------
    runs : sequence of path
        Two or more trained and evaluated run folders.
    lead : float
        Hours; every run must have been evaluated at it.
    variables : sequence of str, optional
        Default: those the first run scored; every run must have scored them.

    Raises
    ------
    InputError
        Fewer than two runs, one named twice, a run unreadable or without evaluation, or runs
        that scored other variables than the first.
    """
    if len({Path(r).resolve() for r in runs}) < 2:
        raise InputError(f"a scaling report compares two or more different runs; got {[str(r) for r in runs]}")
    parts = []
    for run in runs:
        rmse, checkpoint = scored_rmse(run, lead, variables)
        variables = variables or list(rmse.variable)  # the first run's, for the others to match
        facts = asdict(run_facts(run, checkpoint))
        parts.append(rmse.assign(**facts))
    table = pd.concat(parts, ignore_index=True)
    columns = ["run", "embed_dim", "depth", "params", "steps", "samples_seen", "train_samples", "pretrain_samples"]
    columns += ["resolution_deg"]
    return table[columns + ["lead", "variable", "rmse"]]


# ------------------------------------------------------------------ the fits
def power_law(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """``(slope, intercept, r2)`` of ``log y = intercept + slope * log x`` by least squares.

    ``r2`` is the share of the variance of ``log y`` the line explains (1 for two points, NaN when
    ``log y`` does not vary). NaN throughout for fewer than two distinct ``x``.
    """
    log_x, log_y = np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float))
    if np.unique(log_x).size < 2:
        return math.nan, math.nan, math.nan
    slope, intercept = np.polyfit(log_x, log_y, 1)
    total = float(np.sum((log_y - log_y.mean()) ** 2))
    residual = float(np.sum((log_y - (intercept + slope * log_x)) ** 2))
    r2 = 1.0 - residual / total if total > 0 else math.nan
    return float(slope), float(intercept), r2


def fit_power_laws(table: pd.DataFrame) -> pd.DataFrame:
    """A power law of RMSE per axis of :data:`AXES`, variable and group of runs that agree on the
    axis's other columns (:func:`groups`); only groups with two or more distinct values of the axis.

    Returns
    -------
    DataFrame
        ``axis, variable, group, points, slope, intercept, r2``; ``group`` names the columns held
        fixed (``train_samples=1632, ...``), only those that vary between runs.
    """
    rows = []
    for axis in AXES:
        for variable, group, part in groups(table, axis):
            slope, intercept, r2 = power_law(part[axis], part.rmse)
            rows.append(
                dict(
                    axis=axis, variable=variable, group=group, points=len(part), slope=slope, intercept=intercept, r2=r2
                )
            )
    return pd.DataFrame(rows, columns=["axis", "variable", "group", "points", "slope", "intercept", "r2"])


def groups(table: pd.DataFrame, axis: str):
    """``(variable, group, rows)`` of ``table`` that differ only in ``axis`` and have two or more
    distinct values of it; ``group`` names the other columns of :data:`AXES` that vary between
    runs, with this group's values (``""`` when none vary)."""
    varying = [c for c in AXES[axis] if table[c].nunique(dropna=False) > 1]
    for key, part in table.groupby(["variable", *varying], dropna=False, sort=True):
        if part[axis].nunique() >= 2 and not part[axis].isna().any():
            yield key[0], ", ".join(f"{c}={v:g}" for c, v in zip(varying, key[1:])), part.sort_values(axis)


# ------------------------------------------------------------------ the report
def plot_scaling(table: pd.DataFrame, fits: pd.DataFrame, path: Path) -> None:
    """RMSE against each axis that has a fit, log-log: a row of panels per variable (each on its
    own scale), a column per axis, a line per group of runs (:func:`groups`) with its fitted slope
    and R^2 of ``fits`` in the legend."""
    from matplotlib.figure import Figure

    shown = [axis for axis in AXES if (fits.axis == axis).any()]
    variables = list(dict.fromkeys(table.variable))
    fig = Figure(figsize=(4.2 * len(shown), 2.6 * len(variables)), layout="tight")
    panels = fig.subplots(len(variables), len(shown), squeeze=False)
    fit = fits.set_index(["axis", "variable", "group"])
    for j, axis in enumerate(shown):
        for variable, group, part in groups(table, axis):
            panel = panels[variables.index(variable), j]
            slope, r2 = fit.loc[(axis, variable, group), ["slope", "r2"]]
            panel.plot(part[axis], part.rmse, "o-", label=f"{group or 'all runs'}: slope {slope:.3f}, R² {r2:.2f}")
        for i, variable in enumerate(variables):
            panels[i, j].set(xscale="log", yscale="log", title=variable)
            panels[i, j].legend(fontsize=6)
        panels[-1, j].set_xlabel(TITLES[axis])
    for i in range(len(variables)):
        panels[i, 0].set_ylabel(f"RMSE at {table.lead.iloc[0]:g} h")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)


def write_scaling_report(
    runs: Sequence[str | Path],
    out: str | Path,
    lead: float = 72.0,
    variables: Sequence[str] | None = None,
    overwrite: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``scaling.csv`` (:func:`scaling_table`), ``fits.csv`` (:func:`fit_power_laws`), ``scaling.json``
    (both, with the fit method) and ``scaling.png`` (:func:`plot_scaling`) in the new folder ``out``.

    ``out`` is written as one set and swapped in; an existing folder is replaced only when it is an
    earlier scaling report and ``overwrite`` is true. Returns the table and the fits.

    Raises
    ------
    InputError
        From :func:`scaling_table`, before anything is written.
    OutputError
        When ``out`` may not be replaced or is inside a run.
    """
    table = scaling_table(runs, lead, variables)
    fits = fit_power_laws(table)
    with output_folder(out, SCALING_REPORT, overwrite=overwrite, inputs=list(runs), option="--out") as staging:
        for name, frame in (("scaling.csv", table), ("fits.csv", fits)):
            with atomic_path(staging / name) as tmp:
                frame.to_csv(tmp, index=False)
        record = {"lead_hours": float(lead), "fit_method": FIT_METHOD, "runs": records(table), "fits": records(fits)}
        write_atomic(staging / "scaling.json", json.dumps(record, indent=1))
        if fits.empty:
            logger.warning("no axis has two distinct values within a group: no fit, no figure")
        else:
            plot_scaling(table, fits, staging / "scaling.png")
    return table, fits


def records(frame: pd.DataFrame) -> list[dict]:
    """The rows of ``frame`` as JSON-ready dicts (NaN as ``null``)."""
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in frame.to_dict("records")
    ]
