# SPDX-License-Identifier: Apache-2.0
"""``climax doctor``: what this machine offers the recipes, and what a config asks of it.

The environment comes from :func:`..engine.environment.probe`, the asks and
their outcome from :func:`..engine.plan.choices`, the same check every
training and generation job runs at its start (:func:`..engine.plan.resolve`).
"""

from __future__ import annotations

from dataclasses import asdict

import torch
import torch.distributed as dist

from .engine.distributed import setup_distributed
from .engine.environment import Environment
from .engine.plan import Choice, explain


def report(env: Environment, choices: list[Choice], config_name: str) -> str:
    """The text ``climax doctor`` prints."""
    width = max(len(f.name) for f in env.features.values())
    lines = ["environment"]
    lines += [f"  {'ok ' if f.ok else ' - '} {f.name:<{width}}  {f.detail}" for f in env.features.values()]
    lines += ["", f"fast paths of config {config_name!r}"]
    for c in choices:
        if c.missing is None:
            lines.append(f"  ok  {c.key}={c.asked!r}: {c.uses}")
        elif c.allowed:
            lines.append(f"  ->  {c.key}={c.asked!r}: {c.missing}; falls back to {c.fallback!r}")
        else:
            lines.append(f"  !!  {c.key}={c.asked!r}: {c.missing}")
    failing = [c for c in choices if c.fails]
    fallbacks = sum(c.missing is not None and c.allowed for c in choices)
    ready = (
        f"ready, with {fallbacks} fallback(s) marked ->" if fallbacks else "ready: the config's requests are met here"
    )
    lines += ["", explain(failing) if failing else ready]
    return "\n".join(lines)


def as_dict(env: Environment, choices: list[Choice]) -> dict:
    """The report as JSON-ready data (``climax doctor --json``)."""
    return {
        "environment": {k: asdict(f) for k, f in env.features.items()},
        "choices": [dict(asdict(c), fails=c.fails) for c in choices],
        "ready": not any(c.fails for c in choices),
    }


def check_distributed() -> str:
    """Initialise the process group as training does and all-reduce the ranks' ones."""
    manager = setup_distributed()
    ones = torch.ones(1, device=manager.device)
    if manager.distributed:
        dist.all_reduce(ones)
    if int(ones.item()) != manager.world_size:
        raise RuntimeError(f"all-reduce gave {int(ones.item())}, expected {manager.world_size} ranks")
    return (
        f"rank {manager.rank} of {manager.world_size} ({manager.device}): "
        f"all-reduce over {dist.get_backend() if manager.distributed else 'no process group'} ok"
    )
