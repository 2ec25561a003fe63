# SPDX-License-Identifier: Apache-2.0
"""Scores and spectra of a downscaling generation file: the CorrDiff ensemble
against the regression-only and bilinear baselines.

The file (written by the generation step) has a root with ``time`` and
optional ``lat(y, x)`` / ``lon(y, x)``, and groups ``input`` (the coarse input
bilinearly upsampled, ``(time, y, x)`` per channel), ``regression``
(``(time, y, x)``, optional), ``prediction`` (``(ensemble, time, y, x)``) and
``truth`` (``(time, y, x)``, needed for scores). Deterministic baselines are
scored as 1-member ensembles.

All means are uniform over points (time, y, x): the grid is a regional
km-scale one, so no latitude weights.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import torch
import xarray as xr

from ..errors import ConfigError, DataError, InputError
from ..files import atomic_path, holding_only, write_atomic
from ..forecasting.scoring import METRICS, Metric, Scorer, Verification
from ..metrics import crps_map

GROUPS = ("input", "regression", "prediction", "truth")
METHODS = ("corrdiff", "regression", "bilinear")
SCORE_COLUMNS = ["method", "variable", "rmse", "mae", "crps", "spread", "spread_skill"]
TIME_COLUMNS = ["time", *SCORE_COLUMNS]
#: The columns of a file whose inputs were forecasts, scored per lead.
LEAD_SCORE_COLUMNS = [*SCORE_COLUMNS[:2], "lead_hours", *SCORE_COLUMNS[2:]]
#: ``--spread-ddof``: 1, the unbiased member variance (the default); 0, the population one (upstream's ``std``).
SPREAD_DDOF = (0, 1)
_CHUNK_ELEMENTS = 2**24  # values of one member stack read at once, ~128 MB in float64


# ----------------------------------------------------------------------------- scores


#: The deterministic scores (of the ensemble mean) and the ensemble ones, through the ClimaX
#: scorecards' :class:`..forecasting.scoring.Scorer`; CRPS in the empirical form upstream uses.
DETERMINISTIC = {k: METRICS[k] for k in ("rmse", "mae")}
ENSEMBLE = {
    "crps": Metric(lambda m, v: (crps_map(m, v.truth, fair=False),)),
    "spread": Metric(
        lambda m, v: (m.var(dim=0, correction=1) if m.shape[0] > 1 else torch.zeros_like(v.truth),), finish=torch.sqrt
    ),
}


def domain_scorer(shape: tuple[int, int]) -> Scorer:
    """A scorer of one variable with uniform weights over a ``(y, x)`` domain (a regional km-scale
    grid: no latitude weights), in float64, with no baselines."""
    uniform = {"domain": torch.full(shape, 1.0 / (shape[0] * shape[1]), dtype=torch.float64)}
    return Scorer(["field"], uniform, DETERMINISTIC, ENSEMBLE, baselines={}, dtype=torch.float64)


def add_chunk(scorer: Scorer, pred: torch.Tensor, obs: torch.Tensor, lead_hours: float = 0.0) -> None:
    """Score ``pred`` ``[N, t, y, x]`` against ``obs`` ``[t, y, x]`` (each time a sample), at a lead
    of ``lead_hours`` when the inputs were forecasts."""
    pred, obs = _checked(pred, obs)
    truth = obs[:, None]
    scorer.add(
        float(lead_hours),
        pred[:, :, None],
        Verification(truth, torch.zeros_like(truth[:1]), None, torch.zeros(1)),
        baselines=False,
    )


def _checked(pred, obs) -> tuple[torch.Tensor, torch.Tensor]:
    pred, obs = torch.as_tensor(pred, dtype=torch.float64), torch.as_tensor(obs, dtype=torch.float64)
    if pred.shape[1:] != obs.shape:
        raise InputError(f"pred {tuple(pred.shape)} must be [N, *obs.shape], obs is {tuple(obs.shape)}")
    return pred, obs


def finalize(scorer: Scorer, members: int, spread_ddof: int = 1, lead_hours: float = 0.0) -> dict[str, float]:
    """The scores of :func:`ensemble_scores` at ``lead_hours`` from a scorer fed by :func:`add_chunk`."""
    if spread_ddof not in SPREAD_DDOF:
        raise ConfigError(f"spread_ddof={spread_ddof!r}: choose 1 (unbiased member variance) or 0 (population)")
    table = scorer.table()
    row = table[table.lead_hours == float(lead_hours)].iloc[0]
    rmse, unbiased = float(row.rmse), float(row.spread)
    ratio = math.sqrt((members + 1) / members) * unbiased / rmse if rmse > 0 else math.nan
    spread = unbiased * math.sqrt((members - 1) / members) if spread_ddof == 0 else unbiased
    return {"rmse": rmse, "mae": float(row.mae), "crps": float(row.crps), "spread": spread, "spread_skill": ratio}


def ensemble_scores(pred: torch.Tensor, obs: torch.Tensor, spread_ddof: int = 1) -> dict[str, float]:
    """Ensemble scores averaged uniformly over all points (every non-ensemble dim).

    Parameters
    ----------
    pred : torch.Tensor
        ``[N, ...]`` ensemble (``N = 1`` for a deterministic forecast).
    obs : torch.Tensor
        ``[...]`` truth.

    Returns
    -------
    dict of str to float
        Python floats, computed in float64:

        * ``rmse``: ``sqrt(mean((mean_N pred - obs)^2))`` (one square root of the
          mean over all points, not a mean of per-time RMSEs);
        * ``mae``: ``mean(|mean_N pred - obs|)``;
        * ``crps``: mean of :func:`..metrics.crps_map` with ``fair=False`` (the code
          ClimaX scorecards use, there in the fair form): PhysicsNeMo's kernel
          estimator ``E|X - y| - E|X - X'| / 2`` over the empirical ensemble
          distribution, as upstream CorrDiff's scores (``properscoring``) compute
          it (equals ``mae`` for ``N = 1``);
        * ``spread``: ``sqrt(mean(var_N pred))``, the member variance divided
          by ``N - spread_ddof``: ``N - 1`` (unbiased, the default) or ``N``
          (population, as upstream's ``score_samples.py`` takes ``std``); 0
          for ``N = 1``;
        * ``spread_skill``: ``sqrt((N + 1) / N) * spread_unbiased / rmse``, i.e.
          the finite-ensemble correction of Fortin et al. (2014) applied to the
          unbiased spread, so that a statistically consistent ensemble scores
          1 at any ``N``, whatever ``spread_ddof``. 0 for ``N = 1``; NaN when
          ``rmse`` is 0.
    """
    pred, obs = _checked(pred, obs)
    scorer = domain_scorer((1, max(obs.numel(), 1)))
    add_chunk(scorer, pred.reshape(pred.shape[0], 1, 1, -1), obs.reshape(1, 1, -1))
    return finalize(scorer, pred.shape[0], spread_ddof)


# ----------------------------------------------------------------------------- spectra


def radial_spectrum(field: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Isotropic power spectrum of the last two dims, ``[..., H, W] -> (k [K], power [..., K])``.

    ``k = i / n`` for ``i = 0 .. n // 2`` with ``n = min(H, W)``: wavenumber in
    cycles per grid spacing, from 0 to the Nyquist 0.5 (wavelength ``1 / k``
    grid spacings; divide by the grid spacing in km for cycles per km).
    ``power[..., i]`` sums ``|X_hat|^2`` of the forward-normalised 2-D DFT
    over the modes whose radial frequency ``hypot(fy, fx)`` rounds to ``k[i]``
    (rings of width ``1 / n``), so ``power.sum(-1)`` is the mean of ``field^2``
    less the corner modes beyond Nyquist; ``power[..., 0]`` is the squared mean.
    No taper: a regional field's boundary jump leaks some power to high ``k``,
    alike for every method.

    Not :func:`physicsnemo.metrics.general.power_spectrum.power_spectrum`: its
    bins are ``min(H, W) // 2 - 1`` linear ones in raw index units, about 1.5
    indices wide and running out to the corners, so bin 0 mixes the mean with
    the first modes, a non-square grid mixes different frequencies along y and
    x, and an odd width shifts the centre by half an index.
    """
    x = torch.as_tensor(field, dtype=torch.float64)
    h, w = x.shape[-2:]
    n = min(h, w)
    fy, fx = torch.fft.fftfreq(h, dtype=torch.float64), torch.fft.fftfreq(w, dtype=torch.float64)
    f = torch.hypot(fy[:, None], fx)
    ring = torch.round(f * n).long().flatten()
    keep = ring <= n // 2
    pwr = torch.fft.fft2(x, norm="forward").abs().square().flatten(-2)[..., keep]
    power = pwr.new_zeros(*x.shape[:-2], n // 2 + 1).index_add_(-1, ring[keep], pwr)
    return torch.arange(n // 2 + 1, dtype=torch.float64) / n, power


# ----------------------------------------------------------------------------- files


@contextmanager
def open_groups(path: str | Path) -> Iterator[dict[str, xr.Dataset]]:
    """Lazily opened groups of a generation file, ``{"input"|"regression"|"prediction"|"truth": Dataset}``.

    Groups absent from the file are absent from the dict; ``"root"`` holds the
    root dataset (``time``, optional ``lat``/``lon``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no generation file at {path}")
    with netCDF4.Dataset(path) as nc:
        present = set(nc.groups)
    with ExitStack() as stack:
        out = {"root": stack.enter_context(xr.open_dataset(path))}
        for g in GROUPS:
            if g in present:
                out[g] = stack.enter_context(xr.open_dataset(path, group=g))
        yield out


def _output_variables(groups: dict, path, variables: Sequence[str] | None, need_truth: bool) -> list[str]:
    if "prediction" not in groups:
        raise DataError(f"{path}: no 'prediction' group (groups: {sorted(set(groups) - {'root'})})")
    if need_truth and "truth" not in groups:
        raise DataError(f"{path}: no 'truth' group, cannot score (groups: {sorted(set(groups) - {'root'})})")
    available = [v for v in groups["prediction"].data_vars if not need_truth or v in groups["truth"]]
    if variables is None:
        return available
    variables = [variables] if isinstance(variables, str) else list(variables)
    unknown = [v for v in variables if v not in available]
    if unknown:
        raise DataError(f"{path}: unknown variable(s) {unknown}; available: {available}")
    return variables


def _methods(groups: dict, variable: str) -> list[str]:
    """Methods available for ``variable``, in :data:`METHODS` order."""
    has = {
        "corrdiff": True,
        "regression": "regression" in groups and variable in groups["regression"],
        "bilinear": "input" in groups and variable in groups["input"],
    }
    return [m for m in METHODS if has[m]]


def _members(groups: dict, method: str, variable: str, times: slice) -> np.ndarray:
    """``[N, t, H, W]`` fields of ``method`` (``N = 1`` for deterministic ones)."""
    if method == "corrdiff":
        return groups["prediction"][variable].isel(time=times).transpose("ensemble", "time", "y", "x").values
    group = {"truth": "truth", "regression": "regression", "bilinear": "input"}[method]
    return groups[group][variable].isel(time=times).transpose("time", "y", "x").values[None]


def _time_chunks(groups: dict, variable: str) -> list[slice]:
    da = groups["prediction"][variable]
    per_time = da.sizes.get("ensemble", 1) * da.sizes["y"] * da.sizes["x"]
    step = max(1, _CHUNK_ELEMENTS // per_time)
    return [slice(t, t + step) for t in range(0, da.sizes["time"], step)]


def score_file(path: str | Path, variables: Sequence[str] | None = None, spread_ddof: int = 1) -> pd.DataFrame:
    """Scores of every method and output variable of a generation file, over the whole period and per time.

    Parameters
    ----------
    path : str or Path
        Generation NetCDF file (see the module docstring).
    variables : sequence of str, optional
        Output variables to score; default all of ``prediction`` that ``truth`` has.
    spread_ddof : {1, 0}
        The member variance's divisor ``N - spread_ddof`` in ``spread`` (see :func:`ensemble_scores`).

    Returns
    -------
    pandas.DataFrame
        One row per (method, variable), methods in the order ``corrdiff``,
        ``regression`` (if the group exists), ``bilinear`` (for variables also
        in ``input``); columns :data:`SCORE_COLUMNS`, scores as in
        :func:`ensemble_scores` over all times and points. A file whose inputs
        were forecasts (a ``lead_time`` coordinate) is scored per lead: one row
        per (method, variable, lead), with a ``lead_hours`` column after
        ``variable``. Read in time chunks.
        ``attrs["rank_histograms"]``: the truth's rank among the CorrDiff members
        (``method``, ``variable``, ``rank``, ``frequency``; and ``lead_hours``).
        ``attrs["by_time"]``: the same scores for each time alone (over its
        points), one row per (time, method, variable), columns :data:`TIME_COLUMNS`
        (and ``lead_hours``).

    Raises
    ------
    ValueError
        If the file has no ``truth`` group, or a requested variable is unknown.
    """
    rows, ranks, by_time = [], [], []
    with open_groups(path) as groups:
        names = _output_variables(groups, path, variables, need_truth=True)
        times = groups["root"]["time"].values
        leads = file_lead_hours(groups["root"])
        for method in METHODS:
            for v in names:
                if method not in _methods(groups, v):
                    continue
                per_lead, rank, per_time = _score_variable(groups, method, v, times, leads, spread_ddof)
                rows += per_lead
                ranks.append(rank)
                by_time += per_time
    columns = SCORE_COLUMNS if leads is None else LEAD_SCORE_COLUMNS
    table = pd.DataFrame(rows, columns=columns)
    histograms = pd.concat(ranks, ignore_index=True).drop(columns=["region"])
    table.attrs["rank_histograms"] = histograms if leads is not None else histograms.drop(columns=["lead_hours"])
    # rows come method by method; a stable sort on time keeps that order within each time
    table.attrs["by_time"] = pd.DataFrame(by_time, columns=["time", *columns]).sort_values(
        "time", kind="stable", ignore_index=True
    )
    return table


def file_lead_hours(root: xr.Dataset) -> np.ndarray | None:
    """``[T]`` the lead (hours) of each time of a generation file whose inputs were forecasts (its
    ``lead_time`` coordinate), else ``None``."""
    if "lead_time" not in root:
        return None
    leads = root["lead_time"].values
    if np.issubdtype(leads.dtype, np.timedelta64):
        return leads / np.timedelta64(1, "h")
    return leads.astype(np.float64) / 3600.0  # undecoded: seconds, as the writer stores them


def _score_variable(
    groups: dict, method: str, variable: str, times: np.ndarray, leads: np.ndarray | None, spread_ddof: int
) -> tuple[list[dict], pd.DataFrame, list[dict]]:
    """Scores of one method on one variable, read in time chunks (:func:`score_file`'s step).

    Parameters
    ----------
    groups : dict
        The file's groups (:func:`open_groups`).
    times : np.ndarray
        ``[T]`` the file's valid times.
    leads : np.ndarray or None
        ``[T]`` the lead (hours) of each time, when the inputs were forecasts.

    Returns
    -------
    rows : list of dict
        ``method``, ``variable`` and the scores over all times and points (:func:`finalize`): one
        row, or one per lead with ``lead_hours``.
    rank_histogram : pandas.DataFrame
        The truth's rank among the members, with ``method``, ``variable`` and ``lead_hours`` columns.
    by_time : list of dict
        One row per time: ``time``, ``method``, ``variable`` (``lead_hours``) and
        :func:`ensemble_scores` over its points.
    """
    lead_of = np.zeros(len(times)) if leads is None else leads
    scorer, members, by_time = None, 1, []
    for chunk in _time_chunks(groups, variable):
        pred, obs = _members(groups, method, variable, chunk), _members(groups, "truth", variable, chunk)[0]
        scorer = scorer or domain_scorer(pred.shape[-2:])
        for lead in np.unique(lead_of[chunk]):
            here = lead_of[chunk] == lead
            add_chunk(scorer, pred[:, here], obs[here], lead)
        members = pred.shape[0]
        for j, t in enumerate(times[chunk]):
            scores = ensemble_scores(torch.from_numpy(pred[:, j]), torch.from_numpy(obs[j]), spread_ddof)
            by_time.append(
                {
                    "time": t,
                    "method": method,
                    "variable": variable,
                    **_lead_column(leads, lead_of[chunk.start + j]),
                    **scores,
                }
            )
    rows = [
        {
            "method": method,
            "variable": variable,
            **_lead_column(leads, lead),
            **finalize(scorer, members, spread_ddof, lead),
        }
        for lead in np.unique(lead_of)
    ]
    return rows, scorer.rank_histograms().assign(method=method, variable=variable), by_time


def _lead_column(leads: np.ndarray | None, lead: float) -> dict:
    """``{"lead_hours": lead}`` in a file whose inputs were forecasts (``leads`` given), else ``{}``."""
    return {} if leads is None else {"lead_hours": float(lead)}


Spectra = dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]


def spectra_file(path: str | Path, variables: Sequence[str] | None = None) -> Spectra:
    """Time-mean radial spectra of every method and output variable.

    Returns
    -------
    dict
        ``{variable: {method: (k [K], power [K])}}`` as float64 numpy arrays
        (see :func:`radial_spectrum`), methods ``truth`` (if present),
        ``corrdiff``, ``regression`` (if present), ``bilinear`` (if the variable
        is an input). For ``corrdiff`` the spectrum of each member at each time
        is taken, then averaged over members and times (not the spectrum of the
        ensemble mean, which would be smoother).
    """
    out = {}
    with open_groups(path) as groups:
        for v in _output_variables(groups, path, variables, need_truth=False):
            methods = (["truth"] if "truth" in groups and v in groups["truth"] else []) + _methods(groups, v)
            out[v] = {}
            for method in methods:
                total, count = 0.0, 0
                for times in _time_chunks(groups, v):
                    k, power = radial_spectrum(torch.from_numpy(_members(groups, method, v, times)))
                    total, count = total + power.flatten(0, -2).sum(0), count + power[..., 0].numel()
                out[v][method] = (k.numpy(), (total / count).numpy())
    return out


#: The kind of output a folder of a generation's scores and plots is (:func:`..files.output_folder`).
SCORECARD = "CorrDiff scorecard"
#: Its files: a folder holding only these is one written before such folders carried their marker.
SCORECARD_FILES = ("scores.csv", "scores_by_time.csv", "rank_histogram.csv", "scores.json", "spectra.png", "maps.png")
#: Whether a folder without a marker is a scorecard folder of an older version.
is_scorecard = holding_only(SCORECARD_FILES)


def write_scores(path: str | Path, out_dir: str | Path, spread_ddof: int = 1) -> pd.DataFrame:
    """Score ``path`` (:func:`score_file`), write ``scores.csv``, ``scores.json``,
    ``scores_by_time.csv`` and ``rank_histogram.csv`` into ``out_dir``.

    ``scores.json`` is a list of row records (``NaN`` as ``null``). Returns the table.
    """
    df = score_file(path, spread_ddof=spread_ddof)
    out_dir = Path(out_dir)
    with atomic_path(out_dir / "scores.csv") as tmp:
        df.to_csv(tmp, index=False)
    with atomic_path(out_dir / "scores_by_time.csv") as tmp:
        df.attrs["by_time"].to_csv(tmp, index=False)
    with atomic_path(out_dir / "rank_histogram.csv") as tmp:
        df.attrs["rank_histograms"].to_csv(tmp, index=False)
    records = df.astype(object).where(df.notna(), None).to_dict("records")
    write_atomic(out_dir / "scores.json", json.dumps(records, indent=2) + "\n")
    return df
