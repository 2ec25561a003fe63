# SPDX-License-Identifier: Apache-2.0
"""Start a CorrDiff stage from a trained net of the same stage (``model.init``).

The usual way to train a downscaler on forecasts: train it on analyses, then go
on training it on forecasts, told the lead. The weights are copied by name; a net
trained without lead times may start a lead-time-aware one, and then the layers
that read the input get zero weights for the lead-time channels (the last input
channels of ``SongUNetPosLtEmbd``), so the new net starts with the source's
outputs at every lead and learns from there how the leads differ.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from physicsnemo.core import Module

from ..errors import CheckpointMismatch
from . import net_files
from .domain import Domain, checkpoint_domain

logger = logging.getLogger(__name__)

KEY = "model.init"


def start_from(net: Module, path: str | Path, stage: str, domain: Domain) -> Module:
    """Copy the weights of the trained ``stage`` net at ``path`` (``.mdlus`` or run folder) into ``net``.

    Parameters
    ----------
    net : Module
        The new net, as :mod:`.models` built it for this run.
    path : str or Path
        ``model.init``.
    stage : {"regression", "diffusion"}
    domain : Domain
        This run's data; a run folder's ``domain.json`` must have the same input and output channels.

    Raises
    ------
    CheckpointMismatch
        Naming ``model.init`` and the first thing that differs: the class, the grid, the channels,
        or a weight that is missing, extra or of another shape.
    """
    source = net_files.load_net(path, KEY, stage)
    file = source.checkpoint_source.split("=", 1)[1]
    _check_channels(Path(path), domain)
    if type(source).__name__ != type(net).__name__:
        raise CheckpointMismatch(f"{KEY}={file}: a {type(source).__name__}, this stage builds a {type(net).__name__}")
    grids = [
        (getattr(m, "img_shape_y", None), getattr(m, "img_shape_x", None))
        for m in (net_files.inner_unet(source), net_files.inner_unet(net))
    ]
    if grids[0] != grids[1]:
        raise CheckpointMismatch(f"{KEY}={file}: a net for grid {grids[0]}, this run's grid is {grids[1]}")
    copied = _copy_weights(source.state_dict(), net, file)
    logger.info("%s=%s: %d weights copied%s", KEY, file, len(copied), _padding_note(copied))
    return net


def _check_channels(path: Path, domain: Domain) -> None:
    """The source run's input and output channels are this run's (a run folder, its best checkpoint
    or a file in either)."""
    trained = checkpoint_domain(path)
    if trained is None:
        return  # an .mdlus alone: its layers' shapes are checked instead
    for what in ("input_channels", "output_variables"):
        if getattr(trained, what) != getattr(domain, what):
            raise CheckpointMismatch(
                f"{KEY}={path}: trained with {what} {getattr(trained, what)}, this run has {getattr(domain, what)}"
            )


def _copy_weights(saved: dict, net: Module, file: str) -> dict[str, str]:
    """Copy ``saved`` into ``net``'s weights; returns ``{name: "same" | "lead channels zero"}``."""
    lead_channels = getattr(net_files.inner_unet(net), "lead_time_channels", 0) if net_files.lead_time_steps(net) else 0
    extra = sorted(set(saved) - set(net.state_dict()))
    if extra:
        raise CheckpointMismatch(f"{KEY}={file}: weights this net does not have: {extra[:3]}")
    copied = {}
    with torch.no_grad():
        for name, weight in net.state_dict().items():
            if name not in saved:
                if name.endswith("lt_embd"):
                    continue  # a net trained without lead times: the embedding keeps its initialisation
                raise CheckpointMismatch(f"{KEY}={file}: has no weight {name}")
            copied[name] = _copy_one(saved[name], weight, name, lead_channels, file)
    return copied


def _copy_one(source: torch.Tensor, target: torch.Tensor, name: str, lead_channels: int, file: str) -> str:
    """One weight: the same shape is copied; a layer reading ``lead_channels`` more input channels
    gets the source's weights for the others and zeros for the lead channels."""
    if source.shape == target.shape:
        target.copy_(source)
        return "same"
    grown = source.dim() == target.dim() >= 2 and target.shape[1] - source.shape[1] == lead_channels > 0
    if grown and source.shape[:1] + source.shape[2:] == target.shape[:1] + target.shape[2:]:
        target.zero_()
        target[:, : source.shape[1]] = source
        return "lead channels zero"
    raise CheckpointMismatch(
        f"{KEY}={file}: weight {name} has shape {list(source.shape)}, this net's {list(target.shape)}"
    )


def _padding_note(copied: dict[str, str]) -> str:
    """The log's note of the weights that grew lead-time input channels, if any."""
    padded = [name for name, how in copied.items() if how != "same"]
    return f"; lead-time input channels of {padded} start at zero" if padded else ""
