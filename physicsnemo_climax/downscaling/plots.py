# SPDX-License-Identifier: Apache-2.0
"""Figures of a downscaling generation file: maps of one time and time-mean spectra.

Drawn on :class:`matplotlib.figure.Figure` objects, which save through the
Agg canvas without pyplot, so this works headless and leaves the global
backend alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..files import atomic_path
from .scores import _members, _methods, _output_variables, open_groups, spectra_file

_STYLE = {
    "truth": dict(color="black", lw=2.0),
    "corrdiff": dict(color="tab:red"),
    "regression": dict(color="tab:blue"),
    "bilinear": dict(color="tab:gray", ls="--"),
}


def _default_variable(path: str | Path, groups: dict, variable: str | None) -> str:
    return _output_variables(groups, path, None if variable is None else [variable], need_truth=False)[0]


def _save(fig: Figure, out_png: str | Path) -> Path:
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight")
    return out_png


def plot_maps(path: str | Path, out_png: str | Path, variable: str | None = None, time_index: int = 0) -> Path:
    """One row of maps at ``time_index``: bilinear input, truth, regression, member 0, ensemble std.

    Panels whose data the file lacks are skipped (input only if ``variable`` is
    an input channel; truth and regression only if their groups exist). The
    field panels share one colour scale, the std panel has its own.

    Parameters
    ----------
    path : str or Path
        Generation NetCDF file (see :mod:`.scores`).
    out_png : str or Path
        PNG to write.
    variable : str, optional
        Output variable; default the first of ``prediction``.
    time_index : int
        Position along ``time``.

    Returns
    -------
    Path
        ``out_png``.
    """
    with open_groups(path) as groups:
        v = _default_variable(path, groups, variable)
        at = [time_index]
        avail = set(_methods(groups, v)) | ({"truth"} if "truth" in groups and v in groups["truth"] else set())
        titles = {"bilinear": "bilinear input", "truth": "truth", "regression": "regression"}
        panels = [(titles[m], _members(groups, m, v, at)[0, 0]) for m in titles if m in avail]
        ens = _members(groups, "corrdiff", v, at)[:, 0]  # [N, H, W]
        panels.append(("corrdiff member 0", ens[0]))
        std = ens.std(0, ddof=1) if len(ens) > 1 else np.zeros_like(ens[0])
        root = groups["root"]
        when = str(root["time"].values[time_index])[:16] if "time" in root.coords else f"time index {time_index}"
        if "lead_time" in root:
            when += f" (lead {root['lead_time'].values[time_index] / np.timedelta64(1, 'h'):g} h)"
        lat = root["lat"].values if "lat" in root else None
    origin = "upper" if lat is not None and lat[0, 0] > lat[-1, 0] else "lower"

    vmin = min(float(np.nanmin(p)) for _, p in panels)
    vmax = max(float(np.nanmax(p)) for _, p in panels)
    fig = Figure(figsize=(3.2 * (len(panels) + 1), 3.4), layout="constrained")
    axes = fig.subplots(1, len(panels) + 1, squeeze=False)[0]
    for ax, (title, field) in zip(axes, panels):
        im = ax.imshow(field, origin=origin, vmin=vmin, vmax=vmax, cmap="viridis")
        ax.set_title(title)
    fig.colorbar(im, ax=list(axes[:-1]), shrink=0.8, label=v)
    im = axes[-1].imshow(std, origin=origin, vmin=0, cmap="magma")
    axes[-1].set_title(f"ensemble std (N={len(ens)})")
    fig.colorbar(im, ax=axes[-1], shrink=0.8)
    for ax in axes:
        ax.set(xticks=[], yticks=[])
    fig.suptitle(f"{v}, {when}")
    return _save(fig, out_png)


def plot_spectra(path: str | Path, out_png: str | Path, variable: str | None = None) -> Path:
    """Log-log time-mean radial power spectrum of ``variable``, one line per method.

    See :func:`.scores.spectra_file` (k in cycles per grid spacing; the k = 0
    mean is left out). ``variable`` defaults to the first output variable.
    Returns ``out_png``.
    """
    with open_groups(path) as groups:
        v = _default_variable(path, groups, variable)
    spectra = spectra_file(path, [v])[v]
    fig = Figure(figsize=(5.5, 4.2), layout="constrained")
    ax = fig.subplots()
    for method, (k, power) in spectra.items():
        ax.loglog(k[1:], power[1:], label=method, **_STYLE.get(method, {}))
    ax.set_xlabel("wavenumber (cycles per grid spacing)")
    ax.set_ylabel(f"power ({v} units$^2$)")
    ax.set_title(f"{v}: radial power spectrum, time mean")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return _save(fig, out_png)
