# SPDX-License-Identifier: Apache-2.0
"""CorrDiff's diffusion sampling on PhysicsNeMo's current diffusion API.

A CorrDiff diffusion file holds an ``EDMPrecondSuperResolution`` (or the
Student-t ``tEDMPrecondSuperRes``): the EDM preconditioner and its UNet in one
class, which PhysicsNeMo 2.x marks legacy but which is also the file format
upstream's recipe writes and reads, so files keep it (:mod:`.net_files`).
Sampling does not call that class. It uses the current pieces:

* :func:`preconditioner`: the file's UNet seen through ``EDMPreconditioner``
  over a ``ConcatConditionWrapper`` (``c_in x`` with the condition
  concatenated, then ``c_skip x + c_out F``: the file class's arithmetic);
* :class:`EDMSampler`: ``EDMNoiseScheduler``'s time steps, its
  ``get_denoiser`` for the ODE's right-hand side, and ``sample`` with the
  Heun or Euler solver;
* ``GridPatching2D`` for patched nets. Not ``MultiDiffusionModel2D``: that
  wrapper hands the net its positional embedding in the condition, while
  CorrDiff's ``SongUNetPosEmbd`` files select their own through
  ``embedding_selector``.

The two ``generation.sampler.type`` values keep upstream's meanings and
numbers: ``stochastic`` is EDM's Heun sampler from ``sigma_max`` 800 in float32
(without churn: members differ by their initial latents), ``deterministic``
the Euler or Heun ODE solver from ``sigma_max`` 80 in float64. Heun steps are
:class:`EDMHeunSolver`'s, which ends with one Euler step to ``sigma = 0``, as
EDM's sampler does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from physicsnemo.diffusion.multi_diffusion import GridPatching2D
from physicsnemo.diffusion.noise_schedulers import EDMNoiseScheduler
from physicsnemo.diffusion.preconditioners import EDMPreconditioner
from physicsnemo.diffusion.samplers import EulerSolver, sample
from physicsnemo.diffusion.utils import ConcatConditionWrapper, StackedRandomGenerator

from ..errors import ConfigError
from . import noise

#: Per sampler type: the largest noise level and the dtype the solver runs in (upstream's).
SIGMA_MAX = {"stochastic": 800.0, "deterministic": 80.0}
SOLVER_DTYPE = {"stochastic": torch.float32, "deterministic": torch.float64}
SIGMA_MIN, RHO = 0.002, 7.0


def preconditioner(net: torch.nn.Module) -> EDMPreconditioner:
    """The UNet of a CorrDiff diffusion file (``net.model``) under the current EDM preconditioner,
    with the file's ``sigma_data``; it shares the file's weights (and their train/eval mode)."""
    return EDMPreconditioner(ConcatConditionWrapper(net.model), sigma_data=float(net.sigma_data))


def noise_level_scale(net: torch.nn.Module) -> float:
    """The factor a t-EDM net applies to the noise level it is given (``sqrt(nu / (nu - 2))``,
    the Student-t noise's standard deviation); 1 for a Gaussian net."""
    nu = noise.student_t_nu(net)
    return 1.0 if nu is None else math.sqrt(nu / (nu - 2))


@dataclass(frozen=True)
class EDMSampler:
    """``generation.sampler``: how residuals are drawn from a diffusion net.

    Parameters
    ----------
    kind : str
        ``stochastic`` or ``deterministic`` (upstream's names, see the module's docstring).
    num_steps : int
        Noise levels from ``sigma_max`` down to ``sigma_min`` (the last step then goes to 0).
    solver : str
        ``heun`` or ``euler`` (``stochastic`` is always Heun).
    patching : GridPatching2D or None
        The grid of patches a patched net denoises, fused after every call.
    """

    kind: str
    num_steps: int
    solver: str = "heun"
    patching: GridPatching2D | None = None

    def __post_init__(self):
        if self.kind not in SIGMA_MAX:
            raise ConfigError(f"generation.sampler.type={self.kind!r}: choose stochastic or deterministic")
        if self.solver not in ("heun", "euler"):
            raise ConfigError(f"generation.sampler.solver={self.solver!r}: choose heun or euler")
        if not isinstance(self.num_steps, int) or self.num_steps < 1:
            raise ConfigError(f"generation.sampler.num_steps={self.num_steps!r}: give a whole number, at least 1")

    def scheduler(self, net: torch.nn.Module) -> EDMNoiseScheduler:
        """EDM's noise schedule from ``sigma_max`` to ``sigma_min``, within the net's own bounds."""
        return EDMNoiseScheduler(
            sigma_min=max(SIGMA_MIN, float(net.sigma_min)),
            sigma_max=min(SIGMA_MAX[self.kind], float(net.sigma_max)),
            rho=RHO,
        )

    def __call__(self, net, latents: torch.Tensor, condition: torch.Tensor, img_lr: torch.Tensor, **model_kwargs):
        """Denoise ``latents`` (unit noise) into samples.

        Parameters
        ----------
        net : Module
            The diffusion file's net (``EDMPrecondSuperResolution`` or ``tEDMPrecondSuperRes``).
        latents : torch.Tensor
            ``[B, C_out, H, W]`` unit-scale noise (Gaussian, or Student-t for a t-EDM net).
        condition : torch.Tensor
            ``[B, C_cond, H, W]``: the regression mean (when conditioned on it), then ``img_lr``.
        img_lr : torch.Tensor
            ``[B, C_in, H, W]`` the network input, which a patched net also sees whole, resized.
        **model_kwargs
            ``lead_time_label`` ``[B]`` for lead-time-aware nets.

        Returns
        -------
        torch.Tensor
            ``[B, C_out, H, W]`` float32 samples.
        """
        scheduler = self.scheduler(net)
        t_steps = scheduler.timesteps(self.num_steps, device=latents.device, dtype=SOLVER_DTYPE[self.kind])
        predict = self._x0_predictor(net, condition, img_lr, **model_kwargs)
        denoiser = ode_slope(predict)
        x = latents.to(t_steps.dtype) * t_steps[0]
        euler = self.solver == "euler" and self.kind == "deterministic"
        solver = EulerSolver(denoiser) if euler else EDMHeunSolver(denoiser)
        return sample(denoiser, x, scheduler, self.num_steps, solver=solver, time_steps=t_steps).float()

    def _x0_predictor(self, net, condition, img_lr, **model_kwargs):
        """``(x, t) -> x0``: the net's denoised estimate, computed in float32 whatever the solver's
        dtype (as the file class does), patch by patch when the sampler is patched."""
        precond, scale, patching = preconditioner(net), noise_level_scale(net), self.patching
        batch = condition.shape[0]
        if patching is not None:
            condition = patching.apply(condition, additional_input=img_lr)
            model_kwargs["embedding_selector"] = lambda emb: patching.apply(emb.expand(batch, -1, -1, -1))

        def predict(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            x32 = x.float() if patching is None else patching.apply(x.float())
            sigma = (t.float() * scale)[:1].expand(len(x32))  # one noise level for the batch
            x0 = precond(x32, sigma, condition=condition, **model_kwargs)
            if patching is not None:
                x0 = patching.fuse(x0, batch_size=batch)
            return x0.to(x.dtype)

        return predict


def ode_slope(x0_predictor):
    """EDM's probability-flow ODE, ``dx/dt = (x - x0(x, t)) / t`` (a PhysicsNeMo ``Denoiser``).

    ``EDMNoiseScheduler.get_denoiser`` gives the same value as ``-0.5 g^2 score`` with
    ``score = (x0 - x) / t^2``; written so, its extra float32 operations, amplified by the
    cancellation of ``x + h * slope`` from ``t = 800``, move a few-step sample by up to 1e-3
    relative. This is the form EDM's sampler (and upstream's CorrDiff generation) computes.
    """

    def slope(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (x - x0_predictor(x, t)) / t.reshape(-1, *[1] * (x.dim() - 1))

    return slope


class EDMHeunSolver:
    """EDM's Heun step (a PhysicsNeMo ``Solver``): Euler to ``t_next``, corrected by the slope there,
    and Euler alone on the last step to ``t = 0``.

    PhysicsNeMo's ``HeunSolver`` evaluates the slope at ``t_cur + (t_next - t_cur)``, which in
    float32 misses ``t_next`` by the rounding of ``t_cur`` (0.5% at ``t_next`` = 0.002 after
    ``t_cur`` = 800, a two-step schedule), and evaluates the net on the last step too, then
    discards the result. This step uses ``t_next`` itself and skips that evaluation, as EDM's
    sampler (and upstream's CorrDiff generation) does.
    """

    def __init__(self, denoiser):
        self.denoiser = denoiser

    def step(self, x: torch.Tensor, t_cur: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, ...]`` at ``t_cur`` ``[B]`` -> at ``t_next`` ``[B]`` (one time for the batch)."""
        h = (t_next - t_cur).reshape(-1, *[1] * (x.dim() - 1))
        slope = self.denoiser(x, t_cur)
        x_next = x + h * slope
        if bool(t_next[0] == 0):  # the last step
            return x_next
        return x + h * (0.5 * slope + 0.5 * self.denoiser(x_next, t_next))


@torch.inference_mode()  # not just no_grad: no view or version tracking on the many small tensors of a step
def sample_members(sampler: EDMSampler, net, seeds: torch.Tensor, condition, img_lr, **model_kwargs) -> torch.Tensor:
    """Members of one seed batch: member ``k`` is drawn from seed ``seeds[k]`` alone.

    Parameters
    ----------
    seeds : torch.Tensor
        ``[B]`` seeds; their latents are Gaussian, or Student-t with the net's ``nu``.
    condition, img_lr : torch.Tensor
        ``[B, C, H, W]``, as :meth:`EDMSampler.__call__` takes them.

    Returns
    -------
    torch.Tensor
        ``[B, C_out, H, W]`` float32.
    """
    device = img_lr.device
    rnd = StackedRandomGenerator(device, seeds.tolist())
    latents = rnd.randn((len(seeds), net.img_out_channels, *img_lr.shape[-2:]), device=device)
    nu = noise.student_t_nu(net)
    if nu is not None:
        latents = noise.student_t_latents(latents, rnd.randn_like, nu)
    return sampler(net, latents.to(memory_format=torch.channels_last), condition, img_lr, **model_kwargs)
