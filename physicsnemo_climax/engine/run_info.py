# SPDX-License-Identifier: Apache-2.0
"""What a run folder's ``run.json`` records, as one frozen, typed record.

Every task writes the facts evaluation, forecasts and relaunches need
besides the weights; :class:`RunInfo` holds them all, so a reader writes
``run.info.hours_per_step`` instead of looking a string up in a dict and
guessing a default. A fact a task does not have is ``None`` or empty: the
CorrDiff stages record only ``task``, ClimateBench its input statistics and
data, ClimaX forecasting all of the ClimaX block.

Older ``run.json`` files load: a fact they lack takes its empty value, and
keys this version does not know are kept in :attr:`RunInfo.extra` and
written back unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from ..errors import DataError

#: Facts held as tuples (JSON lists): their order means something and they must not change.
_TUPLES = ("variables", "out_variables", "model_variables", "lat", "lon", "lead_range", "forcings", "history")


@dataclass(frozen=True)
class RunInfo:
    """A run's ``run.json``.

    Attributes
    ----------
    task : str
        The task's name (``finetune_global``, ``climatebench``, ``corrdiff_regression``, ...).
    data_root, data_fingerprint : str, optional
        The absolute path of the training data and, for a shard store, its fingerprint
        (:attr:`..data.ShardStore.fingerprint`).
    variables, out_variables, model_variables : tuple of str
        ClimaX forecasting: the inputs (forcings last), the predicted outputs, and every
        variable the model embeds.
    statistics : dict
        ``{name: {"mean": float, "std": float}}`` of every input and output.
    units : dict
        ``{name: unit}`` of the store's fields.
    lat, lon : tuple of float
        The grid, ``[H]`` and ``[W]``.
    hours_per_step : float, optional
        The data's time step.
    lead_hours, max_lead_hours, lead_range, lead_step : optional
        The trained lead: one lead, or a range ``(lo, hi)`` sampled every ``lead_step`` hours;
        ``max_lead_hours`` is the longest either way.
    windows : tuple of (float, float), optional
        Sub-seasonal runs: the time-mean windows ``(start, end)`` hours after the initial time
        the model predicts (:mod:`..data.windows`); ``None``: states at leads.
    region : optional
        The model's region as configured (:attr:`..models.GridRegion.spec`); ``None``: global.
    forcings : tuple of str
        Inputs computed at the valid time rather than read (:mod:`..data.forcings`).
    input_statistics : dict, optional
        ClimateBench: ``{"mean": [...], "std": [...]}`` of its forcing inputs.
    plan : dict
        The run plan that ran (:meth:`.plan.RunPlan.as_dict`).
    history : tuple of dict
        The relaunches: the step each resumed at and what it changed.
    extra : dict
        Keys of ``run.json`` this version does not know, kept as they were.
    """

    task: str | None = None
    data_root: str | None = None
    data_fingerprint: str | None = None
    variables: tuple[str, ...] = ()
    out_variables: tuple[str, ...] = ()
    model_variables: tuple[str, ...] = ()
    statistics: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    units: Mapping[str, str] = field(default_factory=dict)
    lat: tuple[float, ...] = ()
    lon: tuple[float, ...] = ()
    hours_per_step: float | None = None
    lead_hours: float | None = None
    max_lead_hours: float | None = None
    lead_range: tuple[float, ...] | None = None
    lead_step: float | None = None
    windows: tuple[tuple[float, float], ...] | None = None
    region: Any = None
    forcings: tuple[str, ...] = ()
    input_statistics: Mapping[str, list] | None = None
    plan: Mapping[str, Any] = field(default_factory=dict)
    history: tuple[Mapping[str, Any], ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: object = "run.json") -> RunInfo:
        """The record of a ``run.json`` object (an older one included).

        Raises
        ------
        DataError
            When ``data`` is not a JSON object, naming ``source``.
        """
        if not isinstance(data, Mapping):
            raise DataError(f"{source}: a run record is a JSON object, not {type(data).__name__}")
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: (tuple(v) if k in _TUPLES and v is not None else v) for k, v in data.items() if k in known}
        if values.get("windows") is not None:  # pairs of hours
            values["windows"] = tuple(tuple(float(h) for h in w) for w in values["windows"])
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})

    def to_json(self) -> dict[str, Any]:
        """The JSON object of ``run.json`` (tuples as lists, unknown keys as they came)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out = {k: (list(v) if k in _TUPLES and v is not None else v) for k, v in out.items()}
        if self.windows is None:  # runs that predict states keep the record they always had
            out.pop("windows")
        else:
            out["windows"] = [list(w) for w in self.windows]
        out["history"] = [dict(h) for h in self.history]
        return {**out, **self.extra}

    def facts(self) -> dict[str, Any]:
        """What the task recorded about the run: :meth:`to_json` without the plan, the history
        and where the data are now (what a relaunch must not change)."""
        out = self.to_json()
        for key in ("plan", "history", "data_root"):
            out.pop(key, None)
        return out

    def with_launch(self, plan: Mapping[str, Any], history: list) -> RunInfo:
        """This record with the plan and relaunch history of a launch."""
        return replace(self, plan=dict(plan), history=tuple(history))
