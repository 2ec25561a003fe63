# SPDX-License-Identifier: Apache-2.0
"""Upstream CorrDiff command lines: each key lands on its equivalent or is refused naming it;
upstream's batch semantics (total_batch_size, training_duration); CorrDiff runs keep every checkpoint."""

import logging
import re
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf, open_dict
from physicsnemo.models.mlp import FullyConnected

from physicsnemo_climax.config import load_config
from physicsnemo_climax.downscaling.upstream_keys import UPSTREAM_KEYS, apply, translate
from physicsnemo_climax.engine import checkpointing
from physicsnemo_climax.engine.checks import check_train, split_batch
from physicsnemo_climax.errors import ConfigError

DOCS = Path(__file__).resolve().parents[1] / "docs" / "corrdiff.md"
TRAIN, DIFFUSION, GENERATE = (
    "config_training_hrrr_mini_regression",
    "config_training_hrrr_mini_diffusion",
    "config_generate_hrrr_mini",
)

#: One upstream override per mapped key: (config, extra overrides, upstream override, key here, value here).
LANDINGS = [
    (TRAIN, [], "++training.hp.training_duration=1000000", "train.training_duration", 1000000),
    (TRAIN, [], "++training.hp.total_batch_size=64", "train.total_batch_size", 64),
    (TRAIN, [], "++training.hp.batch_size_per_gpu=8", "train.batch_size", 8),
    (TRAIN, [], "++training.hp.batch_size_per_gpu=auto", "train.batch_size", "auto"),
    (TRAIN, [], "++training.hp.lr=0.0001", "train.lr", 1e-4),
    (TRAIN, ["train.warmup_steps=5"], "++training.hp.lr_rampup=0", "train.warmup_steps", 0),
    (TRAIN, ["train.min_lr_ratio=0.1"], "++training.hp.lr_decay=1", "train.min_lr_ratio", 1.0),
    (TRAIN, [], "++training.hp.grad_clip_threshold=1e6", "train.clip_grad", 1e6),
    (TRAIN, ["train.clip_grad=3"], "++training.hp.grad_clip_threshold=null", "train.clip_grad", 0.0),
    (DIFFUSION, ["model=patched_diffusion"], "++training.hp.patch_shape_x=16", "model.patch_shape_x", 16),
    (DIFFUSION, ["model=patched_diffusion"], "++training.hp.patch_shape_y=24", "model.patch_shape_y", 24),
    (DIFFUSION, ["model=patched_diffusion"], "++training.hp.patch_num=3", "model.patch_num", 3),
    (DIFFUSION, [], "++training.hp.P_mean=-1.2", "model.P_mean", -1.2),
    (DIFFUSION, [], "++training.hp.P_std=1.5", "model.P_std", 1.5),
    (DIFFUSION, [], "++training.hp.distribution=student_t", "model.distribution", "student_t"),
    (DIFFUSION, [], "++training.hp.student_t_nu=10", "model.student_t_nu", 10),
    (TRAIN, [], "++training.perf.fp_optimizations=amp-bf16", "train.precision", "bf16"),
    (TRAIN, ["train.precision=bf16"], "++training.perf.fp_optimizations=fp32", "train.precision", "fp32"),
    (TRAIN, [], "++training.perf.dataloader_workers=3", "train.num_workers", 3),
    (TRAIN, [], "++training.perf.torch_compile=true", "train.compile", True),
    (TRAIN, [], "++training.perf.use_apex_gn=false", "model.use_apex_gn", False),
    (
        DIFFUSION,
        [],
        "++training.io.regression_checkpoint_path=/runs/reg",
        "model.regression_checkpoint_path",
        "/runs/reg",
    ),
    (TRAIN, [], "++training.io.validation_steps=7", "train.val_batches", 7),
    (TRAIN, [], "++training.io.save_n_recent_checkpoints=3", "train.keep_checkpoints", 3),
    (TRAIN, ["train.keep_checkpoints=2"], "++training.io.save_n_recent_checkpoints=-1", "train.keep_checkpoints", None),
    (GENERATE, [], "sampler=deterministic", "generation.sampler.type", "deterministic"),
    (GENERATE, [], "++sampler.type=deterministic", "generation.sampler.type", "deterministic"),
    (GENERATE, [], "++sampler.num_steps=32", "generation.sampler.num_steps", 32),
    (GENERATE, ["sampler=deterministic"], "++sampler.solver=heun", "generation.sampler.solver", "heun"),
    (GENERATE, [], "++generation.perf.use_fp16=true", "generation.precision", "fp16"),
    (GENERATE, [], "++generation.perf.use_torch_compile=true", "generation.compile", True),
    (GENERATE, [], "++generation.perf.use_apex_gn=true", "generation.use_apex_gn", True),
]


