# SPDX-License-Identifier: Apache-2.0
"""Ensembles: perturbed initial conditions, or a stochastic model's own noise, rolled out as one batch.

Perturbations are added in normalised units (each variable divided by its
training std), so ``scale`` is a fraction of each variable's spread; the
constant fields (land-sea mask, orography, ...) are never perturbed. Member
0 is the unperturbed control. Each member's noise comes from its own
generator, seeded from ``(seed, member)``, so an ensemble is reproducible
and member ``k`` is the same whatever the number of members.

``gaussian``
    independent noise at every grid point.
``spherical``
    a smooth, isotropic random field on the sphere with correlation length
    ``length_km``: a sum of random three-dimensional plane waves (random
    directions, phases, wavenumbers around ``R / length_km``) evaluated on
    the sphere, isotropic by construction; unit variance.
``bred``
    bred vectors: a ``spherical`` perturbation grown by ``cycles`` steps of
    the model from the initial state itself and rescaled to ``scale`` after
    each (the directions that grow fastest at this time, as the breeding
    method finds them; here from the initial state, not from a past
    trajectory); members come in ``+`` / ``-`` pairs.
``lagged``
    no noise: member ``k`` starts ``k`` data steps earlier and forecasts
    ``k`` lags longer, to the same valid time (the caller provides the
    earlier states: the forecast API from its initial condition's times, the
    evaluation from the store, :func:`lag_hours` apart).
``model``
    no perturbation: every member starts from the initial state and differs
    through the noise a stochastic ClimaX (``model.noise_dim > 0``, trained
    with ``train.loss=crps``) takes at each model step; refused for a
    deterministic run.

A stochastic model's members always differ through their own noise, whatever
the perturbation (``gaussian``, ... add theirs to it): member ``k``'s noise at
model step ``s`` comes from its own generator, seeded from ``(seed, k, s)``
(:func:`model_noise`), so a member's trajectory is the same whatever the
number of members and whichever lead is asked for. The ``bred`` steps run at
zero noise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..engine.checks import check_seed
from ..engine.run_info import RunInfo
from ..errors import ConfigError
from ..models.variables import CONSTANTS

PERTURBATIONS = ("gaussian", "spherical", "bred", "lagged", "model")
EARTH_RADIUS_KM = 6371.0


@dataclass(frozen=True)
class EnsembleSpec:
    """How to make an ensemble; recorded with its output, so it can be made again.

    Attributes
    ----------
    members : int
        Including the control (member 0).
    perturbation : str
        One of :data:`PERTURBATIONS`.
    scale : float
        Perturbation size in units of each variable's training std.
    seed : int
        A whole number >= 0.
    length_km : float
        Correlation length of ``spherical`` and ``bred`` perturbations.
    cycles : int
        Breeding cycles of ``bred``.
    """

    members: int = 1
    perturbation: str = "gaussian"
    scale: float = 0.05
    seed: int = 0
    length_km: float = 500.0
    cycles: int = 3

    def __post_init__(self):
        if self.perturbation not in PERTURBATIONS:
            raise ConfigError(f"perturbation {self.perturbation!r}: choose from {list(PERTURBATIONS)}")
        if self.members < 1 or self.scale < 0 or self.length_km <= 0 or self.cycles < 1:
            raise ConfigError(f"ensemble {asdict(self)}: members and cycles >= 1, scale >= 0, length_km > 0")
        check_seed(self.seed)

    def record(self) -> dict:
        """JSON-ready attributes for the output."""
        return {f"ensemble_{k}": v for k, v in asdict(self).items()}


def spherical_noise(
    lat: np.ndarray,
    lon: np.ndarray,
    length_km: float,
    generator: torch.Generator,
    shape: tuple[int, ...] = (),
    waves: int = 32,
) -> torch.Tensor:
    """Isotropic random fields ``[*shape, H, W]`` with unit variance on the sphere (float32)."""
    phi, lam = np.deg2rad(np.asarray(lat, np.float64)), np.deg2rad(np.asarray(lon, np.float64))
    xyz = torch.from_numpy(
        np.stack(
            [
                np.cos(phi)[:, None] * np.cos(lam)[None, :],
                np.cos(phi)[:, None] * np.sin(lam)[None, :],
                np.sin(phi)[:, None] * np.ones_like(lam)[None, :],
            ],
            axis=-1,
        )
    ).float()
    n = int(np.prod(shape)) if shape else 1
    direction = torch.randn(n, waves, 3, generator=generator)
    wavevector = (
        direction
        / direction.norm(dim=-1, keepdim=True)
        * EARTH_RADIUS_KM
        / length_km
        * (0.5 + torch.rand(n, waves, 1, generator=generator))
    )
    phase = 2 * np.pi * torch.rand(n, waves, 1, 1, generator=generator)
    out = torch.empty(n, len(lat), len(lon))
    chunk = max(1, 2**25 // (waves * len(lat) * len(lon)))  # about 128 MB of cosines at a time
    for i in range(0, n, chunk):
        projection = torch.einsum("hwc,nkc->nkhw", xyz, wavevector[i : i + chunk])
        out[i : i + chunk] = torch.cos(projection + phase[i : i + chunk]).sum(dim=1) * np.sqrt(2.0 / waves)
    return out.reshape(*shape, len(lat), len(lon))


def member_generator(seed: int, member: int) -> torch.Generator:
    """The generator of one member's noise (the same for a member whatever the ensemble size)."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(member))


