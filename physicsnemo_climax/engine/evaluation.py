# SPDX-License-Identifier: Apache-2.0
"""Scorecard of a run against persistence and climatology, with plots.

Every lead is scored from the same initial conditions (evenly spaced over the
split, each valid for the longest lead), in physical units: RMSE and ACC per
variable, latitude-weighted. Leads up to the trained range are direct
forecasts; longer ones roll out (``eval.mode`` chooses).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from ..data import ShardStore
from ..metrics import acc, rmse
from .rollout import forecast_steps, lead_plan
from .run import Run
from .trainer import region_crop

METHODS = ("model", "persistence", "climatology")


def initial_conditions(store: ShardStore, split: str, horizon_steps: int, count: int) -> list[tuple[int, int]]:
    """``count`` evenly spaced ``(shard, time)`` pairs with ``horizon_steps`` ahead in the shard."""
    pairs = [(s, t) for s, shard in enumerate(store.shards(split)) for t in range(shard.steps - horizon_steps)]
    if not pairs:
        raise ValueError(f"{store.root}/{split}: no initial time has {horizon_steps} steps ahead in its shard")
    pick = np.unique(np.linspace(0, len(pairs) - 1, min(count, len(pairs))).round().astype(int))
    return [pairs[i] for i in pick]


def model_steps(info: dict, lead: float, mode: str) -> list[float]:
    """Model steps for ``lead``: direct (one step) or a rollout of trained steps."""
    step, trained, max_lead = info["hours_per_step"], info["lead_hours"], info["max_lead_hours"]
    if mode == "direct" or (mode == "auto" and lead <= max_lead and (trained is None or lead == trained)):
        return [lead]
    if trained is not None:  # fixed-lead model: whole multiples of its lead
        if lead % trained:
            raise ValueError(f"lead {lead} h is not a multiple of the run's {trained} h lead")
        return [float(trained)] * int(lead // trained)
    return lead_plan(lead, max_lead, step)


@torch.no_grad()
def evaluate(cfg: DictConfig) -> pd.DataFrame:
    """Score a run (``cfg.run_dir``) as ``cfg.eval`` says; write CSV, JSON and PNGs."""
    e = cfg.eval
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    run = Run.load(cfg.run_dir, device)
    info, model = run.info, run.model
    store = ShardStore(info["data_root"], info["hours_per_step"])
    variables = info["variables"]
    scored = list(e.variables or info["out_variables"])
    step = store.hours_per_step
    leads = [float(v) for v in e.leads]
    plans = {lead: model_steps(info, lead, e.mode) for lead in leads}
    for lead, plan in plans.items():
        if len(plan) > 1 and not set(scored) <= set(variables):
            raise ValueError(f"lead {lead} h needs a rollout, which needs {scored} among the inputs")
    inits = initial_conditions(store, e.split, int(round(max(leads) / step)), e.max_samples)
    shards = store.shards(e.split)
    region = info.get("region")
    region = tuple(region) if isinstance(region, list) else region
    crop, lat = region_crop(model, region)  # regional runs are scored on their region
    day_of_year = e.get("climatology", "time_mean") == "day_of_year"
    clim = crop(torch.as_tensor(store.climatology(e.split, scored)))
    if day_of_year:  # [366, V, H, W]; each target is compared with its valid day's climatology
        doy_clim = crop(torch.as_tensor(store.climatology(e.split, scored, day_of_year=True)))
        times = store.shard_times(e.split)
    mean_x, std_x = (torch.as_tensor(a, dtype=torch.float32) for a in run.stats(variables))
    mean_y, std_y = (torch.as_tensor(a, dtype=torch.float32)[:, None, None] for a in run.stats(scored))
    scored_idx = [variables.index(v) for v in scored if v in variables]

    sums = {(m, lead): {"rmse": torch.zeros(len(scored)), "acc": torch.zeros(len(scored))}
            for m in METHODS for lead in leads}
    case = None
    for start in range(0, len(inits), e.batch_size):
        chunk = inits[start : start + e.batch_size]
        x = torch.stack([torch.as_tensor(shards[s].read(variables, t)) for s, t in chunk])
        x_norm = (x - mean_x[:, None, None]) / std_x[:, None, None]
        for lead in leads:
            k = int(round(lead / step))
            y = crop(torch.stack([torch.as_tensor(shards[s].read(scored, t + k)) for s, t in chunk]))
            pred = forecast_steps(model, x_norm.to(device), variables, scored, plans[lead], region)[-1]
            pred = pred.float().cpu() * std_y + mean_y
            reference = clim
            if day_of_year:
                days = [int((times[s][t + k] - times[s][t + k].astype("datetime64[Y]")) // np.timedelta64(1, "D"))
                        for s, t in chunk]
                reference = doy_clim[days]
            candidates = {"model": pred, "climatology": reference.expand_as(y)}
            if len(scored_idx) == len(scored):
                candidates["persistence"] = crop(x[:, scored_idx])
            for method, guess in candidates.items():
                sums[(method, lead)]["rmse"] += rmse(guess, y, lat).float() * len(chunk)
                sums[(method, lead)]["acc"] += acc(guess, y, reference, lat).float() * len(chunk)
            if case is None and start <= e.case < start + len(chunk) and lead == _map_lead(leads):
                i = e.case - start
                case = {"truth": y[i], "forecast": pred[i], "lead": lead, "init": chunk[i]}

    rows = []
    for (method, lead), total in sums.items():
        if method == "persistence" and len(scored_idx) != len(scored):
            continue
        for j, var in enumerate(scored):
            acc_value = total["acc"][j].item() / len(inits)
            rows.append({"variable": var, "lead_hours": lead, "method": method,
                         "rmse": total["rmse"][j].item() / len(inits),
                         # a climatology forecast has no anomaly: its ACC is undefined
                         "acc": None if np.isnan(acc_value) else acc_value})
    table = pd.DataFrame(rows).astype({"acc": float}).sort_values(["variable", "lead_hours", "method"], ignore_index=True)
    out = Path(e.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "scorecard.csv", index=False)
    (out / "scorecard.json").write_text(json.dumps(
        {"run_dir": str(cfg.run_dir), "split": e.split, "samples": len(inits),
         "climatology": "day_of_year" if day_of_year else "time_mean",
         "modes": {str(k): ("direct" if len(v) == 1 else f"rollout {v}") for k, v in plans.items()},
         "scores": rows}, indent=1))
    plot_scores(table, out / "scores.png")
    if case is not None:
        var = e.map_variable or scored[0]
        lon = crop(torch.as_tensor(store.lon, dtype=torch.float64)[None].expand(len(store.lat), -1))[0]
        plot_case(case, scored.index(var), var, lat.numpy(), lon.numpy(),
                  info.get("units", {}).get(var, ""), out / "case.png")
    return table


def _map_lead(leads: list[float]) -> float:
    """Lead shown on the maps: the first of at least a day, else the longest."""
    return next((lead for lead in leads if lead >= 24), leads[-1])


def summary(table: pd.DataFrame, variables=None) -> str:
    """RMSE table, variables x leads, model / persistence / climatology side by side."""
    rows = table if variables is None else table[table.variable.isin(variables)]
    pivot = rows.pivot_table(index=["variable", "method"], columns="lead_hours", values="rmse")
    pivot.columns = [f"{int(c)}h" for c in pivot.columns]
    return pivot.to_string(float_format=lambda v: f"{v:.4g}")


def plot_scores(table: pd.DataFrame, path: Path) -> None:
    """RMSE and ACC against lead time, one column per variable."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variables = list(dict.fromkeys(table.variable))
    fig, axes = plt.subplots(2, len(variables), figsize=(3.2 * len(variables), 5.5), squeeze=False)
    for j, var in enumerate(variables):
        for method, rows in table[table.variable == var].groupby("method"):
            axes[0, j].plot(rows.lead_hours, rows.rmse, "o-", label=method)
            axes[1, j].plot(rows.lead_hours, rows.acc, "o-", label=method)
        axes[0, j].set_title(var, fontsize=9)
        axes[1, j].set_xlabel("lead (h)")
    axes[0, 0].set_ylabel("RMSE")
    axes[1, 0].set_ylabel("ACC")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_case(case: dict, index: int, var: str, lat: np.ndarray, lon: np.ndarray, units: str, path: Path) -> None:
    """Maps of truth, forecast and error for one initial condition."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    truth, forecast = case["truth"][index].numpy(), case["forecast"][index].numpy()
    order = np.argsort(lat)
    lon_order = np.argsort(lon % 360)
    fields = {"truth": truth, "forecast": forecast, "forecast - truth": forecast - truth}
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
    vmin, vmax = truth.min(), truth.max()
    for ax, (title, field) in zip(axes, fields.items()):
        field = field[order][:, lon_order]
        kw = {"vmin": vmin, "vmax": vmax, "cmap": "viridis"} if title != "forecast - truth" else {
            "cmap": "RdBu_r", "vmin": -np.abs(field).max(), "vmax": np.abs(field).max()}
        mesh = ax.pcolormesh(np.sort(lon % 360), lat[order], field, shading="nearest", **kw)
        fig.colorbar(mesh, ax=ax, label=units)
        ax.set_title(f"{title}: {var}, +{case['lead']:.0f} h", fontsize=9)
        ax.set_xlabel("longitude")
    axes[0].set_ylabel("latitude")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
