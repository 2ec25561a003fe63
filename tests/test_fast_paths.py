# SPDX-License-Identifier: Apache-2.0
"""Optimizer groups, schedule, precision and fused-kernel selection."""

import math

import pytest
import torch
from conftest import tiny_climax

from physicsnemo_climax.config import load_config
from physicsnemo_climax.engine import optim
from physicsnemo_climax.engine.checks import ConfigError
from physicsnemo_climax.engine.environment import Feature, probe
from physicsnemo_climax.engine.plan import MissingFeature, resolve


def test_no_weight_decay_on_embeddings_norms_and_biases():
    model = tiny_climax()
    decay, no_decay = optim.parameter_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    undecayed = {names[id(p)] for p in no_decay["params"]}
    assert {
        "pos_embed",
        "var_embed",
        "var_query",
        "lead_time_embed.weight",
        "norm.weight",
        "blocks.0.norm1.weight",
        "blocks.0.attn.qkv.bias",
    } <= undecayed
    decayed = {names[id(p)] for p in decay["params"]}
    assert "blocks.0.attn.qkv.weight" in decayed and "token_embeds.0.proj.weight" in decayed
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert len(decayed) + len(undecayed) == len(list(model.parameters()))


def test_warmup_then_cosine():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1.0)
    sched = optim.build_scheduler(opt, warmup_steps=4, total_steps=14, min_lr_ratio=0.1)
    lrs = []
    for _ in range(14):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1 / 5) and lrs[3] == pytest.approx(4 / 5)
    assert lrs[4] == pytest.approx(1.0)
    # cosine from 1 to 0.1 over 10 steps: halfway is 0.55
    assert lrs[9] == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi * 5 / 10)) / 2)


def cpu_machine(**features):
    env = probe()
    for name, ok in {"gpu": False, "fp16": False, **features}.items():
        env.features[name] = Feature(name, ok, "faked by the test")
    return env


def test_apex_requested_without_apex_fails_early():
    env = cpu_machine(apex_adam=False, apex_layer_norm=False)
    with pytest.raises(MissingFeature, match="apex"):
        resolve(load_config(["train.fused=apex"]), env)
    assert resolve(load_config(["train.fused=auto"]), env).fused == "torch"
    with pytest.raises(ConfigError, match="fused"):
        resolve(load_config(["train.fused=turbo"]), env)


def test_precision_contexts():
    cpu, env = torch.device("cpu"), cpu_machine()
    with resolve(load_config(["train.precision=bf16"]), env).autocast(cpu):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with resolve(load_config([]), env).autocast(cpu):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with pytest.raises(MissingFeature, match="fp16 autocast with GradScaler needs a CUDA GPU"):
        resolve(load_config(["train.precision=fp16"]), env)
    with pytest.raises(ConfigError, match="precision"):
        resolve(load_config(["train.precision=fp8"]), env)
    assert "torch AdamW" in resolve(load_config([]), env).describe(cpu)
