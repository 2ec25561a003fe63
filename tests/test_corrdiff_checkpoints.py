# SPDX-License-Identifier: Apache-2.0
"""Checkpoints of the upstream CorrDiff recipe load and generate here.

The nets are built as upstream's ``train.py`` builds them for each
``conf/base/model/*.yaml`` (PhysicsNeMo classes, the same constructor
arguments and channel arithmetic), at a tiny size, saved with ``.save()`` and
generated from through this package's path.
"""

import functools
import json
import logging
import warnings
import zipfile

import numpy as np
import pytest
import torch
import xarray as xr
from physicsnemo.core import Module
from physicsnemo.diffusion.preconditioners import EDMPreconditioner, EDMPrecondSuperResolution
from physicsnemo.models.diffusion_unets import CorrDiffRegressionUNet, SongUNetPosEmbd

from physicsnemo_climax.config import load_config
from physicsnemo_climax.downscaling import generation, net_files, noise, sampling, write_mini_file
from physicsnemo_climax.downscaling.datasets import build_dataset
from physicsnemo_climax.errors import CheckpointError, ConfigError

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from physicsnemo.diffusion.generate import diffusion_step, regression_step
    from physicsnemo.diffusion.samplers import stochastic_sampler
    from physicsnemo.diffusion.utils.utils import StackedRandomGenerator
    from physicsnemo.experimental.models.diffusion import tEDMPrecondSuperRes

SHAPE = (16, 16)
C_IN, C_OUT = 6, 2  # write_mini_file: 4 coarse inputs + 2 invariants -> 2 outputs
TINY = dict(
    model_channels=8, channel_mult=[1, 2], channel_mult_emb=2, num_blocks=1, attn_resolutions=[8], dropout=0.0
)  # conf/base/model_size, shrunk
TRAIN_ARGS = dict(use_fp16=False, checkpoint_level=0, use_apex_gn=False, profile_mode=False)  # train.py adds these
UPSTREAM = {  # conf/base/model/<name>.yaml model_args, and train.py's img_in_channels for it
    "regression": (CorrDiffRegressionUNet, C_IN + 4, dict(N_grid_channels=4, embedding_type="zero")),
    "lt_aware_regression": (
        CorrDiffRegressionUNet,
        C_IN + 4 + 4,
        dict(
            N_grid_channels=4,
            embedding_type="zero",
            lead_time_channels=4,
            lead_time_steps=9,
            model_type="SongUNetPosLtEmbd",
        ),
    ),
    "lt_aware_ce_regression": (
        CorrDiffRegressionUNet,
        C_IN + 4 + 4,
        dict(  # prob_channels: gefs_hrrr's
            N_grid_channels=4,
            embedding_type="zero",
            lead_time_channels=4,
            lead_time_steps=9,
            model_type="SongUNetPosLtEmbd",
            prob_channels=[0, 1],
        ),
    ),
    "diffusion": (
        EDMPrecondSuperResolution,
        C_IN + C_OUT + 4,
        dict(gridtype="sinusoidal", N_grid_channels=4, embedding_type="zero"),
    ),
    "diffusion_no_mean": (
        EDMPrecondSuperResolution,
        C_IN + 4,
        dict(  # hr_mean_conditioning: false
            gridtype="sinusoidal", N_grid_channels=4, embedding_type="zero"
        ),
    ),
    "student_t_diffusion": (
        tEDMPrecondSuperRes,
        C_IN + C_OUT + 4,
        dict(  # training.hp.distribution=student_t
            gridtype="sinusoidal", N_grid_channels=4, embedding_type="zero", nu=10
        ),
    ),
    "lt_aware_patched_diffusion": (
        EDMPrecondSuperResolution,
        C_IN + C_OUT + C_IN + 100 + 20,
        dict(
            gridtype="learnable",
            N_grid_channels=100,
            lead_time_channels=20,
            lead_time_steps=9,
            model_type="SongUNetPosLtEmbd",
        ),
    ),
}


def upstream_net(name: str, seed: int = 0):
    """``name``'s net as upstream's train.py builds it, with weights moved off their (near-zero) init."""
    cls, channels, args = UPSTREAM[name]
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = cls(
            img_resolution=list(SHAPE), img_in_channels=channels, img_out_channels=C_OUT, **TRAIN_ARGS, **TINY, **args
        )
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net.eval()


