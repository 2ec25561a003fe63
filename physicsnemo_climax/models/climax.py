# SPDX-License-Identifier: Apache-2.0
"""ClimaX (Nguyen et al., 2023, arXiv 2301.10343) as a PhysicsNeMo module.

Reading order follows the paper's figure: variable tokenization
(:mod:`.tokenizer`), variable aggregation (:mod:`.aggregation`), positional and
lead-time embeddings, the ViT backbone, and the prediction head (:mod:`.head`).
Parameter names and shapes match the reference implementation so that its
checkpoints load (:mod:`.pretrained`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from physicsnemo.core import ModelMetaData, Module
from timm.models.vision_transformer import Block
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import ConfigError, InputError, UnknownName
from ..grid import regular_grid
from .aggregation import VariableAggregation
from .embeddings import sincos_1d, sincos_2d
from .head import PredictionHead
from .pretrained import infer_architecture, load_weights, read_weights
from .region import REGIONS, GridRegion, PatchSelection, Region, select_patches
from .tokenizer import VariableTokenizer
from .variables import DEFAULT_VARIABLES

#: Length of a residual model's lag-correlation table (lag 0 first).
ANOMALY_LAGS = 64

RegionLike = None | str | Region | Sequence[float] | Mapping | torch.Tensor | PatchSelection | GridRegion


@dataclass
class MetaData(ModelMetaData):
    """Capabilities checked by this package's tests (CPU). GPU autocast awaits
    a GPU check, so ``amp_gpu`` stays off until one is recorded."""

    jit: bool = False
    cuda_graphs: bool = False
    amp_cpu: bool = True
    amp_gpu: bool = False
    bf16: bool = True
    onnx: bool = False
    func_torch: bool = False
    auto_grad: bool = False


class ClimaX(Module):
    """ClimaX foundation model for weather and climate.

    Parameters
    ----------
    variables : sequence of str
        Ordered names of every variable the model knows; any subset, in any
        order, can be input or output. Default: the 48 variables of the
        official checkpoints.
    img_size : tuple of int
        Grid ``(H, W)``, each divisible by ``patch_size``.
    patch_size : int
        Patch edge ``p``.
    embed_dim : int
        Token width ``D``.
    depth : int
        Transformer blocks.
    decoder_depth : int
        Hidden layers of the prediction head.
    num_heads : int
        Attention heads (backbone and variable aggregation).
    mlp_ratio : float
        MLP hidden width over ``D``.
    drop_path : float
        Stochastic depth of the last block; it grows linearly from 0.
    drop_rate : float
        Dropout after embeddings and in the MLPs / projections.
    fused_aggregation : bool
        Use the fused single-query variable aggregation (same result, about
        half the FLOPs); ``False`` runs the reference's plain attention.
    lat, lon : sequence of float, optional
        Grid-cell latitudes ``[H]`` (either order) and longitudes ``[W]`` for
        regional selection; default a regular global grid, latitudes south to
        north, longitudes from 0 (WeatherBench / ClimaX convention).
    residual : bool
        Forecast outputs that are also inputs around the damped persistence of
        their anomaly (:meth:`add_residual`); not the paper's model.
    overlapping_head : bool
        Each token predicts a ``2p x 2p`` window centred on its patch and
        neighbouring windows are blended with tent weights, so forecasts are
        continuous across patch edges (:func:`.head.overlap_add`); ``False`` is
        the paper's head, which fills each patch from its own token only.
    noise_dim : int
        ``0`` (the default, the paper's model): deterministic. ``n > 0``: a stochastic ClimaX;
        each forward pass takes a noise field of ``n`` standard normal values per patch
        (``noise``, drawn when not given), and every block adds its own linear map of it
        to the tokens before it (:meth:`encode`). The maps start at zero, so weights of a
        deterministic model load with no effect of the noise until it is trained (CRPS
        fine-tuning: docs/model.md); members of an ensemble are forward passes with
        different noise.

    Forward
    -------
    x : torch.Tensor
        Normalized fields ``[B, len(variables), H, W]``.
    lead_times : torch.Tensor
        Lead time in hours, ``[B]``.
    variables : sequence of str
        Names of the channels of ``x``.
    out_variables : sequence of str, optional
        Variables to predict (default: ``variables``).
    region : GridRegion, str, Region, (lat_min, lat_max, lon_min, lon_max), Tensor, optional
        Restrict tokens to a region: one resolved by :meth:`resolve_region`,
        a name in :data:`REGIONS`, a box, or an integer tensor (or
        ``{"patch_ids": [...]}``) of flat patch ids forming a rectangle.
    noise : torch.Tensor, optional
        ``[B, h w, noise_dim]`` standard normal values on the whole patch grid (a region takes
        its patches' rows), for a stochastic model only; ``None`` draws them from torch's
        generator (:meth:`draw_noise`).

    Returns
    -------
    torch.Tensor
        ``[B, len(out_variables), H', W']``; the whole grid, or the region.

    Examples
    --------
    >>> model = ClimaX(variables=["t2m", "z500"], embed_dim=64, depth=2, num_heads=4)
    >>> x = torch.randn(3, 2, 32, 64)
    >>> model(x, torch.full((3,), 72.0), ["z500", "t2m"], ["t2m"]).shape
    torch.Size([3, 1, 32, 64])
    """

    def __init__(
        self,
        variables: Sequence[str] = DEFAULT_VARIABLES,
        img_size: Sequence[int] = (32, 64),
        patch_size: int = 2,
        embed_dim: int = 1024,
        depth: int = 8,
        decoder_depth: int = 2,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.1,
        drop_rate: float = 0.1,
        fused_aggregation: bool = True,
        lat: Sequence[float] | None = None,
        lon: Sequence[float] | None = None,
        residual: bool = False,
        overlapping_head: bool = False,
        noise_dim: int = 0,
    ):
        super().__init__(meta=MetaData())
        self.variables = list(variables)
        self.img_size = tuple(int(s) for s in img_size)
        self.patch_size = patch_size
        _check_arguments(self.variables, self.img_size, patch_size, embed_dim, num_heads)
        self.patch_grid = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        self._var_index = {name: i for i, name in enumerate(self.variables)}
        self.lat, self.lon = _grid_coordinates(self.img_size, lat, lon)
        self.periodic = _spans_longitudes(self.lon)  # a global grid: overlapping windows wrap east-west
        num_vars, num_patches = len(self.variables), self.patch_grid[0] * self.patch_grid[1]

        # Variable tokenization and aggregation.
        self.token_embeds = VariableTokenizer(num_vars, patch_size, embed_dim)
        self.var_embed = nn.Parameter(torch.zeros(1, num_vars, embed_dim))
        self.var_query = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.var_agg = VariableAggregation(embed_dim, num_heads, fused=fused_aggregation)

        # Position and lead-time embeddings.
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, embed_dim))
        self.lead_time_embed = nn.Linear(1, embed_dim)
        self.pos_drop = nn.Dropout(drop_rate)

        # Backbone: timm ViT blocks.
        self.blocks = _vit_blocks(embed_dim, num_heads, mlp_ratio, depth, drop_path, drop_rate)
        self.norm = nn.LayerNorm(embed_dim)

        # Prediction head: each token's patch (the paper), or overlapping windows twice as wide.
        self.head = PredictionHead(embed_dim, num_vars, patch_size, decoder_depth, overlapping=overlapping_head)

        # Residual prediction: damped persistence of the anomaly plus the head times that forecast's
        # error (statistics set by the training; until then the head alone beyond a table step).
        self.residual = bool(residual)
        if self.residual:
            self._register_anomaly_buffers(num_vars)

        # Stochastic ClimaX: a linear map of the noise per block, added to its input tokens.
        self._add_noise_maps(noise_dim, embed_dim, depth)

        self.grad_checkpointing = False
        self._init_weights()

    # ------------------------------------------------------------------ init
    def _init_weights(self) -> None:
        """Initialisation of the reference: sin-cos position and variable
        embeddings, truncated-normal linear and patch kernels."""
        dim = self.pos_embed.shape[-1]
        with torch.no_grad():
            self.pos_embed.copy_(sincos_2d(dim, *self.patch_grid)[None])
            self.var_embed.copy_(sincos_1d(dim, torch.arange(len(self.variables)))[None])
            for embed in self.token_embeds:
                nn.init.trunc_normal_(embed.proj.weight, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if self.noise_dim:  # no effect of the noise until trained: a deterministic start
            for proj in self.noise_proj:
                nn.init.zeros_(proj.weight)

    # ------------------------------------------------------------ utilities
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block in the backward pass to save activation memory."""
        self.grad_checkpointing = enable

    def variable_ids(self, names: Sequence[str]) -> list[int]:
        """Indices of ``names`` among the known variables.

        Raises
        ------
        KeyError
            Naming the unknown variable and listing the known ones.
        """
        if isinstance(names, str):
            raise TypeError(f"variables must be a sequence of names, got the string {names!r}")
        unknown = [n for n in names if n not in self._var_index]
        if unknown:
            raise UnknownName(f"unknown variable(s) {unknown}; this model knows {self.variables}")
        return [self._var_index[n] for n in names]

    def select_region(self, region: RegionLike) -> PatchSelection | None:
        """Patch selection for ``region`` (see the class docstring); ``None`` is global."""
        if region is None or isinstance(region, PatchSelection):
            return region
        if isinstance(region, GridRegion):
            return region.patches
        if isinstance(region, torch.Tensor):
            return PatchSelection.from_patch_ids(region, self.patch_grid)
        if isinstance(region, Mapping):
            return PatchSelection.from_patch_ids(torch.as_tensor(list(region["patch_ids"])), self.patch_grid)
        if isinstance(region, str):
            if region not in REGIONS:
                raise UnknownName(f"unknown region {region!r}; known regions {sorted(REGIONS)}")
            region = REGIONS[region]
        if not isinstance(region, Region):
            if len(region) != 4:
                raise ConfigError(f"region box must be (lat_min, lat_max, lon_min, lon_max), got {region}")
            region = Region(*map(float, region))
        return select_patches(region, self.lat, self.lon, self.patch_size)

    def resolve_region(self, region: RegionLike) -> GridRegion:
        """``region`` resolved once on this model's grid (``None``: the whole grid).

        Raises
        ------
        KeyError, ValueError
            For an unknown name, a malformed box, a box holding no patch
            centre, or patch ids that are not a rectangle.
        """
        if isinstance(region, GridRegion):
            return region
        return GridRegion.on_grid(region, self.select_region(region), self.lat, self.lon, self.patch_size)

    def _check_input(self, x: torch.Tensor, lead_times: torch.Tensor, variables) -> None:
        if x.ndim != 4 or x.shape[1] != len(variables):
            raise InputError(
                f"x must be [B, {len(variables)}, H, W] for {len(variables)} variables, got {tuple(x.shape)}"
            )
        if tuple(x.shape[-2:]) != self.img_size:
            raise InputError(f"expected a grid (H, W) = {self.img_size}, got {tuple(x.shape[-2:])}")
        if lead_times.shape != (x.shape[0],):
            raise InputError(f"lead_times must have shape [B] = [{x.shape[0]}], got {tuple(lead_times.shape)}")
        if len(set(variables)) != len(variables):
            raise InputError(f"input variables contain duplicates: {list(variables)}")

    # ---------------------------------------------------------------- noise
    def _add_noise_maps(self, noise_dim: int, embed_dim: int, depth: int) -> None:
        """``noise_dim`` and, for a stochastic model, ``noise_proj``: per block a linear map of the
        noise without bias (at zero noise the model is the deterministic one with its weights)."""
        self.noise_dim = _check_noise_dim(noise_dim)
        if self.noise_dim:
            self.noise_proj = nn.ModuleList(nn.Linear(self.noise_dim, embed_dim, bias=False) for _ in range(depth))

    @property
    def stochastic(self) -> bool:
        """Whether members differ through the noise each forward pass takes (``noise_dim > 0``)."""
        return self.noise_dim > 0

    def noise_shape(self, batch: int) -> tuple[int, int, int]:
        """``(batch, h w, noise_dim)``: the noise of a forward pass of ``batch`` states."""
        return (batch, self.patch_grid[0] * self.patch_grid[1], self.noise_dim)

    def draw_noise(
        self, batch: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """Standard normal noise ``[batch, h w, noise_dim]`` of a stochastic model, from
        ``generator`` (on its device; default torch's generator on ``device``), float32, on ``device``."""
        if not self.stochastic:
            raise InputError("this ClimaX is deterministic (noise_dim=0): it takes no noise")
        if generator is not None:
            noise = torch.randn(self.noise_shape(batch), generator=generator, device=generator.device)
            return noise.to(device or generator.device)
        return torch.randn(self.noise_shape(batch), device=device)

    def _noise_for(self, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor | None:
        """The noise of a forward pass: ``noise`` checked, or drawn for a stochastic model."""
        if not self.stochastic:
            if noise is not None:
                raise InputError("this ClimaX is deterministic (noise_dim=0): it takes no noise")
            return None
        if noise is None:
            return self.draw_noise(x.shape[0], device=x.device)
        shape = self.noise_shape(x.shape[0])
        if tuple(noise.shape) != shape:
            raise InputError(f"noise must be [B, patches, noise_dim] = {list(shape)}, got {list(noise.shape)}")
        return noise.to(x.device)

    # -------------------------------------------------------------- forward
    def encode(
        self,
        x: torch.Tensor,
        lead_times: torch.Tensor,
        var_ids: list[int],
        pos_embed: torch.Tensor,
        extra_embed: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Tokens of the backbone's last layer.

        Parameters
        ----------
        x : torch.Tensor
            ``[B, V, h p, w p]`` normalized fields (global or regional crop).
        lead_times : torch.Tensor
            ``[B]`` hours.
        var_ids : list of int
            Known-variable index of each channel.
        pos_embed : torch.Tensor
            ``[1, h w, D]`` positional embedding of the patches in ``x``.
        extra_embed : torch.Tensor, optional
            ``[B, 1, D]`` added to every token with the positions (e.g. a time embedding).
        noise : torch.Tensor, optional
            ``[B, h w, noise_dim]`` of a stochastic model (the patches of ``x``): block ``i``
            adds ``noise_proj[i](noise)`` to its input tokens.

        Returns
        -------
        torch.Tensor
            ``[B, h w, D]``.
        """
        tokens = self.token_embeds(x, var_ids, self.var_embed[0, var_ids])
        x = self.var_agg(tokens, self.var_query)
        # The reference feeds lead times in units of 100 hours.
        lead = (lead_times.to(x.dtype) / 100.0).unsqueeze(-1)
        x = x + pos_embed + self.lead_time_embed(lead).unsqueeze(1)
        if extra_embed is not None:
            x = x + extra_embed
        x = self.pos_drop(x)
        for i, block in enumerate(self.blocks):
            if noise is not None:
                x = x + self.noise_proj[i](noise.to(x.dtype))
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return self.norm(x)

    def forward(
        self,
        x: torch.Tensor,
        lead_times: torch.Tensor,
        variables: Sequence[str],
        out_variables: Sequence[str] | None = None,
        region: RegionLike = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        var_ids = self.variable_ids(variables)
        out_ids = self.variable_ids(variables if out_variables is None else out_variables)
        self._check_input(x, lead_times, variables)
        noise = self._noise_for(x, noise)

        pos_embed, grid = self.pos_embed, self.patch_grid
        if region is not None:
            region = self.resolve_region(region)
        if region is not None and not region.is_global:
            x = region.crop(x)
            pos_embed = pos_embed[:, region.patch_ids.to(x.device)]
            grid = region.patches.grid
            noise = None if noise is None else noise[:, region.patch_ids.to(x.device)]

        tokens = self.encode(x, lead_times, var_ids, pos_embed, noise=noise)
        out = self.head.to_grid(
            self.head(tokens, out_ids), grid, periodic=self.periodic and grid[1] == self.patch_grid[1]
        )
        if not self.residual:
            return out
        return self.add_residual(
            out, x, lead_times, variables, variables if out_variables is None else out_variables, region
        )

    def add_residual(
        self,
        out: torch.Tensor,
        x: torch.Tensor,
        lead_times: torch.Tensor,
        variables: Sequence[str],
        out_variables: Sequence[str],
        region=None,
    ) -> torch.Tensor:
        """Residual prediction: each output ``v`` that is also an input becomes, in normalised units,
        ``c + rho(L) (x - c) + sigma sqrt(1 - rho(L)^2) head``: the damped persistence of its anomaly
        from the climatology ``c`` at lead ``L`` plus the head's output in units of that forecast's
        error (:mod:`..data.anomalies`), with ``rho`` and ``sigma`` of each latitude row. ``rho`` is
        interpolated in the table of lags."""
        inputs = list(variables)
        pairs = [(j, inputs.index(v), self._var_index[v]) for j, v in enumerate(out_variables) if v in inputs]
        if not pairs:
            return out
        j, i, k = (torch.tensor(p, device=out.device) for p in zip(*pairs))
        position = (lead_times.to(out.dtype) / self.anomaly_hours.to(out.dtype)).clamp(0, ANOMALY_LAGS - 1)
        low = position.floor().long().clamp(max=ANOMALY_LAGS - 2)
        frac = (position - low.to(out.dtype))[:, None, None]
        table = self.anomaly_corr[k].to(out.dtype)  # [P, H, lags]
        rho = table[..., low].permute(2, 0, 1) * (1 - frac) + table[..., low + 1].permute(2, 0, 1) * frac  # [B, P, H]
        scale = self.anomaly_std[k].to(out.dtype) * (1 - rho**2).clamp_min(1e-4).sqrt()
        clim = self.climatology[k].to(out.dtype)
        if region is not None and not region.is_global:
            clim = region.crop(clim)
            rows = region.rows.to(out.device)
            rho, scale = rho[..., rows], scale[..., rows]
        out = out.clone()
        out[:, j] = clim + rho[..., None] * (x[:, i].to(out.dtype) - clim) + out[:, j] * scale[..., None]
        return out

    def _register_anomaly_buffers(self, num_vars: int) -> None:
        rows = self.img_size[0]
        self.register_buffer("climatology", torch.zeros(num_vars, *self.img_size))
        self.register_buffer("anomaly_std", torch.ones(num_vars, rows))
        corr = torch.zeros(num_vars, rows, ANOMALY_LAGS)
        corr[..., 0] = 1.0
        self.register_buffer("anomaly_corr", corr)
        self.register_buffer("anomaly_hours", torch.tensor(6.0))

    def set_anomalies(self, climatology, std, corr, hours: float) -> None:
        """Set the residual forecast's statistics (normalised units): ``climatology`` ``[V, H, W]``,
        anomaly ``std`` ``[V, H]`` and lag correlations ``corr`` ``[V, H, lags]`` on each latitude
        row, every ``hours``."""
        with torch.no_grad():
            self.climatology.copy_(torch.as_tensor(climatology, dtype=self.climatology.dtype))
            self.anomaly_std.copy_(torch.as_tensor(std, dtype=self.anomaly_std.dtype))
            self.anomaly_corr.copy_(torch.as_tensor(corr, dtype=self.anomaly_corr.dtype))
            self.anomaly_hours.fill_(float(hours))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Residual statistics saved with one value per variable (``anomaly_std`` ``[V]``,
        ``anomaly_corr`` ``[V, lags]``, before they were per latitude row) load on every row."""
        rows = self.img_size[0]
        for name, old_ndim in (("anomaly_std", 1), ("anomaly_corr", 2)):
            value = state_dict.get(prefix + name)
            if self.residual and value is not None and value.ndim == old_ndim:
                state_dict[prefix + name] = value.unsqueeze(1).expand(-1, rows, *value.shape[1:]).clone()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ----------------------------------------------------------- loading
    #: Key prefixes :meth:`from_pretrained` loads besides the per-variable weights (``None``: all).
    pretrained_parts: tuple[str, ...] | None = None
    #: Whether :meth:`from_pretrained` moves the per-variable rows of the last head layer.
    pretrained_head: bool = True

    @classmethod
    def from_pretrained(cls, path, **kwargs) -> ClimaX:
        """A model built with ``kwargs`` holding the weights of a ClimaX ``.mdlus`` or
        official ``.ckpt`` by the rules of :func:`~.pretrained.load_weights`: variables
        by name (those the file lacks keep their fresh initialisation), ``pos_embed``
        resampled to another grid, every other weight of :attr:`pretrained_parts` fitting."""
        model = cls(**kwargs)
        load_weights(model, read_weights(path), parts=cls.pretrained_parts, head=cls.pretrained_head)
        return model

    @classmethod
    def saved_layout_problem(cls, args: Mapping, tensors: Mapping[str, tuple]) -> str | None:
        """What a ``.mdlus``'s arguments ask for that its weights contradict, among the arguments the
        constructor uses before any weight exists (:mod:`.mdlus` asks before building): ``depth``,
        against the file's blocks. ``None`` when they agree."""
        blocks = sum(1 for key in tensors if re.fullmatch(r"blocks\.\d+\.norm1\.weight", key))
        depth = args.get("depth", 8)
        return None if depth == blocks else f"depth={depth}, but the file holds {blocks} blocks"

    @classmethod
    def from_official_checkpoint(
        cls, path, checkpoint_variables: Sequence[str] = DEFAULT_VARIABLES, **overrides
    ) -> ClimaX:
        """A model holding an official ClimaX Lightning checkpoint's weights, strictly.

        Parameters
        ----------
        path : str or Path
            Lightning ``.ckpt`` (e.g. the released ``5.625deg.ckpt``).
        checkpoint_variables : sequence of str
            Names of the checkpoint's token embeddings, by position (default the
            48 official variables).
        **overrides
            Constructor arguments replacing those read from the weights, e.g.
            ``img_size`` (``pos_embed`` is resampled), ``variables`` (a subset or
            reordering of ``checkpoint_variables``), ``num_heads`` (not stored; 16).

        Raises
        ------
        KeyError
            Naming variables the checkpoint lacks.
        ValueError
            Listing missing, unexpected and mis-shaped keys.
        """
        weights = read_weights(path, checkpoint_variables)
        args = dict(infer_architecture(weights.state), num_heads=16, variables=weights.variables)
        model = cls(**{**args, **overrides})
        load_weights(model, weights, new_variables="error")
        return model


def _vit_blocks(
    embed_dim: int, num_heads: int, mlp_ratio: float, depth: int, drop_path: float, drop_rate: float
) -> nn.ModuleList:
    """``depth`` timm ViT blocks, stochastic depth growing linearly from 0 to ``drop_path``
    (the rates computed on the CPU, so that a model built on the meta device gets them too)."""
    rates = torch.linspace(0, drop_path, depth, device="cpu").tolist()
    return nn.ModuleList(
        Block(
            embed_dim, num_heads, mlp_ratio, qkv_bias=True, proj_drop=drop_rate, drop_path=rate, norm_layer=nn.LayerNorm
        )
        for rate in rates
    )


def _check_arguments(
    variables: list[str], img_size: tuple[int, int], patch_size: int, embed_dim: int, num_heads: int
) -> None:
    if len(set(variables)) != len(variables):
        raise ConfigError(f"variables contain duplicates: {variables}")
    if len(img_size) != 2 or min(img_size) < 1 or patch_size < 1:
        raise ConfigError(
            f"img_size {img_size} and patch_size {patch_size}: a grid of H x W cells (both at least "
            "1) and a patch of at least 1 cell"
        )
    if any(s % patch_size for s in img_size):
        raise ConfigError(f"img_size {img_size} is not divisible by patch_size {patch_size}")
    if embed_dim % num_heads:
        raise ConfigError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")


def _check_noise_dim(noise_dim) -> int:
    if isinstance(noise_dim, bool) or not isinstance(noise_dim, int) or noise_dim < 0:
        raise ConfigError(f"model.noise_dim={noise_dim!r}: a whole number >= 0 (0: the deterministic ClimaX)")
    return noise_dim


def _grid_coordinates(img_size: tuple[int, int], lat, lon) -> tuple[torch.Tensor, torch.Tensor]:
    """Grid-cell latitudes ``[H]`` and longitudes ``[W]`` (float64), by default the regular global grid."""
    default_lat, default_lon = (torch.from_numpy(a) for a in regular_grid(img_size))
    # on the CPU like the default grid, also where the model is built on the meta device (.mdlus checks)
    lat = default_lat if lat is None else torch.as_tensor(lat, dtype=torch.float64, device="cpu")
    lon = default_lon if lon is None else torch.as_tensor(lon, dtype=torch.float64, device="cpu")
    if lat.shape != (img_size[0],) or lon.shape != (img_size[1],):
        raise ConfigError(
            f"lat/lon must have {img_size[0]}/{img_size[1]} values, got {tuple(lat.shape)}/{tuple(lon.shape)}"
        )
    return lat, lon


def _spans_longitudes(lon: torch.Tensor) -> bool:
    """Whether evenly spaced longitudes ``[W]``, either order, close the circle (a global grid)."""
    if lon.numel() < 2:
        return False
    step = float((lon[1] - lon[0]) % 360.0)
    step = min(step, 360.0 - step)
    return abs(step * lon.numel() - 360.0) < 1e-6 * 360.0
