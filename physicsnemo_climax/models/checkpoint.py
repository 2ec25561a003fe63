# SPDX-License-Identifier: Apache-2.0
"""Import of the official ClimaX checkpoints (PyTorch Lightning ``.ckpt``).

Supported layouts
-----------------
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

import pickle
import re
from collections.abc import Sequence
from pathlib import Path

import torch

from .climax import ClimaX
from .embeddings import infer_patch_grid, resize_pos_embed
from .variables import DEFAULT_VARIABLES

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
        raise ValueError(
            f"{path}: not loadable with torch.load(weights_only=True); it holds "
            f"objects other than tensors and plain containers ({err})"
        ) from err
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: expected a checkpoint dictionary, got {type(ckpt).__name__}")
    if "state_dict" in ckpt:
        raw = ckpt["state_dict"]
        outside = sorted(k for k in raw if not k.startswith("net."))
        if outside:
            raise ValueError(f"{path}: keys outside the network 'net.': {outside}")
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
            raise ValueError(f"{path}: token_embeds.proj_weights without token_embeds.proj_biases")
        for i in range(weights.shape[0]):
            state[f"token_embeds.{i}.proj.weight"] = weights[i]
            state[f"token_embeds.{i}.proj.bias"] = biases[i]
    return state


def infer_architecture(state: dict[str, torch.Tensor]) -> dict:
    """ClimaX constructor arguments implied by the weights' shapes."""
    required = ["token_embeds.0.proj.weight", "pos_embed", "var_embed", "blocks.0.mlp.fc1.weight"]
    absent = [k for k in required if k not in state]
    if absent:
        raise ValueError(f"checkpoint does not match a supported ClimaX layout: missing {absent}")

    def indices(pattern: str) -> list[int]:
        return sorted({int(m.group(1)) for k in state if (m := re.fullmatch(pattern, k))})

    embed_dim, _, patch_size, _ = state["token_embeds.0.proj.weight"].shape
    num_vars = len(indices(r"token_embeds\.(\d+)\.proj\.weight"))
    head_ids = indices(r"head\.(\d+)\.weight")
    if not head_ids:
        raise ValueError("checkpoint does not match a supported ClimaX layout: no head.*.weight")
    last_head = f"head.{head_ids[-1]}.weight"
    shapes = {"var_embed": (1, num_vars, embed_dim), last_head: (num_vars * patch_size**2, embed_dim)}
    mismatched = {k: tuple(state[k].shape) for k, shape in shapes.items() if tuple(state[k].shape) != shape}
    if mismatched:
        raise ValueError(
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


def per_variable_keys(head: str) -> tuple[str, ...]:
    """Key prefixes of the weights that exist once per variable (``head``: the
    last head layer, e.g. ``"head.4"``)."""
    return ("token_embeds.", "var_embed", f"{head}.")


def read_pretrained(path: str | Path, num_heads: int = 16) -> ClimaX:
    """A trained ClimaX from a PhysicsNeMo ``.mdlus`` or an official ``.ckpt``
    (whose weights do not record ``num_heads``)."""
    if str(path).endswith(".mdlus"):
        from physicsnemo.core import Module

        return Module.from_checkpoint(str(path))
    return ClimaX.from_official_checkpoint(path, num_heads=num_heads)


def transfer_variable_weights(
    target: dict[str, torch.Tensor], target_vars: Sequence[str],
    source: dict[str, torch.Tensor], source_vars: Sequence[str], patch_size: int, head: str | None,
) -> list[str]:
    """Copy, in place, the per-variable weights (patch kernel, variable
    embedding, and head rows unless ``head`` is ``None``) of every variable
    both state dicts know.

    Returns
    -------
    list of str
        The shared variables, in ``target_vars`` order.
    """
    shared = [v for v in target_vars if v in source_vars]
    new = [list(target_vars).index(v) for v in shared]
    old = [list(source_vars).index(v) for v in shared]
    for i, j in zip(new, old):
        for part in ("weight", "bias"):
            target[f"token_embeds.{i}.proj.{part}"] = source[f"token_embeds.{j}.proj.{part}"]
    target["var_embed"][:, new] = source["var_embed"][:, old]
    if head is None:
        return shared
    p2 = patch_size**2
    for part in ("weight", "bias"):  # head rows are laid out (p_row, p_col, variable)
        mine = target[f"{head}.{part}"].reshape(p2, len(target_vars), -1)
        theirs = source[f"{head}.{part}"].reshape(p2, len(source_vars), -1)
        mine[:, new] = theirs[:, old]
    return shared


def load_official_checkpoint(
    path: str | Path,
    checkpoint_variables: Sequence[str] = DEFAULT_VARIABLES,
    **overrides,
) -> ClimaX:
    """Build a :class:`ClimaX` holding an official checkpoint's weights.

    Parameters
    ----------
    path : str or Path
        Lightning ``.ckpt`` (e.g. the released ``5.625deg.ckpt``).
    checkpoint_variables : sequence of str
        Names of the checkpoint's token embeddings, by position (default the
        48 official variables).
    **overrides
        ClimaX constructor arguments replacing the inferred ones, e.g.
        ``img_size`` (``pos_embed`` is resampled bicubically), ``variables`` (a
        subset or reordering of ``checkpoint_variables``), ``num_heads``,
        ``drop_path``.

    Raises
    ------
    ValueError
        Listing missing, unexpected and mis-shaped keys; loading is strict.
    """
    state = read_official_state_dict(path)
    args = infer_architecture(state)
    available = list(checkpoint_variables)
    if state["var_embed"].shape[1] != len(available):
        raise ValueError(
            f"{path}: {state['var_embed'].shape[1]} token embeddings "
            f"but {len(available)} checkpoint_variables"
        )
    args.update(num_heads=16, variables=available)
    old_grid = (args["img_size"][0] // args["patch_size"], args["img_size"][1] // args["patch_size"])
    args.update(overrides)
    model = ClimaX(**args)

    if list(model.variables) != available:
        missing = [v for v in model.variables if v not in available]
        if missing:
            raise KeyError(f"variables {missing} are not in the checkpoint, which has {available}")
        head = f"head.{len(model.head) - 1}"
        target = model.state_dict()
        transfer_variable_weights(target, model.variables, state, available, model.patch_size, head)
        own = per_variable_keys(head)
        state = {**{k: v for k, v in state.items() if not k.startswith(own)},
                 **{k: v for k, v in target.items() if k.startswith(own)}}
    if tuple(model.patch_grid) != old_grid:
        state["pos_embed"] = resize_pos_embed(state["pos_embed"], old_grid, model.patch_grid)

    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = {
        k: (tuple(state[k].shape), tuple(v.shape))
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    }
    if missing or unexpected or misshaped:
        raise ValueError(
            f"{path}: checkpoint does not fit ClimaX({', '.join(f'{k}={v}' for k, v in overrides.items())}): "
            f"missing keys {missing}, unexpected keys {unexpected}, "
            f"mis-shaped keys (checkpoint, model) {misshaped}"
        )
    model.load_state_dict(state, strict=True)
    return model