def docs_table() -> dict:
    """``{upstream key: key here or None}`` from the table in docs/corrdiff.md."""
    text = DOCS.read_text()
    block = text.split("<!-- upstream keys:")[1].split("<!-- end of upstream keys -->")[0]
    rows = {}
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue
        here = re.match(r"`([^`]+)`", cells[1])
        rows[cells[0].strip("`")] = here.group(1) if here else None
    return rows


def test_the_docs_table_and_the_code_table_agree():
    assert docs_table() == {k: v.here for k, v in UPSTREAM_KEYS.items()}


def test_every_mapped_key_has_a_landing_checked_here():
    mapped = {k for k, v in UPSTREAM_KEYS.items() if v.here is not None}
    landed = {re.split(r"=", o)[0].lstrip("+") for _, _, o, _, _ in LANDINGS}
    assert mapped == landed


@pytest.mark.parametrize("name, extra, override, here, want", LANDINGS, ids=[o for _, _, o, _, _ in LANDINGS])
def test_each_upstream_key_lands_on_its_equivalent(name, extra, override, here, want, caplog):
    with caplog.at_level(logging.WARNING, logger="physicsnemo_climax.downscaling.upstream_keys"):
        overrides = translate(extra + [override])
    key = override.split("=")[0].lstrip("+")
    assert f"upstream key {key}=" in caplog.text and f"is read as {UPSTREAM_KEYS[key].here}=" in caplog.text
    base = load_config(translate(extra), name)
    parent = here.rpartition(".")[0]
    if here.rpartition(".")[2] not in OmegaConf.select(base, parent).keys():  # a key generation lacks (yet)
        with pytest.raises(ConfigError, match=re.escape(here)):
            load_config(overrides, name)
        return
    assert OmegaConf.select(load_config(overrides, name), here) == want
    assert OmegaConf.select(base, here) != want  # the override changed something


REFUSED = [k for k, v in UPSTREAM_KEYS.items() if v.here is None]


@pytest.mark.parametrize("key", REFUSED)
def test_a_key_without_equivalent_is_refused_naming_it_and_what_to_set(key):
    override = f"++{key}=1" if key not in ("training", "wandb") else f"{key}=regression"
    with pytest.raises(ConfigError) as err:
        translate([override])
    assert key in str(err.value) and UPSTREAM_KEYS[key].note in str(err.value)


@pytest.mark.parametrize(
    "override, words",
    [
        ("++training.hp.lr_decay=0.7", ["training.hp.lr_decay=0.7", "train.min_lr_ratio"]),
        ("++training.hp.lr_rampup=1000", ["training.hp.lr_rampup=1000", "train.warmup_steps"]),
        ("++training.perf.fp_optimizations=fp16", ["fp_optimizations='fp16'", "train.precision"]),
        ("++training.hp.momentum=0.9", ["training.hp.momentum", "docs/corrdiff.md"]),
        ("+sampler.churn=0.1", ["sampler.churn"]),
        ("++wandb.mode=offline", ["wandb.mode", "train.mlflow"]),
        ("++generation.perf.batch=3", ["generation.perf.batch"]),
        ("~training.hp.lr", ["training.hp.lr", "deleting"]),
    ],
)
def test_values_and_keys_without_equivalent_are_errors_naming_them(override, words):
    with pytest.raises(ConfigError) as err:
        translate([override])
    assert all(w in str(err.value) for w in words), str(err.value)


def test_other_keys_pass_unchanged():
    items = ["dataset.data_path=a.nc", "generation.num_ensembles=4", "train.lr=0.1", "model=diffusion"]
    assert translate(items) == items


def test_hydra_entry_points_move_added_upstream_sections():
    cfg = load_config([], TRAIN)
    with open_dict(cfg):  # what hydra.main makes of ++training.hp.lr=0.001 ++training.io.validation_steps=3
        cfg.training = {"hp": {"lr": 0.001}, "io": {"validation_steps": 3}}
    apply(cfg)
    assert cfg.train.lr == 0.001 and cfg.train.val_batches == 3 and "training" not in cfg
    with open_dict(cfg):
        cfg.training = {"io": {"save_checkpoint_freq": 5000}}
    with pytest.raises(ConfigError, match="training.io.save_checkpoint_freq.*train.ckpt_every"):
        apply(cfg)


# ---------------------------------------------------------------- batch semantics
def train_section(**values):
    return OmegaConf.create(
        {"steps": 100, "batch_size": 32, "grad_accum": 5, "total_batch_size": None, "training_duration": None, **values}
    )


