# SPDX-License-Identifier: Apache-2.0
"""The two CorrDiff networks, built from config, and ClimaX as a regression stage.

The UNets and the EDM preconditioner are PhysicsNeMo's
(``CorrDiffRegressionUNet``, ``EDMPrecondSuperResolution`` around a
``SongUNetPosEmbd``); this module only does the channel arithmetic they
need, in one place:

* regression: ``img_in_channels = C_in + N_grid [+ N_lead]``
* diffusion: ``img_in_channels = C_in [+ C_out if hr_mean_conditioning]
  [+ C_in if patched] + N_grid [+ N_lead]``

where ``C_in`` counts the coarse inputs and the invariants, ``N_grid`` the
backbone's positional-grid channels and ``N_lead`` its lead-time embedding
channels (``SongUNetPosLtEmbd``, upstream's ``lt_aware_*`` models). A
Student-t diffusion stage (``model.distribution=student_t``) is upstream's
``tEDMPrecondSuperRes`` with ``nu = model.student_t_nu``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from omegaconf import DictConfig, OmegaConf
from physicsnemo.core import ModelMetaData, Module
from physicsnemo.diffusion.preconditioners import EDMPrecondSuperResolution
from physicsnemo.models.diffusion_unets import CorrDiffRegressionUNet, SongUNet

from ..engine.plan import RunPlan
from ..errors import ConfigError
from ..models import ClimaX
from .domain import Domain


@dataclass
class ClimaXRegressionMetaData(ModelMetaData):
    amp_cpu: bool = True
    amp_gpu: bool = True
    bf16: bool = True


class ClimaXRegression(Module):
    """ClimaX on the upsampled coarse input at lead time 0: the conditional mean.

    It has the call signature CorrDiff's losses and samplers expect of a
    regression net, so it replaces the UNet stage as is.

    Parameters
    ----------
    img_resolution : (int, int)
        Fine grid ``(H, W)``; ``patch_size`` must divide both.
    input_channels, output_channels : list of str
        Names of the input channels (coarse variables, then invariants) and outputs.
    climax_args : dict
        Further :class:`~physicsnemo_climax.models.ClimaX` arguments (``patch_size``, ``embed_dim``, ...).
    """

    def __init__(self, img_resolution, input_channels, output_channels, climax_args: dict | None = None):
        super().__init__(meta=ClimaXRegressionMetaData())
        self.input_channels, self.output_channels = list(input_channels), list(output_channels)
        self.img_shape_y, self.img_shape_x = (int(s) for s in img_resolution)
        self.img_out_channels = len(self.output_channels)
        variables = list(dict.fromkeys(self.input_channels + self.output_channels))
        self.climax = ClimaX(variables=variables, img_size=(self.img_shape_y, self.img_shape_x), **(climax_args or {}))

    @classmethod
    def saved_layout_problem(cls, args: dict, tensors: dict) -> str | None:
        """What a ``.mdlus``'s arguments ask for that its weights contradict, checked before building
        (:mod:`physicsnemo_climax.models.mdlus`): the inner ClimaX's, as :meth:`ClimaX.saved_layout_problem`."""
        inner = {key[len("climax.") :]: value for key, value in tensors.items() if key.startswith("climax.")}
        return ClimaX.saved_layout_problem(args.get("climax_args") or {}, inner)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each ClimaX block in the backward pass to save activation memory."""
        self.climax.set_grad_checkpointing(enable)

    def forward(self, x: torch.Tensor, img_lr: torch.Tensor, force_fp32: bool = False, **kwargs) -> torch.Tensor:
        """``x`` ``[B, C_out, H, W]`` (zeros, ignored), ``img_lr`` ``[B, C_in, H, W]`` -> ``[B, C_out, H, W]``."""
        lead = torch.zeros(img_lr.shape[0], device=img_lr.device)
        return self.climax(img_lr.float(), lead, self.input_channels, self.output_channels).float()


def _unet_args(cfg: DictConfig, plan: RunPlan) -> dict:
    """Backbone arguments: ``model_size`` under ``model.model_args``; ``amp_mode`` and
    apex GroupNorm as the run plan says."""
    args = OmegaConf.to_container(cfg.get("model_size") or {}, resolve=True)
    args.update(OmegaConf.to_container(cfg.model.get("model_args") or {}, resolve=True))
    args["amp_mode"] = plan.precision != "fp32"
    args["use_apex_gn"] = plan.apex_group_norm
    return args


def patch_shape(cfg: DictConfig, domain: Domain) -> tuple[int, int] | None:
    """The training patch ``(Hp, Wp)``, or ``None`` for the full domain."""
    py, px = cfg.model.get("patch_shape_y"), cfg.model.get("patch_shape_x")
    if py is None and px is None:
        return None
    shape = (int(py or domain.shape[0]), int(px or domain.shape[1]))
    if shape[0] > domain.shape[0] or shape[1] > domain.shape[1]:
        raise ConfigError(f"model.patch_shape_y/x={list(shape)} is larger than the domain {domain.shape}")
    return None if shape == tuple(domain.shape) else shape


def build_regression(cfg: DictConfig, domain: Domain, plan: RunPlan) -> Module:
    """The regression stage ``cfg.model.backbone``: ``unet`` (CorrDiff) or ``climax``
    (from ``model.init`` when given, by :meth:`ClimaX.from_pretrained`)."""
    c_in, c_out = len(domain.input_channels), len(domain.output_variables)
    if cfg.model.backbone == "climax":
        args = OmegaConf.to_container(cfg.model.climax, resolve=True)
        model = ClimaXRegression(domain.shape, domain.input_channels, domain.output_variables, args)
        if cfg.model.get("init"):
            model.climax = ClimaX.from_pretrained(
                str(cfg.model.init), **dict(args, variables=model.climax.variables, img_size=list(domain.shape))
            )
        return model
    if cfg.model.backbone != "unet":
        raise ConfigError(f"model.backbone={cfg.model.backbone!r}: choose unet or climax")
    args = _unet_args(cfg, plan)
    net = CorrDiffRegressionUNet(
        img_resolution=list(domain.shape),
        img_in_channels=c_in + _backbone_channels(args),
        img_out_channels=c_out,
        **args,
    )
    return init_lead_time_embedding(net, cfg.model.get("lead_time_init", "random"))


def _backbone_channels(args: dict) -> int:
    """The channels the UNet adds to its input: the positional grid and the lead-time embedding."""
    return args.get("N_grid_channels", 4) + (args.get("lead_time_channels") or 0)


def build_diffusion(cfg: DictConfig, domain: Domain, plan: RunPlan) -> Module:
    """The residual diffusion net: the EDM preconditioner around a ``SongUNetPosEmbd`` (or
    ``SongUNetPosLtEmbd``), Gaussian or Student-t as ``model.distribution`` says."""
    c_in, c_out = len(domain.input_channels), len(domain.output_variables)
    args = _unet_args(cfg, plan)
    channels = c_in + (c_out if cfg.model.hr_mean_conditioning else 0) + _backbone_channels(args)
    if patch_shape(cfg, domain) is not None:
        channels += c_in  # each patch also sees the whole input, resized to the patch
    nu = asked_student_t_nu(cfg)
    cls, extra = (EDMPrecondSuperResolution, {}) if nu is None else (student_t_class(), {"nu": nu})
    net = cls(
        img_resolution=list(domain.shape),
        img_in_channels=channels,
        img_out_channels=c_out,
        sigma_data=cfg.model.sigma_data,
        **extra,
        **args,
    )
    return init_lead_time_embedding(net, cfg.model.get("lead_time_init", "random"))


LEAD_TIME_INITS = ("random", "cosine")


def cosine_lead_codes(steps: int, channels: int) -> torch.Tensor:
    """Spatially uniform lead-time codes: channel ``c`` of lead ``l`` is
    ``cos(pi * c * (2 l + 1) / (2 * steps))``, the DCT-II basis over the leads, with
    channel 0 scaled by ``1 / sqrt(2)`` as in the orthonormal DCT.

    Codes of different leads are orthogonal when ``channels == steps``; neighbouring
    leads get similar codes. Returns shape ``(steps, channels)``.
    """
    lead = torch.arange(steps, dtype=torch.float64)[:, None]
    channel = torch.arange(channels, dtype=torch.float64)[None, :]
    codes = torch.cos(torch.pi * channel * (2 * lead + 1) / (2 * steps))
    codes[:, 0] /= 2**0.5  # the constant channel: without it the codes' Gram matrix is not diagonal
    return codes.float()


def init_lead_time_embedding(net: Module, how: str) -> Module:
    """Set the lead-time embedding of a new lead-time-aware net (no-op for other nets).

    ``random`` keeps upstream's initialisation: an independent normal value per lead,
    channel and grid point. A convolution shares its weights over the grid, so it
    cannot read the lead from such a per-point code until the embedding itself has
    been learned; on a few thousand samples it is not, and the net blends the leads.
    ``cosine`` starts every lead from a spatially uniform code (:func:`cosine_lead_codes`)
    the first layer can read at once; it stays a learned parameter of upstream's
    shape, so the files are unchanged.
    """
    if how not in LEAD_TIME_INITS:
        raise ConfigError(f"model.lead_time_init={how!r}: choose one of {list(LEAD_TIME_INITS)}")
    if how == "random":
        return net  # upstream's start, as the net was built
    for module in net.modules():
        embedding = getattr(module, "lt_embd", None)
        if isinstance(embedding, torch.nn.Parameter):
            steps, channels = embedding.shape[:2]
            with torch.no_grad():
                embedding.copy_(cosine_lead_codes(steps, channels)[:, :, None, None].expand_as(embedding))
    return net


def asked_student_t_nu(cfg: DictConfig) -> int | None:
    """``model.student_t_nu`` of a Student-t diffusion stage, ``None`` for a Gaussian one.

    Raises
    ------
    ConfigError
        ``model.distribution`` other than normal / student_t, or a ``nu`` that is not an integer above 2.
    """
    kind, nu = cfg.model.get("distribution") or "normal", cfg.model.get("student_t_nu")
    if kind == "normal":
        if nu is not None:
            raise ConfigError(f"model.student_t_nu={nu}: set model.distribution=student_t to train with it")
        return None
    if kind != "student_t":
        raise ConfigError(f"model.distribution={kind!r}: choose normal or student_t")
    if isinstance(nu, bool) or not isinstance(nu, int) or nu <= 2:
        raise ConfigError(f"model.student_t_nu={nu!r}: Student-t training needs an integer above 2 (upstream: 10)")
    return nu


def student_t_class() -> type:
    """Upstream's t-EDM preconditioner class, from PhysicsNeMo's experimental package (which warns
    on import)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from physicsnemo.experimental.models.diffusion import tEDMPrecondSuperRes
    return tEDMPrecondSuperRes


