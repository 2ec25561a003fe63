# SPDX-License-Identifier: Apache-2.0
"""The noise a CorrDiff diffusion net is sampled with: Gaussian, or Student-t for t-EDM nets.

A ``tEDMPrecondSuperRes`` (t-EDM, Pandey et al. 2024; upstream's
``training.hp.distribution=student_t``) was trained on Student-t noise with
``nu`` degrees of freedom, and is sampled from Student-t latents
(:func:`student_t_latents`, drawn by :func:`.sampling.sample_members`), never Gaussian
ones; the config may not ask otherwise (:func:`check_noise`).
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from physicsnemo.core import Module

from ..errors import ConfigError


def student_t_nu(net: Module | None) -> int | None:
    """Degrees of freedom of a Student-t (t-EDM) diffusion net, ``None`` for a Gaussian one."""
    return None if net is None or getattr(net, "nu", None) is None else net.nu


def check_noise(net: Module, gen: DictConfig, key: str, file) -> None:
    """``generation.distribution`` / ``student_t_nu`` agree with the net's own noise (or are null).

    Raises
    ------
    ConfigError
        A Gaussian ask for a Student-t net or the reverse, a ``nu`` other than the net's,
        or a ``nu`` that is not an integer above 2.
    """
    nu, asked, asked_nu = student_t_nu(net), gen.get("distribution"), gen.get("student_t_nu")
    name = type(net).__name__
    if asked not in (None, "normal", "student_t"):
        raise ConfigError(f"generation.distribution={asked!r}: choose normal or student_t (or null: the net's own)")
    if nu is None and (asked == "student_t" or asked_nu is not None):
        raise ConfigError(
            f"generation.distribution={asked}, student_t_nu={asked_nu}: {key}={file} is a Gaussian "
            f"{name}; Student-t sampling needs a tEDMPrecondSuperRes net"
        )
    if nu is not None and asked == "normal":
        raise ConfigError(
            f"generation.distribution=normal: {key}={file} is a Student-t {name} (nu={nu}); "
            "it is sampled with its own Student-t noise"
        )
    if nu is not None and asked_nu is not None and asked_nu != nu:
        raise ConfigError(f"generation.student_t_nu={asked_nu}: {key}={file} was trained with nu={nu}")
    if nu is not None and (int(nu) != nu or nu <= 2):
        raise ConfigError(f"{key}={file}: {name}(nu={nu}) is not supported; nu must be an integer above 2")


def student_t_latents(latents: torch.Tensor, randn_like, nu: int) -> torch.Tensor:
    """Student-t latents ``eps / sqrt(chi2_nu / nu)`` from Gaussian ones ``eps`` ``[B, C, H, W]``.

    The chi-square draw is the sum of ``nu`` squared normals from ``randn_like``,
    which draws from each member's own generator, so member ``k`` depends on its
    seed only (PhysicsNeMo's ``randt`` draws it from the global generator).
    One draw per member, as t-EDM's multivariate Student-t prior does.
    """
    z = randn_like(latents.new_empty(latents.shape[0], int(nu)))
    kappa = z.double().square().sum(dim=1) / nu
    return latents / kappa.sqrt().to(latents.dtype).view(-1, *[1] * (latents.dim() - 1))