def saved(net, path, **recorded):
    """``net.save(path)``; ``recorded`` edits args.json as a file trained with other settings would read."""
    net.save(str(path))
    if recorded:
        with zipfile.ZipFile(path) as archive:
            files = {n: archive.read(n) for n in archive.namelist()}
        args = json.loads(files["args.json"])
        args["__args__"].update(recorded)
        files["args.json"] = json.dumps(args).encode()
        with zipfile.ZipFile(path, "w") as archive:
            for name, data in files.items():
                archive.writestr(name, data)
    return path


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mini_ckpt")
    write_mini_file(
        folder / "mini.nc", folder / "stats.json", samples=3, shape=SHAPE, factor=4, invariant_shape=(24, 24)
    )
    return folder


def config(mini, reg, res, out="out.nc", *overrides):
    return load_config(
        [
            f"dataset.data_path={mini / 'mini.nc'}",
            f"dataset.stats_path={mini / 'stats.json'}",
            f"generation.io.reg_ckpt_filename={reg}",
            f"generation.io.res_ckpt_filename={res}",
            f"generation.io.output_filename={mini / out}",
            "generation.num_ensembles=2",
            "generation.seed_batch_size=2",
            "generation.times=null",
            "generation.max_times=2",
            "generation.sampler.num_steps=3",
            *overrides,
        ],
        "config_generate_hrrr_mini",
    )


@pytest.fixture(scope="module")
def data(mini):
    dataset = build_dataset(config(mini, "r", "d").dataset)
    x = torch.stack([dataset[i]["input"] for i in range(2)])
    return dataset, x


def run(reg, res, x, gen, labels=None, seeds=(0, 1)):
    """``downscale`` with ``gen``'s sampler, as generation runs it."""
    return generation.downscale(
        reg,
        res,
        x,
        [torch.tensor(seeds)],
        generation.build_sampler(gen, SHAPE),
        gen.hr_mean_conditioning,
        lead_time_label=labels,
    )


# ----------------------------------------------------------------------------- apex GroupNorm


def test_an_apex_trained_file_loads_without_apex_and_computes_the_same(mini, data, tmp_path, caplog):
    """A file saved with use_apex_gn=True (and AMP, profiling on) does not load plainly here;
    through the generation path it loads with torch GroupNorm and gives the net's own output."""
    reg, res = upstream_net("regression", 1), upstream_net("diffusion", 2)
    on = dict(use_apex_gn=True, amp_mode=True, profile_mode=True)
    reg_file, res_file = saved(reg, tmp_path / "reg.mdlus", **on), saved(res, tmp_path / "res.mdlus", **on)
    with pytest.raises(ValueError, match="apex"):
        Module.from_checkpoint(str(reg_file))  # the plain load fails on this machine
    gen = config(mini, reg_file, res_file).generation
    dataset, x = data
    with caplog.at_level(logging.INFO, logger=net_files.__name__):
        loaded = generation.load_stages(gen, dataset.domain, "cpu", dataset[0])
    assert "trained with apex GroupNorm; loading it with use_apex_gn=False" in caplog.text
    assert "amp_mode, profile_mode switched off" in caplog.text
    assert not loaded[0].model.use_apex_gn and not loaded[1].model.amp_mode
    mean, members = run(*loaded, x, gen)
    ref_mean, ref_members = run(reg, res, x, gen)
    assert mean.abs().mean() > 0.05 and (members - mean).abs().mean() > 0.05  # not a near-zero net
    torch.testing.assert_close(mean, ref_mean, rtol=0, atol=0)
    torch.testing.assert_close(members, ref_members, rtol=0, atol=0)


def test_apex_settings_are_kept_where_apex_runs_and_overrides_are_checked(tmp_path):
    args = {"use_apex_gn": True}
    assert net_files.automatic_overrides(args, apex=False) == {"use_apex_gn": False}
    assert net_files.automatic_overrides(args, apex=True) == {}
    assert net_files.automatic_overrides({"use_apex_gn": False}, apex=False) == {}
    file = saved(upstream_net("regression"), tmp_path / "reg.mdlus", use_apex_gn=True)
    with pytest.raises(CheckpointError, match="apex"):  # kept: PhysicsNeMo then builds apex GroupNorm
        net_files.load_net(file, "generation.io.reg_ckpt_filename", "regression", apex=True)
    net = net_files.load_net(file, "k", "regression", {"use_apex_gn": False}, apex=True)  # the user's say
    assert not net.model.use_apex_gn
    with pytest.raises(ConfigError, match=r"model_channels.*reg.mdlus.*allows \['act', 'use_apex_gn'\]"):
        net_files.load_net(file, "k", "regression", {"model_channels": 4})