def grad_checkpointing(net: Module) -> Callable[[], None] | None:
    """The switch that makes ``net`` recompute every block's activations in the backward pass
    (``train.grad_checkpointing``), or ``None`` for a net that cannot.

    ClimaX does it by :meth:`ClimaXRegression.set_grad_checkpointing`. PhysicsNeMo's
    ``SongUNet`` family checkpoints the UNet blocks whose feature maps are larger
    than its ``checkpoint_threshold`` (set from its ``checkpoint_level``): a
    threshold of 0 takes every block. Set on the built net, not as a
    constructor argument, so saved ``.mdlus`` files and relaunches stay as they
    were (``train.grad_checkpointing`` is a training setting). ``DhariwalUNet``
    has no checkpointing.
    """
    if isinstance(net, ClimaXRegression):
        return net.set_grad_checkpointing
    unets = [m for m in net.modules() if isinstance(m, SongUNet)]
    if not unets:
        return None

    def every_block() -> None:
        for unet in unets:
            unet.checkpoint_threshold = 0

    return every_block


def set_amp_mode(net: Module, precision: str) -> Module:
    """Tell a PhysicsNeMo UNet (which checks it under autocast) whether mixed precision runs."""
    if hasattr(net, "amp_mode"):
        net.amp_mode = precision != "fp32"
    return net
