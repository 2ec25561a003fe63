# SPDX-License-Identifier: Apache-2.0
"""A CorrDiff downscaler of this package as an Earth2Studio diagnostic model.

Coordinates (``earth2studio.models.dx`` conventions)::

    input:  batch (any leading dims), variable, lat, lon    any regular grid covering the domain
    output: batch, [sample], variable, lat, lon              the domain's fine grid

The coarse fields are interpolated bilinearly onto the domain's coarse grid,
as :mod:`..downscaling.pipeline` does, then the regression mean and the
residual diffusion give ``samples`` members (seeds ``seed .. seed+samples-1``
at every call, so a rerun is identical). With ``samples=1`` there is no
``sample`` dimension, and ``earth2studio.run.diagnostic`` writes the km-scale
fields after each ClimaX step.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from ..config import load_config
from ..data.regrid import regrid
from ..downscaling.domain import checkpoint_domain
from ..downscaling.generation import build_sampler, downscale, load_stages, seed_batches
from ..engine.plan import decide_device
from ..errors import ConfigError, InputError
from .lexicon import to_e2s_all
from .prognostic import CoordSystem, check_coords


class CorrDiffDiagnostic(torch.nn.Module):
    """CorrDiff (regression + residual diffusion) on Earth2Studio coordinates.

    Parameters
    ----------
    domain : Domain
        Channels, statistics and grids of the CorrDiff runs.
    regression, diffusion : physicsnemo.core.Module
        The two stages (``diffusion=None``: the regression mean only).
    sampler : EDMSampler
        :func:`..downscaling.generation.build_sampler`'s sampler.
    samples : int
        Members per input.
    seed : int
        Seed of the first member.
    names : mapping, optional
        Domain variable name -> Earth2Studio id, for names the lexicon lacks.
    """

    def __init__(
        self,
        domain,
        regression,
        diffusion,
        sampler,
        samples: int = 1,
        seed: int = 0,
        hr_mean_conditioning: bool = True,
        names: Mapping[str, str] | None = None,
    ):
        super().__init__()
        if domain.coarse_lat is None or domain.lat is None:
            raise ConfigError(
                "the CorrDiff run has no grid coordinates (CorrDiff-Mini data carry none); "
                "train it on a coarse_fine dataset with lat/lon"
            )
        if samples < 1:
            raise ConfigError(f"samples={samples}: must be >= 1")
        self.domain, self.regression, self.diffusion = domain, regression, diffusion
        self.sampler, self.samples, self.seed = sampler, samples, seed
        self.hr_mean_conditioning = hr_mean_conditioning
        self.e2s_inputs = np.array(to_e2s_all(domain.input_variables, names))
        self.e2s_outputs = np.array(to_e2s_all(domain.output_variables, names))
        lat, lon = np.asarray(domain.lat), np.asarray(domain.lon)
        regular = (lat == lat[:, :1]).all() and (lon == lon[:1]).all()
        self.out_lat, self.out_lon = (lat[:, 0], lon[0]) if regular else (lat, lon)

    @classmethod
    def from_runs(
        cls,
        regression: str | Path,
        diffusion: str | Path | None = None,
        samples: int = 1,
        steps: int = 18,
        sampler: str = "stochastic",
        seed: int = 0,
        names: Mapping[str, str] | None = None,
        device: str | torch.device | None = None,
    ):
        """From CorrDiff run folders (or checkpoints in them); ``diffusion=None`` for regression only.
        The nets run on ``device`` (:func:`...engine.plan.decide_device`: unset, CUDA when present, else
        the CPU), in fp32 with torch GroupNorm, each loaded once."""
        domain = checkpoint_domain(regression)
        if domain is None:
            raise FileNotFoundError(
                f"{regression}: no domain.json in its run folder; give the CorrDiff "
                "regression run folder or a checkpoint inside it"
            )
        gen = load_config(
            [
                f"generation.io.reg_ckpt_filename={regression}",
                f"generation.io.res_ckpt_filename={diffusion}",
                f"generation.inference_mode={'all' if diffusion else 'regression'}",
                f"generation.sampler.type={sampler}",
                f"generation.sampler.num_steps={steps}",
            ],
            "config_generate_hrrr_mini",
        ).generation
        reg, res = load_stages(gen, domain, decide_device(device, "device"))
        return cls(domain, reg, res, build_sampler(gen, domain.shape), samples, seed, gen.hr_mean_conditioning, names)

    # ---------------------------------------------------------------- Earth2Studio protocol
    def input_coords(self) -> CoordSystem:
        """``batch, variable, lat, lon``; any regular lat-lon grid covering the domain."""
        return OrderedDict(batch=np.empty(0), variable=self.e2s_inputs.copy(), lat=np.empty(0), lon=np.empty(0))

    def output_coords(self, input_coords: CoordSystem) -> CoordSystem:
        """Leading dims kept, ``[sample,] variable, lat, lon`` on the fine grid.

        Raises
        ------
        KeyError, ValueError
            Earth2Studio's handshake errors naming the coordinate, or a ``lat``
            / ``lon`` that does not cover the domain's coarse grid.
        """
        check_coords(input_coords, self.input_coords(), ("variable", "lat", "lon"), ("variable",))
        self._check_covers(np.asarray(input_coords["lat"]), np.asarray(input_coords["lon"]))
        out = OrderedDict((k, v) for k, v in input_coords.items() if k not in ("variable", "lat", "lon"))
        if self.samples > 1:
            out["sample"] = np.arange(self.samples)
        out["variable"] = self.e2s_outputs.copy()
        out["lat"], out["lon"] = self.out_lat.copy(), self.out_lon.copy()
        return out

    def _check_covers(self, lat: np.ndarray, lon: np.ndarray) -> None:
        if lat.size == 0 or lon.size == 0:  # unspecified, as in input_coords(): Earth2Studio asks with it
            return
        want_lat, want_lon = np.asarray(self.domain.coarse_lat), np.asarray(self.domain.coarse_lon) % 360
        if lat.ndim != 1 or lat.size < 2 or lat.min() > want_lat.min() or lat.max() < want_lat.max():
            raise InputError(
                f"lat {lat.min():.4g}..{lat.max():.4g} does not cover the CorrDiff domain's "
                f"coarse latitudes {want_lat.min():.4g}..{want_lat.max():.4g} (1-D lat needed)"
            )
        ring = np.sort(lon % 360) if lon.ndim == 1 and lon.size > 1 else None
        gaps = None if ring is None else np.diff(np.append(ring, ring[0] + 360))
        global_ = gaps is not None and gaps.max() <= 1.5 * np.median(gaps)
        if not global_ and (ring is None or want_lon.min() < ring[0] or want_lon.max() > ring[-1]):
            raise InputError(
                f"lon {lon.min():.4g}..{lon.max():.4g} does not cover the CorrDiff domain's "
                f"coarse longitudes {want_lon.min():.4g}..{want_lon.max():.4g} (1-D lon needed)"
            )

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, coords: CoordSystem) -> tuple[torch.Tensor, CoordSystem]:
        """Downscale ``x [..., C_in, h, w]`` (physical units) to ``[..., [S,] C_out, H, W]``."""
        out_coords = self.output_coords(coords)
        lead = x.shape[:-3]
        flat = x.reshape(-1, *x.shape[-3:]).float().cpu().numpy()
        fields = xr.Dataset(
            {v: (("sample", "lat", "lon"), flat[:, i]) for i, v in enumerate(self.domain.input_variables)},
            coords={"lat": np.asarray(coords["lat"]), "lon": np.asarray(coords["lon"])},
        )
        coarse = regrid(fields, self.domain.coarse_lat, self.domain.coarse_lon, "bilinear")
        coarse = np.stack([coarse[v].transpose("sample", "lat", "lon").values for v in self.domain.input_variables], 1)
        device = next(self.regression.parameters()).device
        net_in = torch.from_numpy(self.domain.make_input(coarse)).to(device)
        batches = seed_batches(self.samples, self.samples, self.seed)
        _, members = downscale(
            self.regression, self.diffusion, net_in, batches, self.sampler, self.hr_mean_conditioning
        )
        y = self.domain.denormalize_output(members).transpose(0, 1)  # [N, S, C_out, H, W]
        if self.samples == 1:
            y = y[:, 0]
        return y.reshape(*lead, *y.shape[1:]).to(x.device, torch.float32), out_coords