def test_each_net_loads_once_with_the_plans_group_norm(mini, data, tmp_path, monkeypatch):
    """The run plan's apex GroupNorm is applied when a net is built: one load a net, never a reload."""
    from physicsnemo_climax.engine.plan import RunPlan
    from physicsnemo_climax.models import mdlus

    reg_file = saved(upstream_net("regression", 1), tmp_path / "reg.mdlus")
    res_file = saved(upstream_net("diffusion", 2), tmp_path / "res.mdlus")
    gen, (dataset, _) = config(mini, reg_file, res_file).generation, data
    real, calls = mdlus.load_module, []

    def counting(file, cls, override_args=None):
        calls.append((file.name, override_args))  # no apex here to build it with: the plain net stands in
        plain = {k: v for k, v in (override_args or {}).items() if k != "use_apex_gn"}
        return real(file, cls, override_args=plain or None)

    monkeypatch.setattr(mdlus, "load_module", counting)
    plan = RunPlan(apex_group_norm=True)
    for net in generation.load_stages(gen, dataset.domain, "cpu", dataset[0], plan):
        generation.prepare_net(net, plan)  # channels_last, no second load
    assert calls == [("reg.mdlus", {"use_apex_gn": True}), ("res.mdlus", {"use_apex_gn": True})]
    calls.clear()
    generation.load_stages(gen, dataset.domain, "cpu", dataset[0], RunPlan())
    assert calls == [("reg.mdlus", None), ("res.mdlus", None)]


# ----------------------------------------------------------------------------- lead time


def test_lead_time_aware_regression_and_patched_diffusion(mini, data, tmp_path):
    reg, res = upstream_net("lt_aware_regression", 3), upstream_net("lt_aware_patched_diffusion", 4)
    gen = config(
        mini,
        saved(reg, tmp_path / "reg.mdlus"),
        saved(res, tmp_path / "res.mdlus"),
        "out.nc",
        "generation=patched",
        "generation.patch_shape_x=8",
        "generation.patch_shape_y=8",
        "generation.overlap_pix=2",
        "generation.boundary_pix=1",
    ).generation
    dataset, x = data
    nets = generation.load_stages(gen, dataset.domain, "cpu", dataset[0])
    assert [net_files.lead_time_steps(n) for n in nets] == [9, 9]
    same = x[:1].expand(2, -1, -1, -1)  # one input at lead-time labels 3 and 7
    labels = torch.tensor([3, 7])
    mean, members = run(*nets, same, gen, labels)
    with torch.no_grad():
        direct = reg(torch.zeros(1, C_OUT, *SHAPE), same[:1], lead_time_label=torch.tensor([7]))
    torch.testing.assert_close(mean[1:], direct, rtol=0, atol=1e-6)
    assert (mean[0] - mean[1]).abs().mean() > 1e-3  # the label is used
    residual = members - mean[None]
    assert (residual[:, 0] - residual[:, 1]).abs().mean() > 1e-3  # same seeds and input: the label differs
    torch.testing.assert_close(members, run(reg, res, same, gen, labels)[1], rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"lead_time_label \[9\] outside the net's 9 lead-time steps"):
        run(*nets, same, gen, torch.tensor([3, 9]))


def test_a_lead_time_aware_probability_regression_gives_probabilities(mini, data, tmp_path):
    """model=lt_aware_ce_regression: the probability channels come out softmaxed (eval mode), per label."""
    reg = upstream_net("lt_aware_ce_regression", 8)
    gen = config(
        mini, saved(reg, tmp_path / "ce.mdlus"), "unused", "x.nc", "generation.inference_mode=regression"
    ).generation
    dataset, x = data
    nets = generation.load_stages(gen, dataset.domain, "cpu", dataset[0])
    mean, members = run(*nets, x, gen, torch.tensor([0, 8]))
    torch.testing.assert_close(mean.sum(dim=1), torch.ones(2, *SHAPE))
    assert mean.min() > 0 and (mean[:, 0] - 0.5).abs().mean() > 1e-3
    torch.testing.assert_close(members, mean[None].expand(2, -1, -1, -1, -1))
    with torch.no_grad():
        direct = reg(torch.zeros(1, C_OUT, *SHAPE), x[1:], lead_time_label=torch.tensor([8]))
    torch.testing.assert_close(mean[1:], direct, rtol=0, atol=1e-6)


