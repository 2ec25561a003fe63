# SPDX-License-Identifier: Apache-2.0
"""The ``eval`` section of a config as one frozen, typed, checked record.

``conf/config.yaml`` holds every key's default; :meth:`EvalSettings.from_config`
reads them all (a key the config lacks is an error naming it, not a second
default written here), checks counts, leads and the ensemble before anything
is read, and gives the evaluation typed values: leads in hours, the ensemble
as an :class:`.EnsembleSpec`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ..data.times import lead_hours
from ..engine.checks import check_seed, config_error
from ..engine.settings import read_section
from ..errors import InputError
from .ensembles import EnsembleSpec

#: How a lead is forecast: one model step, trained leads chained, or direct up to the trained range.
MODES = ("direct", "rollout", "auto")


@dataclass(frozen=True)
class EvalSettings:
    """What ``eval`` asks of an evaluation (``conf/config.yaml`` documents each key).

    Attributes
    ----------
    leads : tuple of float
        Hours, positive (``eval.leads`` may say ``24h`` or ``5D``).
    spectra_leads : tuple of float, optional
        Hours of the bias maps and spectra (``None``: the map lead and the longest).
    ensemble : EnsembleSpec
        ``eval.members``, ``perturbation``, ``perturbation_scale`` and ``seed``.
    thresholds : mapping of str to list
        Variable -> Brier score thresholds in its units (checked against the scored variables later).
    quantiles : tuple of float
        Climatological quantiles, increasing, each in (0, 1).
    out_dir : Path
        Where the report goes.
    """

    split: str
    leads: tuple[float, ...]
    mode: str
    max_samples: int
    batch_size: int
    variables: tuple[str, ...] | None
    climatology: str
    climatology_window: int
    climatology_years: tuple[int, ...] | None
    regions: tuple[str, ...]
    boxes: Mapping[str, list]
    save_forecasts: bool
    spectra_leads: tuple[float, ...] | None
    ensemble: EnsembleSpec
    energy_score: bool
    debiased_mse: bool
    thresholds: Mapping[str, list]
    quantiles: tuple[float, ...]
    wind: bool
    assume_units: Any
    case: int
    map_variable: str | None
    out_dir: Path
    overwrite: bool
    device: str | None

    @classmethod
    def from_config(cls, e: DictConfig) -> EvalSettings:
        """The checked settings of the ``eval`` section ``e``.

        Raises
        ------
        ConfigError
            Naming the key: one the section lacks, a count below 1, no positive lead, an
            unknown mode or perturbation, a negative seed, quantiles not increasing in (0, 1).
        """
        raw = _section(e)
        for key in ("max_samples", "batch_size", "members", "case", "climatology_window"):
            _check_count(key, raw[key], least=0 if key == "case" else 1)
        if raw["mode"] not in MODES:
            raise config_error("eval.mode", raw["mode"], f"choose from {list(MODES)}")
        ensemble = EnsembleSpec(
            members=raw.pop("members"),
            perturbation=raw.pop("perturbation"),
            scale=float(raw.pop("perturbation_scale")),
            seed=check_seed(raw.pop("seed"), "eval.seed"),
        )
        # lists of the YAML as tuples, leads in hours
        return cls(
            **{
                **raw,
                "leads": _hours("eval.leads", raw["leads"], required=True),
                "spectra_leads": _hours("eval.spectra_leads", raw["spectra_leads"]) or None,
                "variables": tuple(raw["variables"]) if raw["variables"] else None,
                "climatology_years": tuple(raw["climatology_years"]) if raw["climatology_years"] else None,
                "regions": tuple(raw["regions"]),
                "boxes": dict(raw["boxes"] or {}),
                "thresholds": {str(k): v for k, v in (raw["thresholds"] or {}).items()},
                "quantiles": _quantiles(raw["quantiles"]),
                "out_dir": Path(raw["out_dir"]),
                "climatology": str(raw["climatology"]),
            },
            ensemble=ensemble,
        )


def _section(e: DictConfig) -> dict:
    """The keys :class:`EvalSettings` reads from ``e``, resolved (:func:`..engine.settings.read_section`)."""
    wanted = [f.name for f in fields(EvalSettings) if f.name != "ensemble"]
    wanted += ["members", "perturbation", "perturbation_scale", "seed"]
    return read_section(e, wanted, "eval", "conf/config.yaml")


def _check_count(key: str, value, least: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise config_error(f"eval.{key}", value, f"must be a whole number >= {least}")


def _hours(key: str, leads, required: bool = False) -> tuple[float, ...]:
    """``leads`` in hours, each positive (bare numbers are hours, :func:`..data.times.lead_hours`)."""
    try:
        hours = tuple(lead_hours(v) for v in list(leads or []))
    except InputError:
        hours = ()
    if (required and not hours) or any(h <= 0 for h in hours):
        raise config_error(key, list(leads or []), "give one or more positive leads in hours, e.g. [24,72] or [24h,5D]")
    return hours


def _quantiles(values) -> tuple[float, ...]:
    """``eval.quantiles`` as increasing floats in (0, 1)."""
    try:
        out = tuple(float(q) for q in list(values or []))
    except (TypeError, ValueError):
        out = (float("nan"),)
    if any(not 0 < q < 1 for q in out) or list(out) != sorted(set(out)):
        raise config_error("eval.quantiles", list(values or []), "give increasing quantiles in (0, 1), e.g. [0.1, 0.9]")
    return out
