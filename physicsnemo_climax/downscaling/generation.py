# SPDX-License-Identifier: Apache-2.0
"""Ensembles from the two CorrDiff stages, streamed time block by time block to a NetCDF file.

Times are drawn in blocks of ``generation.time_block`` (default 1). For each
time the regression net gives the mean (``regression_step``) and the
diffusion net samples ``num_ensembles`` residuals in batches of
``seed_batch_size`` seeds (``diffusion_step`` with PhysicsNeMo's EDM
samplers; member ``k`` always uses seed ``seed + k``, whatever the batching,
the time block and the number of ranks). Seed batches are spread over ranks
and gathered on rank 0 after each block; rank 0 hands the block to the
:class:`.writer.GenerationWriter` thread, which appends it to the file while
the next block is drawn. Memory holds a few blocks, whatever the number of
times. Given a pair of nets per lead range (lists in ``generation.io``), each
sample is drawn by the pair trained on its lead (:mod:`.nets_by_lead`).

The output file (written to a hidden temporary file, flushed after each block
and renamed when complete) has root dimensions ``time`` (unlimited),
``ensemble``, ``y``, ``x``, a ``time`` coordinate (valid time), ``lead_time``
when the input was a forecast, ``lat``/``lon`` ``(y, x)`` always (NaN where
the data carry no coordinates, as the upstream recipe writes them), and groups
``input`` (the upsampled coarse input and invariants), ``regression`` (the
mean), ``prediction`` (``ensemble, time, y, x``) and, when available,
``truth``; all in physical units.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from physicsnemo.diffusion.multi_diffusion import GridPatching2D

from ..engine.checks import check_seed
from ..engine.distributed import setup_distributed
from ..engine.plan import RunPlan, decide_device, resolve
from ..errors import ConfigError, UnknownName
from ..files import check_file_output
from . import models, net_files, nets_by_lead, sampling
from .datasets import build_dataset
from .domain import Domain, checkpoint_domain
from .forecast_data import ForecastCoarseFineDataset
from .writer import Block, GenerationWriter


def seed_batches(num_ensembles: int, seed_batch_size: int, seed: int = 0) -> list[torch.Tensor]:
    """Seeds ``seed .. seed + N - 1`` in batches of ``seed_batch_size``.

    Raises
    ------
    ValueError
        When ``seed_batch_size`` does not divide ``num_ensembles``, or ``seed`` is not a whole
        number >= 0 (:class:`..errors.ConfigError`).
    """
    seed = check_seed(seed)
    if num_ensembles < 1 or seed_batch_size < 1 or num_ensembles % seed_batch_size:
        raise ConfigError(
            f"generation.num_ensembles={num_ensembles} is not divisible by generation.seed_batch_size={seed_batch_size}"
        )
    return list(torch.arange(seed, seed + num_ensembles).split(seed_batch_size))


def seed_record(seed: int) -> dict:
    """What a generation file records of its seeds (attributes)."""
    return {"seed": int(seed), "member_seeds": f"member k was drawn with seed {int(seed)} + k"}


def run_record(seed: int, device: torch.device, plan: RunPlan) -> dict:
    """What a generation file records of how it was made (attributes): the seeds, the device the
    nets ran on and the run plan's precision, apex GroupNorm and compile."""
    return {
        **seed_record(seed),
        "device": str(device),
        "precision": plan.precision,
        "apex_group_norm": int(plan.apex_group_norm),
        "compile": int(plan.compile),
    }


def check_stats(stats: dict, trained: dict, domain: Domain, key: str) -> None:
    """Refuse statistics unlike those the nets of config ``key`` were trained with (``domain.json``):
    the first channel whose mean or std differs by more than 1e-4 of its std is named, with both values.

    Raises
    ------
    ConfigError
        Naming the group, the channel and both values, and ``generation.check_stats=false``.
    """
    for group, names in (
        ("input", domain.input_variables),
        ("invariant", domain.invariant_variables),
        ("output", domain.output_variables),
    ):
        mine, theirs = stats.get(group, {}), trained.get(group, {})
        for v in names:
            if v not in theirs:
                continue
            tol = 1e-4 * abs(theirs[v]["std"])
            for what in ("mean", "std"):
                if abs(mine[v][what] - theirs[v][what]) > tol:
                    raise ConfigError(
                        f"dataset statistics: {group} channel {v} has {what} {mine[v][what]:.6g}, but the nets of "
                        f"{key} were trained with {theirs[v][what]:.6g} (its domain.json); give the "
                        "training run's stats file (dataset.stats_path), or pass generation.check_stats=false to "
                        "normalise with these anyway"
                    )


