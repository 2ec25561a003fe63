# SPDX-License-Identifier: Apache-2.0
"""Forecasts longer than one model step: which steps, and iterating the model on its own output."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..data.forcings import Forcings
from ..engine.run_info import RunInfo
from ..errors import InputError
from ..models import GridRegion
from ..models.variables import CONSTANTS


def lead_plan(
    lead_hours: float, max_step_hours: float, step_hours: float, min_step_hours: float | None = None
) -> list[float]:
    """Split a lead into model steps of at most ``max_step_hours`` (the longest first),
    each a multiple of ``step_hours`` and at least ``min_step_hours``.

    Raises
    ------
    InputError
        If the lead is not a positive multiple of ``step_hours``, or cannot be
        split into steps the model was trained on.
    """
    ratio = lead_hours / step_hours
    if lead_hours <= 0 or abs(ratio - round(ratio)) > 1e-9:
        raise InputError(f"lead {lead_hours:g} h is not a positive multiple of {step_hours:g} h")
    plan, left = [], lead_hours
    while left > 1e-9:
        step = step_hours * (min(max_step_hours, left) // step_hours)
        plan.append(step)
        left -= step
    if min_step_hours is not None and plan[-1] < min_step_hours - 1e-9:
        raise InputError(
            f"lead {lead_hours:g} h cannot be made of steps of {min_step_hours:g}..{max_step_hours:g} h "
            f"(the trained leads); ask for a multiple of {step_hours:g} h that can"
        )
    return plan


def model_steps(info: RunInfo, lead: float, mode: str = "auto") -> list[float]:
    """Model steps (hours) for ``lead`` of a run (its ``run.json`` record).

    ``mode`` is ``direct`` (one step), ``rollout`` (trained leads chained) or
    ``auto``: direct within the trained lead range, a rollout beyond. A
    fixed-lead run forecasts whole multiples of its lead; a run of time-mean
    windows (sub-seasonal) the starts of its windows, directly.

    Raises
    ------
    InputError
        If the lead is not positive, not a multiple of the data step, or not
        reachable with the leads the run was trained on.
    """
    data_step, trained = float(info.hours_per_step), info.lead_hours
    lead_plan(lead, lead, data_step)  # positive, on the data's time step
    if info.windows:  # a time mean is never fed back: one step to a window's start
        starts = [start for start, _ in info.windows]
        if not any(abs(lead - start) < 1e-9 for start in starts):
            raise InputError(
                f"lead {lead:g} h: this run predicts means over windows starting at {starts} h after the "
                "initial time; ask for one of those starts"
            )
        return [lead]
    if trained is not None:  # fixed-lead model: whole multiples of its lead
        if mode == "direct" and lead != trained:
            raise InputError(f"lead {lead:g} h: a direct forecast of this run is its trained {trained} h lead")
        if lead % trained:
            raise InputError(f"lead {lead:g} h is not a multiple of the run's {trained} h lead")
        return [float(trained)] * int(lead // trained)
    lo, hi = info.lead_range or (data_step, info.max_lead_hours)
    step = float(info.lead_step or data_step)
    if mode == "direct" or (mode == "auto" and lead <= hi):
        if not lo - 1e-9 <= lead <= hi + 1e-9 or abs((lead - lo) / step - round((lead - lo) / step)) > 1e-9:
            raise InputError(
                f"lead {lead:g} h is not one the run was trained on ({lo:g}..{hi:g} h in steps of "
                f"{step:g} h); longer leads roll out in those steps"
            )
        return [lead]
    return lead_plan(lead, hi, step, lo)


def forecast_steps(
    model,
    x: torch.Tensor,
    variables: Sequence[str],
    out_variables: Sequence[str],
    steps_hours: Sequence[float | torch.Tensor],
    region=None,
    forcings: Forcings | None = None,
    init_time: torch.Tensor | np.ndarray | None = None,
    noise: Callable[[int], torch.Tensor] | None = None,
) -> list[torch.Tensor]:
    """Apply the model along ``steps_hours``, feeding each prediction back.

    Each step is a lead in hours, a number or a ``[B]`` tensor. Intermediate
    steps predict every input variable except the constant fields not asked
    for as outputs (those are carried over) and the ``forcings``, which are
    computed for each step's valid time from ``init_time`` (``[B]`` seconds
    since 1970) before the model sees the state. The returned list holds the
    ``out_variables`` after each step, ``[B, V_out, H, W]`` each. A
    ``region`` (regional models) allows a single step only. ``noise(k)``, when given, is the
    noise of step ``k`` (from 0) of a stochastic model (:meth:`..models.ClimaX.draw_noise`);
    without it such a model draws its own.

    Raises
    ------
    ValueError
        If several steps are asked for and an output variable is not an input.
    """
    variables, out_variables = list(variables), list(out_variables)
    computed = [n for n in (forcings.names if forcings is not None else ()) if n in variables]
    if computed and init_time is None:
        raise InputError(f"the model takes forcings {computed}: the forecast needs its initial time")
    dynamic = [v for v in variables if (v not in CONSTANTS or v in out_variables) and v not in computed]
    regional = region is not None and not (isinstance(region, GridRegion) and region.is_global)
    if len(steps_hours) > 1 and regional:
        raise InputError("a regional forecast cannot be fed back into the global input: direct leads only")
    if len(steps_hours) > 1 and not set(out_variables) <= set(variables):
        raise InputError(f"iterating needs the outputs among the inputs; {out_variables} vs {variables}")
    outputs, state = [], x
    b = x.shape[0]
    elapsed = torch.zeros(b, dtype=torch.float64)
    for k, hours in enumerate(steps_hours):
        draws = {} if noise is None else {"noise": noise(k)}
        lead = hours if torch.is_tensor(hours) else torch.full((b,), float(hours), device=x.device)
        if computed:  # the forcings at this step's valid time (no host copy of the lead without them)
            elapsed = elapsed + lead.detach().cpu().double()
            state = forcings.fill(state, variables, torch.as_tensor(init_time).cpu().double() + 3600.0 * elapsed)
        if len(steps_hours) == 1:
            return [model(state, lead, variables, out_variables, region=region, **draws)]
        predicted = model(state, lead, variables, dynamic, **draws)
        state = state.clone()
        state[:, [variables.index(v) for v in dynamic]] = predicted.to(state.dtype)
        outputs.append(state[:, [variables.index(v) for v in out_variables]])
    return outputs
