# SPDX-License-Identifier: Apache-2.0
"""Forecast → downscale: a ClimaX forecast made into a km-scale CorrDiff ensemble.

1. :func:`physicsnemo_climax.forecasting.forecast` runs ClimaX from the initial
   condition to each lead time;
2. its fields are interpolated bilinearly (periodic in longitude) onto the
   coarse grid of the CorrDiff domain, which crops them to the domain;
3. the domain builds the network input (upsampling, invariants,
   normalization) block by block (``gen.time_block`` valid times) and
   :func:`.generation.stream` draws each block's ensemble;
4. the :class:`.writer.GenerationWriter` appends ``input``/``regression``/
   ``prediction`` (and ``truth`` when given) with ``time`` = valid time and a
   ``lead_time`` coordinate, as generation does.

Needs a CorrDiff run trained on data with latitude/longitude coordinates
(:class:`~.data.CoarseFineDataset`): CorrDiff-Mini files carry none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr
from omegaconf import DictConfig, OmegaConf

from ..data.regrid import regrid
from ..data.times import lead_hours
from ..engine.plan import RunPlan, decide_device, resolve
from ..errors import ConfigError, UnknownName
from ..files import check_file_output
from ..forecasting import Run, forecast
from ..hub import is_remote
from . import net_files, nets_by_lead
from .channel_units import to_trained
from .domain import Domain, checkpoint_domain
from .forecast_data import lead_time_labels
from .generation import (
    build_sampler,
    load_stages,
    prepare_net,
    run_record,
    seed_batches,
    stream,
)
from .writer import GenerationWriter


def coarse_inputs(fc: xr.Dataset, domain, variable_map: Mapping[str, str]) -> np.ndarray:
    """Forecast fields on the domain's coarse grid, ``[time, lead, C_in, h, w]``, in the units the
    CorrDiff run was trained in where its data recorded them (:mod:`.channel_units`)."""
    if domain.coarse_lat is None or domain.coarse_lon is None:
        raise ConfigError(
            "the CorrDiff run has no coarse-grid coordinates (CorrDiff-Mini data carry none); "
            "train it on a coarse_fine dataset with lat/lon to downscale forecasts"
        )
    names = [variable_map.get(v, v) for v in domain.input_variables]
    on_grid = regrid(fc[names], domain.coarse_lat, domain.coarse_lon, "bilinear")
    given = {
        "input": {
            v: fc[n].attrs.get("units", "") for v, n in zip(domain.input_variables, names) if fc[n].attrs.get("units")
        }
    }
    _, tables = to_trained(given, domain.units, {"input": domain.input_variables}, "the ClimaX forecast")
    fields = np.stack([on_grid[n].transpose("time", "lead_time", "lat", "lon").values for n in names], axis=2)
    scale, offset = tables["input"].T
    return fields * scale[:, None, None] + offset[:, None, None]


def forecast_and_downscale(
    climax_run: str | Path | Run,
    initial_condition: xr.Dataset,
    lead_times: Sequence,
    gen: DictConfig,
    output: str | Path,
    variable_map: Mapping[str, str] | None = None,
    truth: xr.Dataset | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    assume_units=None,
    plan: RunPlan | None = None,
    overwrite: bool | None = None,
) -> Path:
    """Forecast with ClimaX, downscale every (initial time, lead) with CorrDiff, write one file.

    Parameters
    ----------
    climax_run : path or Run
        ClimaX training run (weights and statistics), or a model file inside one (:meth:`Run.load`).
    initial_condition : xr.Dataset
        The run's input variables, with or without ``time``.
    lead_times : sequence
        Leads: hours (``24``) or durations (``"24h"``).
    gen : DictConfig
        A ``generation`` section (``conf/generation``): ``num_ensembles``, ``seed_batch_size``, ``sampler``,
        ``io.reg_ckpt_filename``, ``io.res_ckpt_filename``, ``inference_mode``, ``hr_mean_conditioning``.
    output : path
        The ensemble file (:mod:`.writer`'s groups); returned.
    variable_map : mapping, optional
        CorrDiff input name -> ClimaX variable name, where they differ.
    truth : xr.Dataset, optional
        Fine-grid ``(time, y, x)`` outputs at the valid times, written as ``truth``.
    seed : int
        Member ``k`` uses seed ``seed + k``; a whole number >= 0, recorded in the file.
    device : torch.device or str, optional
        Where the nets (and an unloaded run) run, default ``generation.device`` (:func:`..engine.plan.decide_device`).
    assume_units : optional
        Units of initial-condition fields without a ``units`` attribute (:func:`..forecasting.forecast`).
    plan : RunPlan, optional
        Precision, apex GroupNorm, compile (recorded in the file); default :func:`..engine.plan.resolve` of ``gen``.
    overwrite : bool, optional
        Replace an existing ``output`` (default ``generation.io.overwrite``); never an input (:func:`check_output`).

    Raises
    ------
    UnknownName
        A CorrDiff input that is not a ClimaX output, or a valid time truth lacks.
    MissingFeature
        What ``gen`` asks for and the machine lacks (``generation.precision=fp16`` without a GPU).
    """
    plan, device = _start(output, overwrite, climax_run, gen, (initial_condition, truth), device, plan)
    run = climax_run if isinstance(climax_run, Run) else Run.load(climax_run, device, "climax_run")
    variable_map = dict(variable_map or {})
    corrdiff = _load_corrdiff(gen, run, variable_map, seed, device, plan, lead_times)
    fc = forecast(run, initial_condition, lead_times, out_variables=corrdiff.names, assume_units=assume_units)
    blocks = forecast_blocks(fc, corrdiff.domains, corrdiff.pair_of_lead, variable_map, truth, gen.time_block, device)
    _write_ensemble(output, gen, corrdiff, blocks, truth is not None, seed, device, plan)
    return Path(output)


def _start(output, overwrite: bool | None, climax_run, gen: DictConfig, datasets: tuple, device, plan: RunPlan | None):
    """What :func:`forecast_and_downscale` checks before any work, as generation does: the ``output``
    (:func:`check_output`; ``overwrite`` ``None``: ``generation.io.overwrite``), the run ``plan`` and
    the ``device``.

    Returns
    -------
    plan : RunPlan
        ``plan``, else :func:`..engine.plan.resolve` of ``gen``.
    device : torch.device
        :func:`..engine.plan.decide_device` of ``device``, else of ``generation.device``.
    """
    check_output(output, gen.io.overwrite if overwrite is None else overwrite, climax_run, gen, *datasets)
    plan = plan or resolve(OmegaConf.create({"generation": gen}))
    return plan, decide_device(device if device is not None else gen.get("device"), "device")


@dataclass
class CorrDiffSide:
    """The CorrDiff nets of a forecast → downscale, one pair per lead range (:mod:`.nets_by_lead`).

    Attributes
    ----------
    sections : list of DictConfig
        One ``generation`` section per pair.
    domains : list of Domain
        Each pair's run's (:func:`run_domain`).
    pair_of_lead : dict
        ``{lead hours: pair}`` for the asked leads.
    names : list of str
        The ClimaX outputs feeding the inputs (:func:`climax_names`), each once.
    nets : dict
        ``{pair: (regression, diffusion)}`` for the pairs in use (``None`` for a stage not run).
    batches : list of torch.Tensor
        The seed batches (:func:`.generation.seed_batches`).
    """

    sections: list
    domains: list
    pair_of_lead: dict
    names: list
    nets: dict
    batches: list


def _load_corrdiff(
    gen: DictConfig,
    run: Run,
    variable_map: Mapping[str, str],
    seed: int,
    device,
    plan: RunPlan,
    lead_times: Sequence,
) -> CorrDiffSide:
    """The CorrDiff side, checked against the ClimaX ``run`` and the ``lead_times`` (each picks the
    pair trained on it; a lead its pair was not trained on is an error now) and loaded before the
    forecast is made, as the run ``plan`` says."""
    batches = seed_batches(gen.num_ensembles, gen.seed_batch_size, seed)  # refused before any work
    nets_by_lead.check_time_block(gen.time_block)
    sections = nets_by_lead.pair_sections(gen, nets_by_lead.stage_keys(gen))
    domains = [run_domain(section) for section in sections]
    where = [nets_by_lead.pair_name(section) for section in sections]
    if len(sections) > 1:
        nets_by_lead.check_same_fields(domains, where)
    hours = [lead_hours(lead) for lead in lead_times]
    picked = nets_by_lead.pick_pairs(domains, hours, where)
    nets, names = {}, []
    for pair in dict.fromkeys(picked.tolist()):  # the pairs in use, in order
        lead_time_labels(domains[pair], [h for h, p in zip(hours, picked) if p == pair])
        names += climax_names(domains[pair], run, variable_map)
        stages = load_stages(sections[pair], domains[pair], device, plan=plan)
        nets[pair] = tuple(prepare_net(net, plan) for net in stages)
    pair_of_lead = {h: int(p) for h, p in zip(hours, picked)}
    return CorrDiffSide(sections, domains, pair_of_lead, list(dict.fromkeys(names)), nets, batches)


def _write_ensemble(
    output, gen: DictConfig, corrdiff: CorrDiffSide, blocks, truth: bool, seed: int, device, plan: RunPlan
) -> None:
    """Draw the ensemble of every block and write it to ``output`` (:class:`.writer.GenerationWriter`).

    Parameters
    ----------
    corrdiff : CorrDiffSide
        The pairs of nets.
    blocks : iterable of (int, torch.Tensor, dict)
        :func:`forecast_blocks`'s: each block's pair, ``[t, C_in + C_inv, H, W]`` inputs and the rest.
    truth : bool
        Whether the blocks carry truth (``[t, C_out, H, W]``) to write.

    The file has a ``lead_time`` coordinate and records the seeds, ``device`` and ``plan`` in its
    attributes (:func:`.generation.run_record`), and the pairs when several
    (:func:`.nets_by_lead.pairs_record`).
    """
    domain = corrdiff.domains[0]
    keys = nets_by_lead.stage_keys(gen)
    sampler = build_sampler(gen, domain.shape)
    with GenerationWriter(
        output,
        domain,
        gen.num_ensembles,
        truth=truth,
        lead_time=True,
        regression=net_files.inference_mode(gen) != "diffusion",
        attrs={
            **run_record(seed, device, plan),
            **nets_by_lead.pairs_record(corrdiff.sections, corrdiff.domains, keys),
        },
    ) as writer:
        for pair, x, rest in blocks:
            stream(
                *corrdiff.nets[pair],
                sampler,
                corrdiff.batches,
                [(x, rest)],
                writer,
                gen.hr_mean_conditioning,
                autocast=lambda: plan.autocast(device),
                channels_last=plan.apex_group_norm,
            )


def check_output(output: str | Path, overwrite: bool, climax_run, gen: DictConfig, *datasets) -> None:
    """Refuse ``output`` before any work when it exists (unless ``overwrite``) or is an input:
    the ClimaX run, a CorrDiff net, or the file a dataset was opened from (``encoding["source"]``)."""
    opened = [ds.encoding.get("source") for ds in datasets if ds is not None]
    run = climax_run.run_dir if isinstance(climax_run, Run) else climax_run
    check_file_output(output, overwrite=overwrite, inputs=[run, *nets_by_lead.net_paths(gen), *opened])


def forecast_blocks(
    fc: xr.Dataset,
    domains: Sequence[Domain],
    pair_of_lead: Mapping[float, int],
    variable_map: Mapping[str, str],
    truth: xr.Dataset | None,
    block: int,
    device: torch.device,
):
    """The network inputs of every (initial time, lead) of the forecast ``fc``, at most ``block``
    valid times at a time of one pair each, in the forecast's order.

    Parameters
    ----------
    domains : sequence of Domain
        Each pair's run's: its statistics normalise its inputs.
    pair_of_lead : mapping
        ``{lead hours: pair}``.

    Yields
    ------
    pair : int
        The pair that draws the block.
    x : torch.Tensor
        ``[t, C_in + C_inv, H, W]`` on ``device``.
    rest : dict
        The rest of the :class:`.writer.Block`: valid times, leads, truth, lead-time labels and the
        pair's domain.
    """
    valid = fc.valid_time.values.reshape(-1)  # (time, lead_time), the lead fastest
    leads = np.broadcast_to(fc.lead_time.values[None], fc.valid_time.shape).reshape(-1)
    hours = leads / np.timedelta64(1, "h")
    fine = None if truth is None else truth_at(truth, valid, domains[0])  # the pairs share outputs
    coarse = {}  # each pair's inputs, [time * lead, C, h, w], in its run's units
    pairs = [pair_of_lead[float(h)] for h in hours]
    for pair, chunk in nets_by_lead.pair_chunks(pairs, block):
        domain = domains[pair]
        if pair not in coarse:
            fields = coarse_inputs(fc, domain, variable_map)
            coarse[pair] = fields.reshape(-1, *fields.shape[2:])
        labels = lead_time_labels(domain, list(hours[chunk]))
        rest = {
            "times": valid[chunk],
            "lead_time": leads[chunk],
            "truth": None if fine is None else fine[chunk],
            "lead_time_label": labels,
            "domain": domain,
        }
        yield pair, torch.from_numpy(domain.make_input(coarse[pair][chunk])).to(device), rest


def run_domain(gen: DictConfig) -> Domain:
    """The :class:`Domain` of the CorrDiff regression run ``gen.io.reg_ckpt_filename``
    (the diffusion run's with ``inference_mode=diffusion``)."""
    key = net_files.stage_domain_key(gen)
    domain = checkpoint_domain(gen.io[key])
    if domain is None and is_remote(str(gen.io[key])):
        raise ConfigError(
            f"{nets_by_lead.pair_name(gen)}: a published net (a name or URL) carries no domain.json "
            "(grids, statistics); forecast -> downscale needs the CorrDiff run folder a net was trained in"
        )
    if domain is None:
        raise FileNotFoundError(
            f"{nets_by_lead.pair_name(gen)}: no domain.json in its run folder (give the CorrDiff run folder or a checkpoint inside it)"
        )
    return domain


def climax_names(domain: Domain, run: Run, variable_map: Mapping[str, str]) -> list[str]:
    """The ClimaX output feeding each CorrDiff input (``variable_map`` where names differ)."""
    names = [variable_map.get(v, v) for v in domain.input_variables]
    outputs = run.info.out_variables
    absent = [f"{v} (ClimaX {n})" for v, n in zip(domain.input_variables, names) if n not in outputs]
    if absent:
        raise UnknownName(
            f"CorrDiff inputs {absent} are not outputs of the ClimaX run {outputs}; map names with variable_map"
        )
    return names


def truth_at(truth: xr.Dataset, valid: np.ndarray, domain: Domain) -> np.ndarray:
    """``[T, C_out, H, W]`` fine-grid truth at the ``valid`` times."""
    missing = [str(t) for t in pd.to_datetime(valid) if t not in pd.to_datetime(truth.time.values)]
    if missing:
        raise UnknownName(f"truth lacks valid times {missing}")
    picked = truth.sel(time=valid)
    return np.stack([picked[v].values for v in domain.output_variables], axis=1)
