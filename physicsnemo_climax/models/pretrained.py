# SPDX-License-Identifier: Apache-2.0
"""Pretrained ClimaX weights into a model: one reader, one loader, one set of rules.

Every path goes through :func:`load_weights`: the official checkpoints
(:meth:`ClimaX.from_official_checkpoint`, ``climax convert``), ``init=`` from
an ``.mdlus`` or ``.ckpt`` with other variables or another grid
(:meth:`ClimaX.from_pretrained`: forecasting, CorrDiff's ClimaX regression),
and the ClimateBench encoder (the same method of its subclass). Its rules:

1. Per-variable weights (patch kernel ``token_embeds.{i}``, row ``i`` of
   ``var_embed`` and, unless ``head=False``, the variable's rows of the last
   head layer) move by variable name. Variables the checkpoint lacks keep
   their fresh initialisation (logged), or are an error listing them.
2. ``pos_embed`` is resampled bicubically when the patch grids differ (logged).
3. Every other weight (only those under ``parts``, when given) must be in
   both with one shape; otherwise the error lists the missing, unexpected and
   mis-shaped keys. Weights outside ``parts`` keep their initialisation.
4. A stochastic ClimaX's noise maps (``noise_proj.*``) are the one exception
   to rule 3: a file without them (deterministic, official) leaves the
   model's zero maps, so its forecasts are the file's model's until trained;
   a deterministic model drops a file's maps (logged).

Official checkpoint layouts
---------------------------
* Lightning file with ``state_dict`` whose keys start with ``net.``, or a bare
  state dict.
* Legacy names ``channel_embed``, ``channel_query``, ``channel_agg.*``
  (the released weights) or current ``var_*`` names.
* Per-variable patch embeddings ``token_embeds.{i}.proj.*`` or the stacked
  ``token_embeds.proj_weights`` / ``token_embeds.proj_biases``.

Architecture sizes are read from the shapes; the number of attention heads is
not visible in the weights and defaults to 16, the official value.
"""

from __future__ import annotations

import logging
import math
import pickle
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import CheckpointMismatch, UnknownName
from ..hub import local_file
from . import mdlus
from .embeddings import infer_patch_grid, resize_pos_embed
from .variables import DEFAULT_VARIABLES

logger = logging.getLogger(__name__)

_LEGACY = (("channel_embed", "var_embed"), ("channel_query", "var_query"), ("channel_agg", "var_agg"))