def test_a_lead_time_aware_net_without_lead_times_is_an_error_naming_the_file(mini, tmp_path):
    reg_file = saved(upstream_net("lt_aware_regression"), tmp_path / "reg.mdlus")
    cfg = config(mini, reg_file, "unused", "x.nc", "generation.inference_mode=regression")
    with pytest.raises(
        ValueError,
        match=rf"generation.io.reg_ckpt_filename={reg_file}: a lead-time-aware net "
        r"\(9 lead-time steps\), but the input has no lead time",
    ):
        generation.generate(cfg)
    assert not (mini / "x.nc").exists()


def test_lead_time_labels_come_from_the_samples():
    assert net_files.sample_lead_time_labels([{"input": 0}, {"input": 1}]) is None
    labels = net_files.sample_lead_time_labels([{"lead_time_label": 2}, {"lead_time_label": torch.tensor([5])}])
    assert labels.tolist() == [2, 5] and labels.dtype == torch.long
    with pytest.raises(ValueError, match="some dataset samples carry a lead_time_label"):
        net_files.sample_lead_time_labels([{"lead_time_label": 2}, {}])


# ----------------------------------------------------------------------------- Student-t


def identity_sampler(net, latents, *args, **kwargs):
    return latents


def test_student_t_latents_equal_a_hand_written_sampler(tmp_path):
    net = net_files.load_net(saved(upstream_net("student_t_diffusion"), tmp_path / "t.mdlus"), "k", "diffusion")
    assert noise.student_t_nu(net) == 10
    img_lr = torch.zeros(2, C_IN, *SHAPE)
    drawn = torch.cat(
        [
            sampling.sample_members(identity_sampler, net, torch.tensor(b), img_lr[: len(b)], img_lr[: len(b)])
            for b in [[3, 4], [5]]
        ]
    )
    expected, gaussian = [], []
    for seed in (3, 4, 5):  # eps ~ N(0, 1), then kappa = chi2_10 / 10 from the same seed
        g = torch.Generator().manual_seed(seed)
        eps = torch.randn(C_OUT, *SHAPE, generator=g)
        gaussian.append(eps)
        expected.append(eps / (torch.randn(10, generator=g).double().square().sum() / 10).sqrt().float())
    torch.testing.assert_close(drawn, torch.stack(expected), rtol=1e-6, atol=1e-6)
    drawn = sampling.sample_members(
        identity_sampler, upstream_net("diffusion"), torch.tensor([3, 4, 5]), img_lr, img_lr
    )
    torch.testing.assert_close(drawn, torch.stack(gaussian), rtol=0, atol=0)  # a Gaussian net: the normal draws


class Unscaled(torch.nn.Module):
    """The net called on a clone of sigma (tEDMPrecondSuperRes scales its argument in place)."""

    def __init__(self, net):
        super().__init__()
        self.net, self.sigma_min, self.sigma_max = net, net.sigma_min, net.sigma_max

    def round_sigma(self, sigma):
        return self.net.round_sigma(sigma)

    def forward(self, x, img_lr, sigma, *args, **kwargs):
        return self.net(x, img_lr, sigma.clone(), *args, **kwargs)


