# SPDX-License-Identifier: Apache-2.0
"""Forecasts longer than one model step: which steps, and iterating the model on its own output."""

from __future__ import annotations

from typing import Sequence

import torch

from ..models import GridRegion
from ..models.variables import CONSTANTS


def lead_plan(lead_hours: float, max_step_hours: float, data_step_hours: float) -> list[float]:
    """Split a lead into model steps of at most ``max_step_hours`` (the longest first).

    Raises
    ------
    ValueError
        If the lead is not a positive multiple of the data step.
    """
    ratio = lead_hours / data_step_hours
    if lead_hours <= 0 or abs(ratio - round(ratio)) > 1e-9:
        raise ValueError(f"lead {lead_hours} h is not a positive multiple of the {data_step_hours} h data step")
    plan, left = [], lead_hours
    while left > 1e-9:
        step = min(max_step_hours, left)
        step = data_step_hours * (step // data_step_hours)
        plan.append(step)
        left -= step
    return plan


def model_steps(info: dict, lead: float, mode: str = "auto") -> list[float]:
    """Model steps (hours) for ``lead`` of a run (its ``run.json`` ``info``).

    ``mode`` is ``direct`` (one step), ``rollout`` (trained steps chained) or
    ``auto``: direct within the trained lead range (at the trained lead for a
    fixed-lead run), a rollout beyond.

    Raises
    ------
    ValueError
        If a fixed-lead run is asked for a lead that is not a multiple of its lead.
    """
    step, trained, max_lead = info["hours_per_step"], info["lead_hours"], info["max_lead_hours"]
    if mode == "direct" or (mode == "auto" and lead <= max_lead and (trained is None or lead == trained)):
        return [lead]
    if trained is not None:  # fixed-lead model: whole multiples of its lead
        if lead % trained:
            raise ValueError(f"lead {lead} h is not a multiple of the run's {trained} h lead")
        return [float(trained)] * int(lead // trained)
    return lead_plan(lead, max_lead, step)


def forecast_steps(
    model,
    x: torch.Tensor,
    variables: Sequence[str],
    out_variables: Sequence[str],
    steps_hours: Sequence[float | torch.Tensor],
    region=None,
) -> list[torch.Tensor]:
    """Apply the model along ``steps_hours``, feeding each prediction back.

    Each step is a lead in hours, a number or a ``[B]`` tensor. Intermediate
    steps predict every input variable except the constant fields not asked
    for as outputs (those are carried over); the returned list holds the
    ``out_variables`` after each step, ``[B, V_out, H, W]`` each. A
    ``region`` (regional models) allows a single step only.

    Raises
    ------
    ValueError
        If several steps are asked for and an output variable is not an input.
    """
    variables, out_variables = list(variables), list(out_variables)
    dynamic = [v for v in variables if v not in CONSTANTS or v in out_variables]
    regional = region is not None and not (isinstance(region, GridRegion) and region.is_global)
    if len(steps_hours) > 1 and regional:
        raise ValueError("a regional forecast cannot be fed back into the global input: direct leads only")
    if len(steps_hours) > 1 and not set(out_variables) <= set(variables):
        raise ValueError(f"iterating needs the outputs among the inputs; {out_variables} vs {variables}")
    outputs, state = [], x
    b = x.shape[0]
    for hours in steps_hours:
        lead = hours if torch.is_tensor(hours) else torch.full((b,), float(hours), device=x.device)
        if len(steps_hours) == 1:
            return [model(state, lead, variables, out_variables, region=region)]
        predicted = model(state, lead, variables, dynamic)
        state = state.clone()
        state[:, [variables.index(v) for v in dynamic]] = predicted.to(state.dtype)
        outputs.append(state[:, [variables.index(v) for v in out_variables]])
    return outputs