def read_official_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The network's weights from an official checkpoint, with reference names.

    Raises
    ------
    ValueError
        If the file cannot be read safely, or holds keys outside the network.
    """
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointMismatch(
            f"{path}: not loadable with torch.load(weights_only=True); it holds "
            f"objects other than tensors and plain containers ({err})"
        ) from err
    except (RuntimeError, EOFError, OSError) as err:  # truncated or not a torch file
        if isinstance(err, FileNotFoundError):
            raise
        raise CheckpointMismatch(f"{path}: not a readable checkpoint file ({str(err).splitlines()[0]})") from err
    if not isinstance(ckpt, dict):
        raise CheckpointMismatch(f"{path}: expected a checkpoint dictionary, got {type(ckpt).__name__}")
    if "state_dict" in ckpt:
        raw = ckpt["state_dict"]
        outside = sorted(k for k in raw if not k.startswith("net."))
        if outside:
            raise CheckpointMismatch(f"{path}: keys outside the network 'net.': {outside}")
        raw = {k[len("net.") :]: v for k, v in raw.items()}
    else:
        raw = dict(ckpt)

    state = {}
    for key, value in raw.items():
        for old, new in _LEGACY:
            if key.startswith(old):
                key = new + key[len(old) :]
        state[key] = value

    if "token_embeds.proj_weights" in state:  # stacked layout
        weights = state.pop("token_embeds.proj_weights")
        biases = state.pop("token_embeds.proj_biases", None)
        if biases is None:
            raise CheckpointMismatch(f"{path}: token_embeds.proj_weights without token_embeds.proj_biases")
        for i in range(weights.shape[0]):
            state[f"token_embeds.{i}.proj.weight"] = weights[i]
            state[f"token_embeds.{i}.proj.bias"] = biases[i]
    return state


def infer_architecture(state: dict[str, torch.Tensor]) -> dict:
    """ClimaX constructor arguments implied by the weights' shapes."""
    required = ["token_embeds.0.proj.weight", "pos_embed", "var_embed", "blocks.0.mlp.fc1.weight"]
    absent = [k for k in required if k not in state]
    if absent:
        raise CheckpointMismatch(f"checkpoint does not match a supported ClimaX layout: missing {absent}")

    def indices(pattern: str) -> list[int]:
        return sorted({int(m.group(1)) for k in state if (m := re.fullmatch(pattern, k))})

    embed_dim, _, patch_size, _ = state["token_embeds.0.proj.weight"].shape
    num_vars = len(indices(r"token_embeds\.(\d+)\.proj\.weight"))
    head_ids = indices(r"head\.(\d+)\.weight")
    if not head_ids:
        raise CheckpointMismatch("checkpoint does not match a supported ClimaX layout: no head.*.weight")
    last_head = f"head.{head_ids[-1]}.weight"
    shapes = {"var_embed": (1, num_vars, embed_dim), last_head: (num_vars * patch_size**2, embed_dim)}
    mismatched = {k: tuple(state[k].shape) for k, shape in shapes.items() if tuple(state[k].shape) != shape}
    if mismatched:
        raise CheckpointMismatch(
            f"checkpoint does not match a supported ClimaX layout: {num_vars} token embeddings "
            f"of patch {patch_size} and width {embed_dim} need {shapes}, got {mismatched}"
        )
    grid = infer_patch_grid(state["pos_embed"].shape[1])
    return dict(
        img_size=(grid[0] * patch_size, grid[1] * patch_size),
        patch_size=int(patch_size),
        embed_dim=int(embed_dim),
        depth=len(indices(r"blocks\.(\d+)\.norm1\.weight")),
        decoder_depth=len(head_ids) - 1,
        mlp_ratio=state["blocks.0.mlp.fc1.weight"].shape[0] / embed_dim,
    )


@dataclass
class Weights:
    """A trained ClimaX's weights and what they mean.

    Attributes
    ----------
    state : dict of str to torch.Tensor
        The state dict, in this package's parameter names.
    variables : list of str
        Variable of each token embedding, by index.
    patch_grid : (int, int)
        Patch rows and columns of ``pos_embed``.
    source : str
        Where they come from (for messages).
    """

    state: dict[str, torch.Tensor]
    variables: list[str]
    patch_grid: tuple[int, int]
    source: str