def member_noise(
    spec: EnsembleSpec, member: int, shape: tuple[int, ...], lat: np.ndarray, lon: np.ndarray
) -> torch.Tensor:
    """Unit-variance noise ``[*shape, H, W]`` of one member (``gaussian``, or ``spherical`` for
    ``spherical`` and ``bred``), from that member's own generator."""
    g = member_generator(spec.seed, member)
    if spec.perturbation == "gaussian":
        return torch.randn(*shape, len(lat), len(lon), generator=g)
    return spherical_noise(lat, lon, spec.length_km, g, shape)


def member_delta(
    x: torch.Tensor, spec: EnsembleSpec, member: int, lat: np.ndarray, lon: np.ndarray, dynamic: list[int], step=None
) -> torch.Tensor:
    """The perturbation of member ``member >= 1`` of the normalised states ``x`` ``[B, V, H, W]``
    (``bred``: the ``-`` member ``2j`` is minus the ``+`` member ``2j - 1``)."""
    if spec.perturbation == "bred" and member % 2 == 0:
        member -= 1
        sign = -1.0
    else:
        sign = 1.0
    delta = torch.zeros_like(x)
    noise = member_noise(spec, member, (x.shape[0], len(dynamic)), lat, lon)
    delta[:, dynamic] = spec.scale * noise.to(x.device, x.dtype)
    if spec.perturbation == "bred":
        delta = breed(x, delta, step, dynamic, spec.scale, spec.cycles)
    return sign * delta


def perturb(
    x: torch.Tensor, spec: EnsembleSpec, lat: np.ndarray, lon: np.ndarray, dynamic: list[int], step=None
) -> torch.Tensor:
    """Members of the normalised initial states ``x`` ``[B, V, H, W]``: ``[M * B, V, H, W]``,
    member-major (member ``k`` of sample ``b`` at ``k * B + b``), member 0 the control.

    Parameters
    ----------
    dynamic : list of int
        The channels perturbed (not the constant fields).
    step : callable, optional
        ``step(x) -> x`` one model step on all channels (``bred`` only).
    """
    if spec.perturbation == "lagged":
        raise ConfigError("lagged members are earlier initial states, not noise")
    if spec.perturbation == "model":  # the model's noise makes the members
        return x.repeat(spec.members, *([1] * (x.ndim - 1)))
    members = [x]
    for k in range(1, spec.members):
        if spec.perturbation == "bred" and k % 2 == 0:
            members.append(2 * x - members[-1])  # the - of the previous + pair, not bred again
        else:
            members.append(x + member_delta(x, spec, k, lat, lon, dynamic, step))
    return torch.cat(members)


