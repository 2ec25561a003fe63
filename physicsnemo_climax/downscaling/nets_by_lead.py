# SPDX-License-Identifier: Apache-2.0
"""A pair of CorrDiff nets per lead range: each forecast lead downscaled by the nets trained on it.

A downscaler trained on forecasts learns their errors, which grow with the
lead, and one pair of nets for leads from 6 h to 7 days trades the leads
against each other (``docs/corrdiff.md``, the scorecard). Generation and
``climax downscale forecast`` therefore take several pairs:
``generation.io.reg_ckpt_filename`` and ``generation.io.res_ckpt_filename``
as lists of the same length, pair ``k`` being the ``k``-th of each (one list
in a single-stage ``inference_mode``). A single path, as upstream writes it,
is one pair.

Each sample goes to the pair whose training run's ``domain.json`` lists its
lead (``lead_hours``, the leads its ``dataset=forecast_coarse_fine`` was
given); where several do, to the one trained on the fewest leads (a net for
6 h alone before one for every lead), and a pair trained on analyses takes
the leads no other pair was trained on. A lead listed by two pairs of as many
leads, a lead no pair takes, two pairs trained on analyses and a pair without
``domain.json`` are refused, naming them: the choice is never a guess.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from omegaconf import DictConfig, ListConfig, OmegaConf

from ..engine.checks import config_error
from ..errors import ConfigError
from .domain import Domain
from .net_files import stage_domain_key

#: The ``generation.io`` keys that name the nets of a pair.
NET_KEYS = ("reg_ckpt_filename", "res_ckpt_filename")


def _listed(value) -> list | None:
    """``value`` as a list when it is one (a YAML or command-line list), else ``None``."""
    return list(value) if isinstance(value, (ListConfig, list, tuple)) else None


def pair_sections(gen: DictConfig, keys: Sequence[str] = NET_KEYS) -> list[DictConfig]:
    """One ``generation`` section per pair of nets, each naming one path per stage.

    Parameters
    ----------
    gen : DictConfig
        The ``generation`` section; ``io.reg_ckpt_filename`` / ``io.res_ckpt_filename`` a path each
        (one pair) or lists of the same length (pair ``k``: the ``k``-th of each).
    keys : sequence of str
        The ``io`` keys of the stages that run (:func:`stage_keys`).

    Returns
    -------
    list of DictConfig
        Copies of ``gen``, the ``k``-th with ``io.pair = k`` and the ``k``-th path of each listed key.

    Raises
    ------
    ConfigError
        Lists of different lengths, an empty list, or a list beside a single path.
    """
    lists = {key: _listed(gen.io[key]) for key in keys}
    lengths = {key: len(v) for key, v in lists.items() if v is not None}
    if not lengths:
        return [gen]
    if len(lengths) < len(keys) or len(set(lengths.values())) > 1 or 0 in lengths.values():
        given = ", ".join(f"generation.io.{key}: {lengths.get(key, 'one path')}" for key in keys)
        raise ConfigError(
            f"several pairs of nets need as many regression as diffusion nets, pair k being the k-th of each ({given})"
        )
    sections = []
    for k in range(next(iter(lengths.values()))):
        section = OmegaConf.create(OmegaConf.to_container(gen, resolve=True))
        for key in keys:
            section.io[key] = lists[key][k]
        section.io.pair = k
        sections.append(section)
    return sections


def net_paths(gen: DictConfig) -> list:
    """Every net path ``generation.io`` names, each path of a list (``None`` for a key not set):
    the inputs an output file may not replace."""
    values = [OmegaConf.select(gen, f"io.{key}", throw_on_missing=False) for key in NET_KEYS]
    return [path for value in values for path in (_listed(value) if _listed(value) is not None else [value])]


def stage_keys(gen: DictConfig) -> tuple[str, ...]:
    """The ``generation.io`` keys of the stages ``generation.inference_mode`` runs."""
    mode = gen.inference_mode
    return {"regression": NET_KEYS[:1], "diffusion": NET_KEYS[1:]}.get(mode, NET_KEYS)


def io_key(section: DictConfig, key: str) -> str:
    """The config key a pair's net came from, for messages: ``generation.io.reg_ckpt_filename[1]``
    (no index for a single pair)."""
    pair = section.io.get("pair")
    return f"generation.io.{key}" + ("" if pair is None else f"[{pair}]")


def pair_name(section: DictConfig) -> str:
    """A pair's name in messages: the config key and path of the net whose run holds its statistics."""
    key = stage_domain_key(section)
    return f"{io_key(section, key)}={section.io[key]}"