def build_sampler(gen: DictConfig, shape: tuple[int, int]) -> sampling.EDMSampler:
    """``generation.sampler``: stochastic (EDM Heun) or deterministic (Euler or Heun ODE), patched on
    ``generation.patch_shape_y/x`` when ``generation.patching``."""
    patching = None
    if gen.get("patching"):
        patching = GridPatching2D(shape, (gen.patch_shape_y, gen.patch_shape_x), gen.overlap_pix, gen.boundary_pix)
    s = gen.sampler
    return sampling.EDMSampler(s.type, s.num_steps, s.get("solver") or "heun", patching)


@torch.no_grad()
def downscale(
    regression,
    diffusion,
    x: torch.Tensor,
    batches: list[torch.Tensor],
    sampler: sampling.EDMSampler,
    hr_mean_conditioning: bool = True,
    rank: int = 0,
    world: int = 1,
    lead_time_label: torch.Tensor | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Mean and ensemble for a sequence of inputs (normalized units).

    Parameters
    ----------
    regression, diffusion : Module
        The two stages (``diffusion=None``: regression only, the ensemble is the mean;
        ``regression=None``: diffusion only, the members are the diffusion output).
    x : torch.Tensor
        ``[T, C_in, H, W]`` network inputs, on the nets' device.
    batches : list of torch.Tensor
        Seed batches (:func:`seed_batches`); this rank takes ``batches[rank::world]``.
    sampler : EDMSampler
        :func:`build_sampler`'s; a Student-t diffusion net gets Student-t latents.
    lead_time_label : torch.Tensor, optional
        ``[T]`` integer lead-time labels, for lead-time-aware nets.

    Returns
    -------
    mean : torch.Tensor or None
        ``[T, C_out, H, W]`` (``None`` without a regression stage).
    members : torch.Tensor
        ``[N_rank, T, C_out, H, W]``: this rank's members, in seed order.
    """
    net_files.check_lead_time((regression, diffusion), lead_time_label)
    mine = batches[rank::world]
    means, members = [], []
    for t in range(x.shape[0]):
        label = None if lead_time_label is None else lead_time_label[t : t + 1].to(x.device)
        mean, drawn = _downscale_time(regression, diffusion, x[t : t + 1], label, mine, sampler, hr_mean_conditioning)
        if mean is not None:
            means.append(mean[0])
        members.append(drawn)
    return (torch.stack(means) if means else None), torch.stack(members, dim=1)


def _downscale_time(
    regression,
    diffusion,
    img_lr: torch.Tensor,
    label: torch.Tensor | None,
    mine: list[torch.Tensor],
    sampler: sampling.EDMSampler,
    hr_mean_conditioning: bool,
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Mean and this rank's members for one time (normalized units); :func:`downscale`'s step.

    Parameters
    ----------
    img_lr : torch.Tensor
        ``[1, C_in, H, W]`` the time's network input.
    label : torch.Tensor or None
        ``[1]`` its lead-time label, on the input's device.
    mine : list of torch.Tensor
        This rank's seed batches.

    Returns
    -------
    mean : torch.Tensor or None
        ``[1, C_out, H, W]`` (``None`` without a regression stage).
    members : torch.Tensor
        ``[N_rank, C_out, H, W]``: this rank's members, in seed order.
    """
    mean = None if regression is None else regression_mean(regression, img_lr, label)
    if diffusion is None or not mine:  # regression only, or no seeds on this rank
        if mine:
            return mean, mean[0].expand(sum(map(len, mine)), *mean.shape[1:])
        return mean, img_lr.new_zeros(0, (regression or diffusion).img_out_channels, *img_lr.shape[-2:])
    img_lr = img_lr.contiguous(memory_format=torch.channels_last)
    condition = img_lr if mean is None or not hr_mean_conditioning else torch.cat((mean, img_lr), dim=1)
    residuals = []
    for seeds in mine:
        size = len(seeds)
        residuals.append(
            sampling.sample_members(
                sampler,
                diffusion,
                seeds,
                condition.expand(size, -1, -1, -1),
                img_lr.expand(size, -1, -1, -1),
                **({} if label is None else {"lead_time_label": label.expand(size)}),
            )
        )
    residual = torch.cat(residuals)
    return mean, (residual if mean is None else mean + residual)


@torch.inference_mode()
def regression_mean(net, img_lr: torch.Tensor, label: torch.Tensor | None = None) -> torch.Tensor:
    """The regression stage's mean ``[1, C_out, H, W]`` of one input ``img_lr`` ``[1, C_in, H, W]``
    (``label`` ``[1]``: its lead-time label); the net's ``x`` argument is unused and given zeros."""
    x = torch.zeros(1, net.img_out_channels, *img_lr.shape[-2:], device=img_lr.device)
    kwargs = {} if label is None else {"lead_time_label": label}
    return net(x=x, img_lr=img_lr, **kwargs).float()


def stream(
    regression,
    diffusion,
    sampler: sampling.EDMSampler,
    batches: list[torch.Tensor],
    blocks: Iterable[tuple[torch.Tensor, dict]],
    writer: GenerationWriter | None,
    hr_mean_conditioning: bool = True,
    manager=None,
    autocast=nullcontext,
    channels_last: bool = False,
) -> None:
    """Draw the ensemble of each block of times and hand it to ``writer``.

    Parameters
    ----------
    blocks : iterable of (torch.Tensor, dict)
        ``[t, C_in, H, W]`` network inputs on the nets' device, and the rest of
        the :class:`.writer.Block` (``times``, ``truth``, ``lead_time``) and, for lead-time-aware
        nets, ``lead_time_label`` (``[t]`` integers).
    writer : GenerationWriter or None
        Where rank 0 sends each block (``None`` on the other ranks).
    manager : DistributedManager, optional
        Ranks share the seed batches; their members are gathered on rank 0 after each block.
    autocast : callable
        The run plan's autocast context.
    """
    rank, world = (manager.rank, manager.world_size) if manager is not None else (0, 1)
    for x, rest in blocks:
        x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        rest = dict(rest)
        labels = rest.pop("lead_time_label", None)
        with autocast():
            mean, members = downscale(
                regression, diffusion, x, batches, sampler, hr_mean_conditioning, rank, world, labels
            )
        members = _gather(members, batches, manager)
        if writer is not None:
            writer.put(Block(inputs=x.cpu(), mean=None if mean is None else mean.cpu(), members=members.cpu(), **rest))


def load_stages(gen: DictConfig, domain: Domain, device, sample: dict | None = None, plan: RunPlan | None = None):
    """The regression net (unless ``inference_mode=diffusion``) and the diffusion net (unless
    ``inference_mode=regression``), each loaded once as :mod:`.net_files` says, with the GroupNorm
    of the run ``plan`` (torch GroupNorm without one); ``None`` for a stage not run."""
    mode = net_files.inference_mode(gen)
    apex = plan is not None and plan.apex_group_norm
    regression = diffusion = None
    if mode != "diffusion":
        regression = net_files.load_frozen(
            gen.io.reg_ckpt_filename,
            nets_by_lead.io_key(gen, "reg_ckpt_filename"),
            domain,
            device,
            sample,
            gen.get("override_args"),
            apex,
        )
    if mode != "regression":
        diffusion = net_files.load_diffusion(
            gen.io.res_ckpt_filename, nets_by_lead.io_key(gen, "res_ckpt_filename"), domain, device, gen, apex
        )
    return regression, diffusion


def select_times(dataset_times, wanted, limit, names=None) -> list[int]:
    """Indices of the ``wanted`` times (all if ``None``), at most ``limit``: ISO valid times, or
    the dataset's own sample ``names`` where it has them (``gefs_hrrr``: ``2024011212f03``)."""
    stamps = pd.to_datetime(np.asarray(dataset_times))
    if wanted is None:
        index = list(range(len(stamps)))
    else:
        by_name = {str(n): i for i, n in enumerate(names)} if names is not None else {}
        positions = {t: i for i, t in enumerate(stamps)}

        def find(t):
            if str(t) in by_name:
                return by_name[str(t)]
            try:
                return positions.get(pd.Timestamp(t))
            except (ValueError, TypeError):
                return None

        index = [find(t) for t in wanted]
        missing = [t for t, i in zip(wanted, index) if i is None]
        if missing:
            raise UnknownName(
                f"generation.times {missing} are not in the dataset "
                f"({stamps[0]} .. {stamps[-1]}, {len(stamps)} times"
                + (f"; sample names {names[0]} .. {names[-1]}" if names is not None else "")
                + ")"
            )
    return index[:limit] if limit else index


def generate(cfg: DictConfig) -> Path | None:
    """Generate for ``cfg.dataset`` at ``cfg.generation.times``; rank 0 returns the file.

    With several pairs of nets (:mod:`.nets_by_lead`) each sample is drawn by the pair trained on
    its lead, and the file keeps the order the samples were asked in."""
    seed = check_seed(cfg.seed)
    plan = resolve(cfg)  # precision, compile, apex GroupNorm: present, or generation.fallback allows without
    gen = cfg.generation
    _check_output(cfg)
    manager = setup_distributed()  # its device: this rank's GPU when one is visible, else the CPU
    device, rank = decide_device(gen.get("device") or manager.device, "generation.device"), manager.rank
    batches = seed_batches(gen.num_ensembles, gen.seed_batch_size, seed)
    pairs = NetPairs.open(cfg)
    dataset = pairs.datasets[0]
    indices = select_times(dataset.times, gen.times, gen.max_times, getattr(dataset, "sample_names", None))
    chunks = pairs.assign(indices, gen.time_block)
    nets = pairs.load_nets(chunks, device, plan)
    sampler = build_sampler(gen, dataset.domain.shape)
    with (
        GenerationWriter(
            gen.io.output_filename,
            dataset.domain,
            gen.num_ensembles,
            regression=net_files.inference_mode(gen) != "diffusion",
            lead_time=_forecast_leads(dataset) is not None,
            attrs={**run_record(seed, device, plan), **pairs.record()},
        )
        if rank == 0
        else nullcontext()
    ) as out:
        for pair, chunk in chunks:  # consecutive samples of one pair
            stream(
                *nets[pair],
                sampler,
                batches,
                _input_blocks(pairs.datasets[pair], [chunk], device, rank),
                out,
                gen.hr_mean_conditioning,
                manager,
                lambda: plan.autocast(device),
                plan.apex_group_norm,
            )
    return Path(gen.io.output_filename) if rank == 0 else None


@dataclass
class NetPairs:
    """The pairs of nets of a generation (one, unless several are given: :mod:`.nets_by_lead`),
    each with the dataset normalised and labelled as its run was trained.

    Attributes
    ----------
    sections : list of DictConfig
        One ``generation`` section per pair (:func:`.nets_by_lead.pair_sections`).
    datasets : list
        ``cfg.dataset`` opened for each pair (:func:`_open_dataset`); the same samples in each.
    domains : list of Domain or None
        Each pair's training run's (``None``: no ``domain.json``, possible for one pair only).
    """

    sections: list
    datasets: list
    domains: list

    @classmethod
    def open(cls, cfg: DictConfig) -> NetPairs:
        """The pairs of ``cfg.generation``, ``cfg.dataset`` opened for each."""
        gen = cfg.generation
        sections = nets_by_lead.pair_sections(gen, nets_by_lead.stage_keys(gen))
        domains = [checkpoint_domain(s.io[net_files.stage_domain_key(s)]) for s in sections]
        if len(sections) > 1:
            nets_by_lead.check_same_fields(domains, [nets_by_lead.pair_name(s) for s in sections])
        return cls(sections, [_open_dataset(cfg.dataset, s, d) for s, d in zip(sections, domains)], domains)

    def assign(self, indices: list[int], size) -> list[tuple[int, list[int]]]:
        """The dataset ``indices`` in blocks of at most ``size`` (``generation.time_block``) of one
        pair each, in order: ``(pair, indices)``; each pair's dataset labels its samples."""
        hours = getattr(self.datasets[0], "sample_lead_hours", None)
        leads = [None if hours is None else float(hours[i]) for i in indices]
        picked = nets_by_lead.pick_pairs(self.domains, leads, [nets_by_lead.pair_name(s) for s in self.sections])
        for pair, (dataset, domain) in enumerate(zip(self.datasets, self.domains)):
            mine = [i for i, p in zip(indices, picked) if p == pair]
            if domain is not None and isinstance(dataset, ForecastCoarseFineDataset):
                dataset.label_as_trained(domain, mine)  # the labels of the run's leads, not of these data's
        return [(pair, [indices[k] for k in at]) for pair, at in nets_by_lead.pair_chunks(picked, size)]

    def load_nets(self, chunks, device, plan: RunPlan) -> dict[int, tuple]:
        """``{pair: (regression, diffusion)}`` for the pairs the ``chunks`` use, loaded once each and
        prepared as the run ``plan`` says (:func:`load_stages`, :func:`prepare_net`)."""
        nets = {}
        for pair, chunk in chunks:
            if pair not in nets:
                section, dataset = self.sections[pair], self.datasets[pair]
                stages = load_stages(section, dataset.domain, device, dataset[chunk[0]], plan)
                nets[pair] = tuple(prepare_net(net, plan) for net in stages)
        return nets

    def record(self) -> dict:
        """The file's record of the pairs (:func:`.nets_by_lead.pairs_record`)."""
        keys = nets_by_lead.stage_keys(self.sections[0])
        return nets_by_lead.pairs_record(self.sections, self.domains, keys)


def _check_output(cfg: DictConfig) -> None:
    """Refuse ``generation.io.output_filename`` when it exists (unless ``generation.io.overwrite``)
    or is one of the run's inputs: the checkpoints, the data and the statistics."""
    gen = cfg.generation
    data = [OmegaConf.select(cfg, key, throw_on_missing=False) for key in ("dataset.data_path", "dataset.stats_path")]
    inputs = nets_by_lead.net_paths(gen) + data
    check_file_output(
        gen.io.output_filename,
        overwrite=gen.io.overwrite,
        inputs=inputs,
        option="generation.io.output_filename",
        hint="generation.io.overwrite=true",
    )


def _open_dataset(data: DictConfig, gen: DictConfig, trained: Domain | None):
    """The dataset ``data``, normalised with the statistics (and units) the nets of ``gen`` were
    ``trained`` with where their ``domain.json`` is found; its own statistics are then checked
    against those (:func:`check_stats`) unless ``generation.check_stats=false``."""
    dataset = build_dataset(data, *((trained.stats, trained.units) if trained is not None else ()))
    if trained is not None and gen.check_stats:
        key = nets_by_lead.io_key(gen, net_files.stage_domain_key(gen))
        check_stats(dataset.domain.stats, trained.stats, dataset.domain, key)
    return dataset


def _input_blocks(dataset, chunks: list[list[int]], device, rank: int):
    """The blocks :func:`stream` draws: for each chunk of dataset indices, ``[t, C_in, H, W]`` inputs
    on ``device`` and the rest of the block (valid ``times``, ``truth`` ``[t, C_out, H, W]`` in
    physical units on rank 0, else ``None``, the samples' ``lead_time_label`` and, from forecasts,
    their ``lead_time``)."""
    leads = _forecast_leads(dataset)  # once: every chunk takes its part
    for chunk in chunks:
        samples = [dataset[i] for i in chunk]
        x = torch.stack([s["input"] for s in samples]).to(device)
        truth = np.stack([dataset.fine_fields(i) for i in chunk]) if rank == 0 else None
        rest = {
            "times": np.asarray(dataset.times)[chunk],
            "truth": truth,
            "lead_time_label": net_files.sample_lead_time_labels(samples),
            "domain": dataset.domain,  # the statistics of the nets that draw it
        }
        if leads is not None:
            rest["lead_time"] = leads[chunk]
        yield x, rest


def _forecast_leads(dataset) -> np.ndarray | None:
    """``[N]`` the samples' leads (timedelta64) when the inputs are forecasts, else ``None``."""
    hours = getattr(dataset, "sample_lead_hours", None)
    return None if hours is None else pd.to_timedelta(np.asarray(hours), unit="h").to_numpy()


def prepare_net(net, plan: RunPlan):
    """A net loaded with the plan's GroupNorm (:func:`load_stages`) as the run plan says: ``amp_mode``
    for autocast; channels_last with apex GroupNorm; ``torch.compile``. ``None`` stays ``None``."""
    if net is None:
        return None
    models.set_amp_mode(net, plan.precision)
    if plan.apex_group_norm:
        net = net.to(memory_format=torch.channels_last)
    return torch.compile(net) if plan.compile else net


def _gather(members: torch.Tensor, batches: list[torch.Tensor], manager) -> torch.Tensor:
    """All ranks' members on rank 0, in seed order (rank ``r`` holds batches ``r, r + R, ...``)."""
    if manager is None or not (manager.distributed and manager.world_size > 1):
        return members
    world = manager.world_size
    parts = [None] * world if manager.rank == 0 else None
    torch.distributed.gather_object(members.cpu(), parts, dst=0)
    if manager.rank != 0:
        return members
    chunks = [list(part.split([len(b) for b in batches[r::world]])) for r, part in enumerate(parts)]
    return torch.cat([chunks[b % world][b // world] for b in range(len(batches))]).to(members.device)
