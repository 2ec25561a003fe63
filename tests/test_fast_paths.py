# SPDX-License-Identifier: Apache-2.0
"""Optimizer groups, schedule, precision and fused-kernel selection."""

import math

import pytest
import torch
from conftest import tiny_climax

from physicsnemo_climax.engine import fast_paths


def test_no_weight_decay_on_embeddings_norms_and_biases():
    model = tiny_climax()
    decay, no_decay = fast_paths.parameter_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    undecayed = {names[id(p)] for p in no_decay["params"]}
    assert {"pos_embed", "var_embed", "var_query", "lead_time_embed.weight", "norm.weight",
            "blocks.0.norm1.weight", "blocks.0.attn.qkv.bias"} <= undecayed
    decayed = {names[id(p)] for p in decay["params"]}
    assert "blocks.0.attn.qkv.weight" in decayed and "token_embeds.0.proj.weight" in decayed
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert len(decayed) + len(undecayed) == len(list(model.parameters()))


def test_warmup_then_cosine():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1.0)
    sched = fast_paths.build_scheduler(opt, warmup_steps=4, total_steps=14, min_lr_ratio=0.1)
    lrs = []
    for _ in range(14):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1 / 5) and lrs[3] == pytest.approx(4 / 5)
    assert lrs[4] == pytest.approx(1.0)
    # cosine from 1 to 0.1 over 10 steps: halfway is 0.55
    assert lrs[9] == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi * 5 / 10)) / 2)


def test_apex_requested_without_apex_fails_early():
    if fast_paths.apex_available():
        pytest.skip("apex present")
    with pytest.raises(RuntimeError, match="apex"):
        fast_paths.resolve_fused("apex")
    assert fast_paths.resolve_fused("auto") == "torch"
    with pytest.raises(ValueError, match="fused"):
        fast_paths.resolve_fused("turbo")


def test_precision_contexts():
    cpu = torch.device("cpu")
    with fast_paths.autocast(cpu, "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with pytest.raises(RuntimeError, match="fp16 needs a CUDA"):
        fast_paths.autocast(cpu, "fp16")
    with pytest.raises(ValueError, match="precision"):
        fast_paths.autocast(cpu, "fp8")
    assert "torch AdamW" in fast_paths.describe("torch", "fp32", cpu, False)