def test_a_student_t_net_sees_the_samplers_noise_levels_scaled(tmp_path, monkeypatch):
    """The EDM Heun schedule t_0 > t_1 > t_2 (then 0) reaches the t-EDM net's preconditioner as
    t * sqrt(nu / (nu - 2)), as the file class's own forward scales it, and the sampler keeps its
    own schedule."""
    net = net_files.load_net(saved(upstream_net("student_t_diffusion"), tmp_path / "t.mdlus"), "k", "diffusion")
    seen, parent = [], EDMPreconditioner.forward

    def recording(self, x, t, *args, **kwargs):
        seen.append(float(t[0]))
        return parent(self, x, t, *args, **kwargs)

    monkeypatch.setattr(EDMPreconditioner, "forward", recording)
    img_lr = torch.zeros(1, C_IN, *SHAPE)
    condition = torch.zeros(1, C_OUT + C_IN, *SHAPE)
    sampling.sample_members(sampling.EDMSampler("stochastic", 3), net, torch.tensor([0]), condition, img_lr)
    rho, lo, hi = 7, 0.002, 800
    t = [(hi ** (1 / rho) + i / 2 * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho for i in range(3)]
    calls = [t[0], t[1], t[1], t[2], t[2]]  # Heun: a second call at t_next except after the last step
    # the Heun solver reaches t_next as t_cur + (t_next - t_cur) in float32: off by t_cur's rounding
    np.testing.assert_allclose(seen, np.array(calls) * np.sqrt(10 / 8), rtol=1e-5, atol=4e-6)


def test_student_t_latents_have_the_student_t_spread_and_tails():
    nu, n = 10, 20000
    rnd = StackedRandomGenerator(torch.device("cpu"), range(n))
    t = noise.student_t_latents(rnd.randn((n, 1, 1, 1)), rnd.randn_like, nu).double().reshape(-1)
    variance = t.var().item()
    kurtosis = ((t - t.mean()) ** 4).mean().item() / variance**2
    assert abs(variance - nu / (nu - 2)) < 0.06  # 1.25; Gaussian latents give 1
    assert 3.4 < kurtosis < 5.0  # 3 + 6 / (nu - 4) = 4; Gaussian latents give 3


def test_a_student_t_checkpoint_generates_with_student_t_noise(mini, tmp_path):
    reg, res = upstream_net("regression", 5), upstream_net("student_t_diffusion", 6)
    cfg = config(
        mini, saved(reg, tmp_path / "reg.mdlus"), saved(res, tmp_path / "t.mdlus"), "t.nc", "generation.max_times=1"
    )
    out = generation.generate(cfg)
    dataset = build_dataset(cfg.dataset)
    x = dataset[0]["input"][None]
    with torch.no_grad():
        mean = regression_step(reg, x, (2, C_OUT, *SHAPE))
        rnd = StackedRandomGenerator(torch.device("cpu"), [0, 1])
        eps = rnd.randn((2, C_OUT, *SHAPE))
        kappa = rnd.randn((2, 10)).double().square().sum(1) / 10
        latents = {"student_t": eps / kappa.sqrt().float().view(-1, 1, 1, 1), "normal": eps}
        members = {
            k: mean[:1]
            + stochastic_sampler(
                Unscaled(res), v, x.expand(2, -1, -1, -1), randn_like=rnd.randn_like, mean_hr=mean[:1], num_steps=3
            ).float()
            for k, v in latents.items()
        }
    got = xr.open_dataset(out, group="prediction")
    written = np.stack([got[v].values[:, 0] for v in dataset.domain.output_variables], axis=1)
    expected = dataset.domain.denormalize_output(members["student_t"]).numpy()
    np.testing.assert_allclose(written, expected, rtol=1e-4, atol=1e-4)
    gaussian = dataset.domain.denormalize_output(members["normal"]).numpy()
    assert np.abs(written - gaussian).mean() > 1e-2


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["generation.distribution=normal"], "is a Student-t tEDMPrecondSuperRes \\(nu=10\\)"),
        (["generation.student_t_nu=5"], "student_t_nu=5: .* was trained with nu=10"),
        (["generation.distribution=gamma"], "choose normal or student_t"),
    ],
)
def test_student_t_asks_that_contradict_the_net_are_errors(mini, data, tmp_path, overrides, match):
    gen = config(
        mini,
        saved(upstream_net("regression"), tmp_path / "r.mdlus"),
        saved(upstream_net("student_t_diffusion"), tmp_path / "t.mdlus"),
        "x.nc",
        *overrides,
    )
    with pytest.raises(ConfigError, match=match):
        generation.load_stages(gen.generation, data[0].domain, "cpu")


def test_student_t_sampling_of_a_gaussian_net_is_refused(mini, data, tmp_path):
    gen = config(
        mini,
        "unused",
        saved(upstream_net("diffusion_no_mean"), tmp_path / "d.mdlus"),
        "x.nc",
        "generation.inference_mode=diffusion",
        "generation.hr_mean_conditioning=false",
        "generation.distribution=student_t",
    ).generation
    with pytest.raises(ConfigError, match="is a Gaussian EDMPrecondSuperResolution; Student-t sampling needs"):
        generation.load_stages(gen, data[0].domain, "cpu")