def read_weights(path: str | Path, checkpoint_variables: Sequence[str] = DEFAULT_VARIABLES) -> Weights:
    """The :class:`Weights` of an ``.mdlus`` or an official ``.ckpt`` (whose token
    embeddings are ``checkpoint_variables``, by default the official 48).

    An ``.mdlus`` must hold a ClimaX (or a registered subclass): it is checked as
    :mod:`.mdlus` says before anything is built from it. ``path`` may also name published
    weights (:mod:`..hub`: a catalogue name, ``hf://``, ``https://``, ``s3://`` ...), fetched into
    the cache and verified first.
    """
    path = local_file(path)
    if str(path).endswith(".mdlus"):
        model = mdlus.load_module(path, "ClimaX", subclasses=True)  # by registry name: climax.py imports this module
        return Weights(model.state_dict(), list(model.variables), tuple(model.patch_grid), str(path))
    state = read_official_state_dict(path)
    args = infer_architecture(state)
    if state["var_embed"].shape[1] != len(checkpoint_variables):
        raise CheckpointMismatch(
            f"{path}: {state['var_embed'].shape[1]} token embeddings "
            f"but {len(checkpoint_variables)} checkpoint_variables"
        )
    p = args["patch_size"]
    return Weights(state, list(checkpoint_variables), (args["img_size"][0] // p, args["img_size"][1] // p), str(path))


def _last_head(state: dict[str, torch.Tensor]) -> str:
    """The last head layer (``head.4``): its rows are per variable."""
    layers = [int(m.group(1)) for k in state if (m := re.fullmatch(r"head\.(\d+)\.weight", k))]
    return f"head.{max(layers)}"


#: Buffers set from the training data, not carried from another run (a residual model's statistics).
DATA_KEYS = ("climatology", "anomaly_std", "anomaly_corr", "anomaly_hours")


#: A stochastic ClimaX's noise maps (``noise_proj.*``): optional both ways. A file without them
#: (a deterministic model, an official checkpoint) leaves the model's, which start at zero
#: effect; a deterministic model takes a stochastic file without them (at zero noise).
NOISE_KEYS = ("noise_proj.",)


def per_variable_keys(head: str | None) -> tuple[str, ...]:
    """Key prefixes of the weights that exist once per variable (``head``: the
    last head layer, e.g. ``"head.4"``, or ``None`` when the head is not transferred)."""
    return ("token_embeds.", "var_embed") + ((f"{head}.",) if head else ())


def transfer_variable_weights(
    target: dict[str, torch.Tensor],
    target_vars: Sequence[str],
    source: dict[str, torch.Tensor],
    source_vars: Sequence[str],
    target_head: str | None,
    source_head: str | None = None,
) -> list[str]:
    """Copy, in place, the per-variable weights of every variable both state dicts
    know (head rows too unless ``target_head`` is ``None``, resized to the target's head window by
    :func:`resize_head_window`); returns them in ``target_vars`` order."""
    shared = [v for v in target_vars if v in source_vars]
    new = [list(target_vars).index(v) for v in shared]
    old = [list(source_vars).index(v) for v in shared]
    for i, j in zip(new, old):
        for part in ("weight", "bias"):
            target[f"token_embeds.{i}.proj.{part}"] = source[f"token_embeds.{j}.proj.{part}"]
    target["var_embed"][:, new] = source["var_embed"][:, old]
    if target_head is None:
        return shared
    for part in ("weight", "bias"):  # head rows are laid out (k_row, k_col, variable)
        mine, theirs = target[f"{target_head}.{part}"], source[f"{source_head or target_head}.{part}"]
        width = mine.shape[1] if mine.ndim == 2 else 1
        mine = mine.view(-1, len(target_vars), width)
        theirs = theirs.reshape(-1, len(source_vars), width)[:, old]
        mine[:, new] = resize_head_window(theirs, math.isqrt(mine.shape[0]))
    return shared


def resize_head_window(rows: torch.Tensor, window: int) -> torch.Tensor:
    """Head rows ``[k * k, V, D]`` of square windows resized to ``window``: the central
    crop of a wider window, or a narrower one with its edge rows and columns repeated
    outwards (a plain head's patch as the start of an overlapping head's window)."""
    k = math.isqrt(rows.shape[0])
    if k == window:
        return rows
    if (window - k) % 2:
        raise ValueError(f"head windows of {k} and {window} cells are not centred on each other")
    grid = rows.reshape(k, k, -1).permute(2, 0, 1)  # [V D, k, k]
    if window < k:
        m = (k - window) // 2
        grid = grid[:, m : k - m, m : k - m]
    else:
        m = (window - k) // 2
        grid = F.pad(grid[:, None], (m, m, m, m), mode="replicate")[:, 0]
    return grid.permute(1, 2, 0).reshape(window * window, *rows.shape[1:])


def _check_variables(model, weights: Weights, own: dict, new_variables: str) -> list[str]:
    kernel = "token_embeds.0.proj.weight"
    if (
        tuple(weights.state[kernel].shape[1:]) != tuple(own[kernel].shape[1:])
        or weights.state[kernel].shape[0] != own[kernel].shape[0]
    ):
        raise CheckpointMismatch(
            f"{weights.source}: patch kernels {tuple(weights.state[kernel].shape)} do not fit the "
            f"model's {tuple(own[kernel].shape)} (another patch size or width)"
        )
    shared = [v for v in model.variables if v in weights.variables]
    new = [v for v in model.variables if v not in weights.variables]
    if new and new_variables == "error":
        raise UnknownName(f"variables {new} are not in the checkpoint, which has {weights.variables}")
    if not shared:
        raise CheckpointMismatch(
            f"{weights.source}: no variable in common with the model ({model.variables}); it has {weights.variables}"
        )
    if new:
        logger.info("variables %s are not in %s: they keep their fresh initialisation", new, weights.source)
    return shared


def _noise_maps(state: dict, own: dict, source: str) -> dict:
    """``state`` without noise maps the model lacks (logged): a stochastic file into a
    deterministic model, which is that model at zero noise."""
    dropped = [k for k in state if k.startswith(NOISE_KEYS) and k not in own]
    if dropped:
        logger.info("%s: a stochastic model's noise maps are not loaded into a deterministic model", source)
    return {k: v for k, v in state.items() if k not in dropped}


def load_weights(
    model, weights: Weights, *, parts: Sequence[str] | None = None, head: bool = True, new_variables: str = "keep"
) -> list[str]:
    """Load ``weights`` into ``model`` by the rules of this module; returns the shared variables.

    Parameters
    ----------
    model : ClimaX
        Any ClimaX (or subclass), freshly initialised (``variables``, ``patch_size``, ``patch_grid``).
    weights : Weights
        From :func:`read_weights`.
    parts : sequence of str, optional
        Key prefixes of the non-per-variable weights to load (default: all).
    head : bool
        Move the per-variable rows of the last head layer (``False``: a model with its own head).
    new_variables : {"keep", "error"}
        What happens to the model's variables the checkpoint lacks.

    Raises
    ------
    KeyError
        ``new_variables="error"`` and the checkpoint lacks model variables.
    ValueError
        No variable in common, other patch kernels, or keys that do not fit (listed).
    """
    own = model.state_dict()
    _check_variables(model, weights, own, new_variables)
    heads = (_last_head(own), _last_head(weights.state)) if head else (None, None)
    shared = transfer_variable_weights(own, model.variables, weights.state, weights.variables, *heads)

    def wanted(key: str, head_layer: str | None) -> bool:
        skipped = per_variable_keys(head_layer) + DATA_KEYS
        return not key.startswith(skipped) and (parts is None or key.startswith(tuple(parts)))

    state = {k: v for k, v in weights.state.items() if wanted(k, heads[1])}
    state = _noise_maps(state, own, weights.source)
    if "pos_embed" in state and tuple(weights.patch_grid) != tuple(model.patch_grid):
        logger.info(
            "resampling pos_embed of %s from patch grid %s to %s",
            weights.source,
            tuple(weights.patch_grid),
            tuple(model.patch_grid),
        )
        state["pos_embed"] = resize_pos_embed(state["pos_embed"], tuple(weights.patch_grid), tuple(model.patch_grid))
    expected = {k for k in own if wanted(k, heads[0]) and (k in state or not k.startswith(NOISE_KEYS))}
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    misshaped = {
        k: (tuple(state[k].shape), tuple(own[k].shape))
        for k in sorted(expected & set(state))
        if state[k].shape != own[k].shape
    }
    if missing or unexpected or misshaped:
        raise CheckpointMismatch(
            f"{weights.source} does not fit {type(model).__name__}: missing keys {missing}, "
            f"unexpected keys {unexpected}, mis-shaped keys (checkpoint, model) {misshaped}"
        )
    own.update(state)
    model.load_state_dict(own)
    return shared
