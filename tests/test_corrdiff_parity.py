# SPDX-License-Identifier: Apache-2.0
"""CorrDiff on PhysicsNeMo's current diffusion API against its legacy helpers.

Generation gives the outputs recorded on the legacy helpers (``tests/data/corrdiff_parity.pt``,
made by ``tests/data/make_corrdiff_parity.py``): on this CPU, bit for bit for the stochastic and
both deterministic samplers, Gaussian and Student-t; the patched sampler within 2e-6 relative L2
(the legacy helpers patch and fuse through ``torch.compile``, which orders float sums its own
way). The tests allow 1e-5 relative L2 for the samples, 1e-6 for the regression mean.

The training losses equal the legacy ``RegressionLoss`` and ``ResidualLoss`` computed live, with
their gradients.
"""

import warnings
from pathlib import Path

import pytest
import torch
from physicsnemo.diffusion.multi_diffusion import RandomPatching2D
from physicsnemo.diffusion.noise_schedulers import EDMNoiseScheduler
from physicsnemo.diffusion.preconditioners import EDMPrecondSuperResolution
from test_corrdiff_checkpoints import SHAPE, TINY, upstream_net

from physicsnemo_climax.config import load_config
from physicsnemo_climax.downscaling import generation, training

RECORDED = torch.load(Path(__file__).parent / "data" / "corrdiff_parity.pt", weights_only=False)


def recorded_net(name):
    """The recorded weights in a net of ``name``'s upstream layout."""
    net = upstream_net(name)
    net.load_state_dict(RECORDED["nets"][name])
    return net.eval()


def relative_l2(a, b) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("case", list(RECORDED["cases"]))
def test_generation_gives_the_recorded_outputs(case):
    rec = RECORDED["cases"][case]
    gen = load_config(
        ["generation.num_ensembles=4", "generation.seed_batch_size=2", *rec["overrides"]], "config_generate_hrrr_mini"
    ).generation
    reg = recorded_net(rec["regression"]) if rec["regression"] else None
    res = recorded_net(rec["diffusion"])
    mean, members = generation.downscale(
        reg,
        res,
        RECORDED["x"],
        generation.seed_batches(4, 2, seed=5),
        generation.build_sampler(gen, SHAPE),
        gen.hr_mean_conditioning,
        lead_time_label=rec["labels"],
    )
    if reg is None:
        assert mean is None and rec["mean"] is None
    else:
        torch.testing.assert_close(mean, rec["mean"], rtol=1e-6, atol=1e-6)
    assert members.shape == rec["members"].shape == (4, 2, 2, *SHAPE)
    spread = members - members.mean(dim=0)
    assert spread.abs().mean() > 1e-2  # members differ: the comparison is of samples, not of a mean
    assert relative_l2(members, rec["members"]) < 1e-5, (case, relative_l2(members, rec["members"]))


# ----------------------------------------------------------------------------- training losses


@pytest.mark.parametrize("patched", [False, True])
def test_the_residual_loss_equals_the_legacy_one(patched):
    """EDMNoiseScheduler + MSEDSMLoss draw the same noise levels and noise from the same seed as the
    legacy ResidualLoss and weight them alike: the same loss, and the same gradients."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from physicsnemo.diffusion.metrics import ResidualLoss

    reg = recorded_net("regression").requires_grad_(False)
    res = recorded_net("diffusion").train()
    if patched:  # upstream's patched layout: each patch also sees the whole input, resized
        torch.manual_seed(3)
        res = EDMPrecondSuperResolution(
            img_resolution=list(SHAPE), img_in_channels=6 + 2 + 6 + 4, img_out_channels=2, **TINY
        ).train()
    scheduler = EDMNoiseScheduler(P_mean=-1.2, P_std=1.2, sigma_data=0.5)
    g = torch.Generator().manual_seed(1)
    y, x = torch.randn(2, 2, *SHAPE, generator=g), RECORDED["x"]
    patching = RandomPatching2D(SHAPE, (8, 8), 3) if patched else None
    losses, grads = [], []
    for legacy in (True, False):
        res.zero_grad()
        torch.manual_seed(7)
        if patching is not None:
            patching.reset_patch_indices()
        if legacy:
            loss = ResidualLoss(reg, P_mean=-1.2, P_std=1.2, sigma_data=0.5, hr_mean_conditioning=True)
            value = loss(res, y, x, patching=patching).mean()
        else:
            value = training.residual_loss(res, reg, scheduler, y, x, True, patching)
        value.backward()
        losses.append(value.detach())
        grads.append(torch.cat([p.grad.reshape(-1) for p in res.parameters() if p.grad is not None]))
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-6, atol=0)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-7)
    assert losses[0] > 0.1 and grads[0].abs().max() > 1e-3


def test_the_regression_loss_equals_the_legacy_one():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from physicsnemo.diffusion.metrics import RegressionLoss

    reg = recorded_net("regression")
    y = torch.randn(2, 2, *SHAPE, generator=torch.Generator().manual_seed(2))
    expected = RegressionLoss()(reg, y, RECORDED["x"]).mean()
    torch.testing.assert_close(training.regression_loss(reg, y, RECORDED["x"]), expected, rtol=1e-6, atol=0)
    assert expected > 0.1