# ----------------------------------------------------------------------------- inference_mode=diffusion


def test_diffusion_only_generation_writes_the_diffusion_output(mini, tmp_path):
    res = upstream_net("diffusion_no_mean", 7)
    cfg = load_config(
        [
            f"dataset.data_path={mini / 'mini.nc'}",
            f"dataset.stats_path={mini / 'stats.json'}",
            f"generation.io.res_ckpt_filename={saved(res, tmp_path / 'd.mdlus')}",
            f"generation.io.output_filename={tmp_path / 'd.nc'}",
            "generation.inference_mode=diffusion",
            "generation.hr_mean_conditioning=false",
            "generation.num_ensembles=2",
            "generation.seed_batch_size=1",
            "generation.max_times=1",
            "generation.times=null",
            "generation.sampler.num_steps=2",
        ],
        "config_generate_hrrr_mini",
    )  # no regression file
    out = generation.generate(cfg)
    dataset = build_dataset(cfg.dataset)
    x = dataset[0]["input"][None]
    sampler = functools.partial(stochastic_sampler, num_steps=2)  # upstream's sampler, as the reference
    with torch.no_grad():
        residual = diffusion_step(
            res, sampler, SHAPE, C_OUT, [torch.tensor([0]), torch.tensor([1])], x, 0, torch.device("cpu")
        )
    written = xr.open_dataset(out, group="prediction")
    expected = dataset.domain.denormalize_output(residual.float()).numpy()
    for k, v in enumerate(dataset.domain.output_variables):
        np.testing.assert_allclose(written[v].values[:, 0], expected[:, k], rtol=1e-4, atol=1e-4)
    with pytest.raises(OSError):
        xr.open_dataset(out, group="regression")


def test_diffusion_only_needs_a_net_without_mean_conditioning(mini, data, tmp_path):
    with_mean = saved(upstream_net("diffusion"), tmp_path / "d.mdlus")
    gen = config(mini, "unused", with_mean, "x.nc", "generation.inference_mode=diffusion").generation
    with pytest.raises(ConfigError, match="set generation.hr_mean_conditioning=false"):
        generation.load_stages(gen, data[0].domain, "cpu")
    gen = config(
        mini,
        "unused",
        with_mean,
        "x.nc",
        "generation.inference_mode=diffusion",
        "generation.hr_mean_conditioning=false",
    ).generation
    with pytest.raises(ValueError, match=r"d.mdlus: conditioned on 8 channels, but .* give 6"):
        generation.load_stages(gen, data[0].domain, "cpu")
    with pytest.raises(ConfigError, match="inference_mode='mean': choose one of"):
        generation.load_stages(
            config(mini, "r", "d", "x.nc", "generation.inference_mode=mean").generation, data[0].domain, "cpu"
        )


# ----------------------------------------------------------------------------- what is refused


def test_unsupported_classes_and_backbones_are_named(mini, data, tmp_path):
    dataset = data[0]
    song = SongUNetPosEmbd(img_resolution=list(SHAPE), in_channels=C_IN + 4, out_channels=C_OUT, **TINY)
    bare = saved(song, tmp_path / "song.mdlus")
    reg = saved(upstream_net("regression"), tmp_path / "reg.mdlus")
    dhariwal = saved(upstream_net("diffusion"), tmp_path / "dh.mdlus", model_type="DhariwalUNet")
    cases = [
        (bare, reg, "reg_ckpt_filename=.*song.mdlus: class SongUNetPosEmbd is not supported"),
        (
            reg,
            reg,
            "res_ckpt_filename=.*reg.mdlus: CorrDiffRegressionUNet is a regression net, this key needs a diffusion net",
        ),
        (reg, dhariwal, r"dh.mdlus: EDMPrecondSuperResolution\(model_type='DhariwalUNet'\) is not supported"),
    ]
    for reg_file, res_file, match in cases:
        with pytest.raises(ConfigError, match=match):
            generation.load_stages(config(mini, reg_file, res_file).generation, dataset.domain, "cpu")
    (tmp_path / "junk.mdlus").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.mdlus: not a PhysicsNeMo .mdlus checkpoint"):
        net_files.load_net(tmp_path / "junk.mdlus", "generation.io.reg_ckpt_filename", "regression")
