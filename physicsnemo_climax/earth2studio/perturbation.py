# SPDX-License-Identifier: Apache-2.0
"""This package's ensemble perturbations as an Earth2Studio perturbation
(``earth2studio.perturbation`` protocol), for ``earth2studio.run.ensemble``.

The noise of member ``k`` is the one :mod:`..forecasting.ensembles` gives
member ``k`` in ``climax forecast --members`` and ``eval.members`` (same seed,
same member, same field), scaled by each variable's training std; member 0
(Earth2Studio's ensemble id 0) stays the control. ``bred`` grows its vectors
with the prognostic's own step. ``lagged`` is not a perturbation (its
members are earlier initial times) and is refused. ``model`` leaves the
states as they are: a stochastic ClimaX prognostic (``model.noise_dim > 0``)
draws its own noise for every state of the batch at every step, so its members
differ without a perturbation (from torch's generator: seed it for a
reproducible ensemble); it is refused for a deterministic one.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError, InputError
from ..forecasting.ensembles import EnsembleSpec, member_delta
from .prognostic import ClimaXPrognostic, CoordSystem


class ClimaXPerturbation:
    """Perturb the members of an Earth2Studio ensemble batch as this package does.

    Parameters
    ----------
    prognostic : ClimaXPrognostic
        Its statistics (normalisation), grid and, for ``bred``, its step.
    spec : EnsembleSpec
        Perturbation, scale, seed (``members`` is Earth2Studio's to choose).
    """

    def __init__(self, prognostic: ClimaXPrognostic, spec: EnsembleSpec):
        if spec.perturbation == "lagged":
            raise ConfigError(
                "a lagged ensemble is made of earlier initial times, not a perturbation: "
                "use climax forecast --perturbation lagged or eval.perturbation=lagged"
            )
        if spec.perturbation == "model" and not getattr(prognostic.model, "stochastic", False):
            raise ConfigError(
                "perturbation=model: this ClimaX is deterministic (model.noise_dim=0); perturb the "
                "initial states (gaussian, spherical, bred) or use a stochastic run"
            )
        self.prognostic, self.spec = prognostic, spec

    def _normalised_step(self, state: torch.Tensor) -> torch.Tensor:
        p = self.prognostic
        return (p._step((state * p.std + p.mean)[:, None])[:, 0] - p.mean) / p.std

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, coords: CoordSystem) -> tuple[torch.Tensor, CoordSystem]:
        """``x`` ``[ensemble, ..., variable, lat, lon]`` in physical units, ``coords`` with ``ensemble`` first."""
        if next(iter(coords)) != "ensemble":
            raise InputError(f"the ensemble dimension must come first, got {list(coords)}")
        if self.spec.perturbation == "model":  # members differ through the prognostic's own noise
            return x, coords
        p, out = self.prognostic, x.clone()
        for i, member in enumerate(coords["ensemble"]):
            if int(member) == 0:
                continue
            state = ((x[i] - p.mean.to(x)) / p.std.to(x)).reshape(-1, *x.shape[-3:])  # [N, V, H, W]
            step = self._normalised_step if self.spec.perturbation == "bred" else None
            delta = member_delta(state, self.spec, int(member), p.lat, p.lon, list(range(state.shape[1])), step)
            out[i] = x[i] + (delta * p.std.to(x)).reshape(x[i].shape)
        return out, coords