def pick_pairs(domains: Sequence[Domain | None], hours: Sequence[float | None], where: Sequence[str]) -> np.ndarray:
    """The pair that downscales each sample, by its lead.

    Parameters
    ----------
    domains : sequence of Domain or None
        Each pair's training run's (``None``: no ``domain.json`` was found).
    hours : sequence of float or None
        ``[N]`` each sample's lead in hours (``None``: an analysis, not a forecast).
    where : sequence of str
        Each pair's name in messages (its regression net's config key and path).

    Returns
    -------
    np.ndarray
        ``[N]`` integers: the index of each sample's pair (all zero for one pair).

    Raises
    ------
    ConfigError
        With several pairs: a pair without ``domain.json``, two pairs trained on analyses, a lead
        listed by two pairs of as many leads, a sample without a lead, or a lead no pair takes;
        each named.
    """
    if len(domains) == 1:
        return np.zeros(len(hours), dtype=int)
    holder = _lead_holders(domains, where)
    on_analyses = [k for k, d in enumerate(domains) if d.lead_hours is None]
    if len(on_analyses) > 1:
        raise ConfigError(
            f"{' and '.join(where[k] for k in on_analyses)} were both trained on analyses: "
            "only one pair may take the leads no forecast-trained pair was trained on"
        )
    fallback = on_analyses[0] if on_analyses else None
    picked = []
    for h in hours:
        if h is None:
            raise ConfigError("several pairs of nets are picked by the lead they downscale, but these data have none")
        k = holder.get(float(h), fallback)
        if k is None:
            trained = "; ".join(f"{w}: {d.lead_hours} h" for w, d in zip(where, domains))
            raise ConfigError(f"lead {float(h)} h: no pair of nets was trained on it ({trained})")
        picked.append(k)
    return np.array(picked, dtype=int)


def _lead_holders(domains: Sequence[Domain | None], where: Sequence[str]) -> dict[float, int]:
    """Each trained lead's pair: of the pairs trained on it, the one trained on the fewest leads
    (a net for 6 h alone before one for every lead). Refuses a pair without ``domain.json`` and a
    lead two pairs of as many leads were trained on."""
    holder: dict[float, int] = {}
    for k, domain in enumerate(domains):
        if domain is None:
            raise ConfigError(
                f"{where[k]}: no domain.json in its run folder, so the leads it was trained on are unknown; "
                "picking nets by lead needs the CorrDiff run folders (or checkpoints inside them)"
            )
        for h in domain.lead_hours or []:
            other = holder.get(h)
            if other is None or len(domain.lead_hours) < len(domains[other].lead_hours):
                holder[h] = k
            elif len(domain.lead_hours) == len(domains[other].lead_hours):
                raise ConfigError(
                    f"lead {h} h: both {where[other]} and {where[k]} were trained on it, each on "
                    f"{len(domain.lead_hours)} lead(s); give the lead to one pair, or to a pair trained on fewer leads"
                )
    return holder


def check_same_fields(domains: Sequence[Domain], where: Sequence[str]) -> None:
    """Refuse pairs whose runs differ in grid or channels: their outputs go to one file.

    Raises
    ------
    ConfigError
        Naming the first pair unlike the first one and what differs.
    """
    first = domains[0]
    for domain, name in zip(domains[1:], where[1:]):
        for what in ("shape", "factor", "input_variables", "invariant_variables", "output_variables"):
            if getattr(domain, what) != getattr(first, what):
                raise ConfigError(
                    f"{name}: trained with {what} {getattr(domain, what)}, but {where[0]} with "
                    f"{getattr(first, what)}; the pairs of one generation share grid and channels"
                )


def check_time_block(size) -> int:
    """``generation.time_block``, checked: a whole number of times, at least 1 (:class:`ConfigError`
    naming it otherwise)."""
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise config_error("generation.time_block", size, "give a whole number of times, at least 1")
    return size


def pair_chunks(pairs: Sequence[int], size: int) -> list[tuple[int, list[int]]]:
    """Positions ``0 .. N-1`` in consecutive chunks of at most ``size`` that share one pair.

    Parameters
    ----------
    pairs : sequence of int
        ``[N]`` each position's pair (:func:`pick_pairs`).
    size : int
        ``generation.time_block``.

    Returns
    -------
    list of (int, list of int)
        ``(pair, positions)`` in order: the file keeps the order the samples were asked in.

    Raises
    ------
    ConfigError
        ``size`` is not a whole number of times, at least 1, naming ``generation.time_block``.
    """
    size = check_time_block(size)
    chunks: list[tuple[int, list[int]]] = []
    for position, pair in enumerate(pairs):
        if chunks and chunks[-1][0] == pair and len(chunks[-1][1]) < size:
            chunks[-1][1].append(position)
        else:
            chunks.append((int(pair), [position]))
    return chunks


def pairs_record(sections: Sequence[DictConfig], domains: Sequence[Domain], keys: Sequence[str]) -> dict:
    """What a generation file records of its pairs (attributes; nothing for one pair): each pair's
    nets and the leads it took (``analyses`` for a pair trained on them)."""
    if len(sections) == 1:
        return {}
    lines = []
    for section, domain in zip(sections, domains):
        leads = "other leads (trained on analyses)" if domain.lead_hours is None else f"{domain.lead_hours} h"
        nets = " + ".join(str(section.io[key]) for key in keys)
        lines.append(f"{leads}: {nets}")
    return {"nets_by_lead": "; ".join(lines)}