@pytest.mark.parametrize(
    "world, batch, want_batch, want_accum",
    [(1, 32, 32, 8), (4, 32, 32, 2), (4, "auto", 64, 1), (8, 64, 32, 1), (2, 16, 16, 8)],
)
def test_total_batch_size_sets_grad_accum_for_the_world_size(world, batch, want_batch, want_accum):
    t = train_section(total_batch_size=256, batch_size=batch)
    split_batch(t, world)
    assert (t.batch_size, t.grad_accum) == (want_batch, want_accum)
    assert t.batch_size * t.grad_accum * world == 256


def test_without_total_batch_size_nothing_changes():
    t = train_section()
    split_batch(t, 4)
    assert (t.batch_size, t.grad_accum, t.steps) == (32, 5, 100)


def test_a_total_that_does_not_split_is_an_error_naming_the_keys():
    with pytest.raises(ConfigError, match=r"train.total_batch_size=100 .* train.batch_size=32 x 1 rank"):
        split_batch(train_section(total_batch_size=100), 1)
    with pytest.raises(ConfigError, match=r"train.total_batch_size=3 .* 4 ranks"):
        split_batch(train_section(total_batch_size=3), 4)


def test_training_duration_in_samples_sets_the_steps():
    t = train_section(total_batch_size=256, training_duration=1000)
    split_batch(t, 4)
    assert t.steps == 4  # ceil(1000 / 256)
    t = train_section(training_duration=640)  # 32 x 5 x 2 = 320 samples per step
    split_batch(t, 2)
    assert t.steps == 2


def test_check_train_takes_auto_only_with_a_total():
    cfg = load_config(["train.batch_size=auto", "train.total_batch_size=256"], TRAIN)
    check_train(cfg.train)
    with pytest.raises(ConfigError, match="train.batch_size='auto'.*train.total_batch_size"):
        check_train(load_config(["train.batch_size=auto"], TRAIN).train)
    with pytest.raises(ConfigError, match="train.total_batch_size=0"):
        check_train(load_config(["train.total_batch_size=0"], TRAIN).train)


# ---------------------------------------------------------------- checkpoints
def test_corrdiff_runs_keep_every_checkpoint_and_climax_runs_the_latest_two():
    assert load_config([], TRAIN).train.keep_checkpoints is None
    assert load_config([], DIFFUSION).train.keep_checkpoints is None
    assert load_config([]).train.keep_checkpoints == 2
    check_train(load_config([], TRAIN).train)


@pytest.mark.parametrize("keep, left", [(None, [1, 2, 3, 4]), (2, [3, 4])])
def test_save_keeps_all_or_the_latest(tmp_path, keep, left):
    model = FullyConnected(in_features=2, out_features=1, num_layers=1, layer_size=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in (1, 2, 3, 4):
        checkpointing.save(tmp_path, model, optimizer, None, None, step, {}, keep=keep)
    assert checkpointing.checkpoint_steps(tmp_path) == left


# ---------------------------------------------------------------- through the command line
def test_the_downscale_command_reads_upstream_keys(monkeypatch, capsys):
    from physicsnemo_climax import cli
    from physicsnemo_climax.downscaling import training

    seen = {}
    monkeypatch.setattr(training, "train", lambda cfg: seen.setdefault("cfg", cfg) and "run")
    cli.main(
        [
            "downscale",
            "train",
            "--config-name",
            DIFFUSION,
            "++training.hp.batch_size_per_gpu=4",
            "++training.hp.total_batch_size=64",
            "++training.io.regression_checkpoint_path=/runs/reg",
        ]
    )
    cfg = seen["cfg"]
    assert (cfg.train.batch_size, cfg.train.total_batch_size) == (4, 64)
    assert cfg.model.regression_checkpoint_path == "/runs/reg"
    with pytest.raises(SystemExit):
        cli.main(["downscale", "train", "++training.io.save_checkpoint_freq=5000"])
    assert "training.io.save_checkpoint_freq" in capsys.readouterr().err


# ---------------------------------------------------------------- upstream's Taiwan configs
def test_the_taiwan_configs_carry_upstreams_settings():
    reg = load_config([], "config_training_taiwan_regression")
    assert reg.dataset.type == "cwb" and reg.model.name == "regression" and reg.model_size.model_channels == 128
    assert reg.validation.train is False and reg.train.keep_checkpoints is None
    t = reg.train.copy()
    split_batch(t, 4)
    assert (t.batch_size, t.grad_accum, t.steps) == (64, 1, 781250)  # 200M samples / 256 per step
    dif = load_config(["model.regression_checkpoint_path=/runs/reg"], "config_training_taiwan_diffusion")
    assert dif.model.name == "diffusion" and dif.model.hr_mean_conditioning is False
    assert dif.dataset.type == "cwb" and dif.train.training_duration == 200_000_000
    gen = load_config([], "config_generate_taiwan")
    assert gen.dataset.all_times and not gen.dataset.train and gen.generation.num_ensembles == 64