def breed(x: torch.Tensor, delta: torch.Tensor, step, dynamic: list[int], scale: float, cycles: int) -> torch.Tensor:
    """Grow ``delta`` by ``cycles`` model steps from ``x``, rescaling its RMS to ``scale`` per
    sample and channel after each."""
    if step is None:
        raise ConfigError("bred perturbations need the model's step")
    control = step(x)
    for _ in range(cycles):
        grown = step(x + delta) - control
        rms = grown[:, dynamic].square().mean(dim=(-2, -1), keepdim=True).sqrt().clamp_min(1e-12)
        delta = torch.zeros_like(x)
        delta[:, dynamic] = grown[:, dynamic] * (scale / rms)
    return delta


def check_stochastic(model, spec: EnsembleSpec, key: str = "perturbation") -> None:
    """``model`` perturbation needs a stochastic model.

    Raises
    ------
    ConfigError
        Naming ``key`` (``eval.perturbation``), for an ensemble of ``model`` members of a
        deterministic model (they would be one forecast).
    """
    if spec.members > 1 and spec.perturbation == "model" and not getattr(model, "stochastic", False):
        raise ConfigError(
            f"{key}=model: this run's ClimaX is deterministic (model.noise_dim=0), so its members "
            "would all be one forecast; perturb the initial states (gaussian, spherical, bred, lagged) "
            "or fine-tune a stochastic model (model.noise_dim, train.loss=crps)"
        )


def noise_generator(seed: int, member: int, step: int) -> torch.Generator:
    """The generator of member ``member``'s model noise at model step ``step`` (a stochastic model)."""
    state = np.random.SeedSequence([int(seed), int(member), int(step)]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def model_noise(model, seed: int, members: Sequence[int], batch: int, device) -> Callable[[int], torch.Tensor] | None:
    """The noise of each model step of a start holding ``members`` (member-major, ``batch``
    states each) of a stochastic ``model``: ``noise(step)`` ``[len(members) * batch, h w, n]``
    on ``device``, each member's from :func:`noise_generator`; ``None`` for a deterministic model."""
    if not getattr(model, "stochastic", False):
        return None

    def noise(step: int) -> torch.Tensor:
        draws = [model.draw_noise(batch, noise_generator(seed, m, step)) for m in members]
        return torch.cat(draws).to(device)

    return noise


def lag_hours(info: RunInfo) -> float:
    """How much earlier each lagged member starts in an evaluation: the run's lead for a
    fixed-lead run (the only leads it reaches are its multiples), else the data step."""
    return float(info.lead_hours or info.hours_per_step)


def bred_step(run, variables: list[str], dynamic: list[int]):
    """One model step of the run's shortest trained lead on all channels of a normalised state
    (constants carried over): the step ``bred`` grows its perturbations with."""
    info = run.info
    hours = float(info.lead_hours or (info.lead_range or [info.hours_per_step])[0])
    targets = [variables[i] for i in dynamic]

    def step(x: torch.Tensor) -> torch.Tensor:
        out, lead = x.clone(), torch.full((len(x),), hours, device=x.device)
        # a stochastic model breeds at zero noise: the growth of the perturbation alone
        zero = {"noise": x.new_zeros(run.model.noise_shape(len(x)))} if getattr(run.model, "stochastic", False) else {}
        out[:, dynamic] = run.model(x, lead, variables, targets, **zero).to(x.dtype)
        return out

    return step


def members_of(run, x: torch.Tensor, spec: EnsembleSpec) -> torch.Tensor:
    """The members ``[M * B, V, H, W]`` of the normalised global initial states ``x`` of ``run``
    (noise on the run's whole grid; constants and forcings never perturbed; the breeding steps of
    ``bred`` see the forcings at their training mean, as they carry no time)."""
    variables, computed = list(run.info.variables), set(run.info.forcings)
    check_stochastic(run.model, spec)
    dynamic = [i for i, v in enumerate(variables) if v not in CONSTANTS and v not in computed]
    step = bred_step(run, variables, dynamic) if spec.perturbation == "bred" else None
    with torch.no_grad():
        return perturb(x, spec, np.asarray(run.info.lat), np.asarray(run.info.lon), dynamic, step)
