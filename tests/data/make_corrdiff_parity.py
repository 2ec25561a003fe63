# SPDX-License-Identifier: Apache-2.0
"""Regenerate corrdiff_parity.pt: CorrDiff generation outputs recorded for the parity tests
(tests/test_corrdiff_parity.py). Run only when a deliberate change of the samplers' numerics is
made, and say so in the commit.

Recorded with the generation path built on PhysicsNeMo's legacy helpers (``regression_step``,
``diffusion_step``, ``stochastic_sampler`` and ``deterministic_sampler``), before it moved to the
current diffusion API; the nets are tiny upstream-layout nets (``upstream_net``), whose weights are
stored with the outputs so that a change of torch's initialisation cannot move the reference.
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1]))
from test_corrdiff_checkpoints import SHAPE, upstream_net  # noqa: E402

from physicsnemo_climax.config import load_config  # noqa: E402
from physicsnemo_climax.downscaling import generation  # noqa: E402

#: name: (regression net, diffusion net, generation overrides, lead-time labels)
CASES = {
    "stochastic": ("regression", "diffusion", ["generation.sampler.num_steps=8"], None),
    "deterministic_euler": (
        "regression",
        "diffusion",
        ["generation/sampler=deterministic", "generation.sampler.num_steps=6"],
        None,
    ),
    "deterministic_heun": (
        "regression",
        "diffusion",
        ["generation/sampler=deterministic", "generation.sampler.num_steps=5", "generation.sampler.solver=heun"],
        None,
    ),
    "no_mean": (None, "diffusion_no_mean", ["generation.hr_mean_conditioning=false"], None),
    "student_t": ("regression", "student_t_diffusion", ["generation.sampler.num_steps=6"], None),
    "patched_lead_time": (
        "lt_aware_regression",
        "lt_aware_patched_diffusion",
        [
            "generation=patched",
            "generation.patch_shape_x=8",
            "generation.patch_shape_y=8",
            "generation.overlap_pix=2",
            "generation.boundary_pix=1",
            "generation.sampler.num_steps=6",
        ],
        [3, 7],
    ),
}


def generation_config(overrides):
    """The generation config of a case (the data keys are not used)."""
    return load_config(
        ["generation.num_ensembles=4", "generation.seed_batch_size=2", *overrides], "config_generate_hrrr_mini"
    ).generation


#: The nets (``upstream_net`` names), each built once from its seed.
NET_SEEDS = {
    "regression": 10,
    "lt_aware_regression": 11,
    "diffusion": 20,
    "diffusion_no_mean": 21,
    "student_t_diffusion": 22,
    "lt_aware_patched_diffusion": 23,
}


def record() -> dict:
    """The nets' weights, the inputs, and every case's outputs (seeds 5..8)."""
    nets = {name: upstream_net(name, seed) for name, seed in NET_SEEDS.items()}
    torch.manual_seed(20261206)
    x = torch.randn(2, 6, *SHAPE)
    out = {"x": x, "nets": {name: net.state_dict() for name, net in nets.items()}, "cases": {}}
    for name, (reg_name, res_name, overrides, labels) in CASES.items():
        gen = generation_config(overrides)
        reg = nets[reg_name] if reg_name else None
        res = nets[res_name]
        labels = None if labels is None else torch.tensor(labels)
        batches = generation.seed_batches(4, 2, seed=5)
        mean, members = generation.downscale(
            reg, res, x, batches, generation.build_sampler(gen, SHAPE), gen.hr_mean_conditioning, lead_time_label=labels
        )
        out["cases"][name] = dict(
            regression=reg_name,
            diffusion=res_name,
            overrides=overrides,
            labels=labels,
            mean=mean,
            members=members,
        )
    return out


if __name__ == "__main__":
    torch.save(record(), Path(__file__).with_name("corrdiff_parity.pt"))
