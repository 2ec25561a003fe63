# SPDX-License-Identifier: Apache-2.0
"""Parameter-efficient fine-tuning: frozen parameters do not change, per-pattern learning
rates reach the optimizer, bad patterns are errors naming them."""

import pytest
import torch
from conftest import tiny_climax
from physicsnemo.core import Module
from test_recipes import config, store  # noqa: F401 -- the store fixture

from physicsnemo_climax.engine import checkpointing, optim
from physicsnemo_climax.errors import ConfigError
from physicsnemo_climax.tasks import train


def weights(run_dir):
    return Module.from_checkpoint(str(checkpointing.model_file(run_dir / "checkpoints"))).state_dict()


def test_frozen_parameters_keep_their_values_and_the_others_train(store, tmp_path):  # noqa: F811
    base = train(config(store, tmp_path / "base", "task=finetune_global", "task.lead_hours=6"))
    init = checkpointing.model_file(base / "checkpoints")
    tuned = train(config(store, tmp_path / "tuned", "task=finetune_global", "task.lead_hours=6", f"init={init}",
                         "train.freeze=[blocks.*,pos_embed]", "train.lr_scale=[[head.*,5.0]]"))
    before, after = weights(base), weights(tuned)
    frozen = [k for k in before if k.startswith("blocks.") or k == "pos_embed"]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    trained = [k for k in before if k.startswith("head.")]
    assert trained and all(not torch.equal(before[k], after[k]) for k in trained if k.endswith("weight"))
    with pytest.raises(ConfigError, match="'blocs.\\*' matches no parameter"):
        train(config(store, tmp_path / "typo", "task=finetune_global", "task.lead_hours=6",
                     "train.freeze=[blocs.*]"))


def test_learning_rate_scales_make_their_own_groups():
    model = tiny_climax()
    opt = optim.build_optimizer(model, 1e-3, 0.05, (0.9, 0.95), "none", [["token_embeds.*", 10.0], ["head.*", 0.5]])
    names = {id(p): n for n, p in model.named_parameters()}
    by_lr = {}
    for group in opt.param_groups:
        for p in group["params"]:
            by_lr[names[id(p)]] = (group["lr"], group["weight_decay"])
    assert by_lr["token_embeds.0.proj.weight"] == (pytest.approx(1e-2), 0.05)
    assert all(lr == pytest.approx(5e-4) for n, (lr, _) in by_lr.items() if n.startswith("head."))
    assert by_lr["blocks.0.attn.qkv.weight"] == (pytest.approx(1e-3), 0.05)
    assert by_lr["blocks.0.attn.qkv.bias"] == (pytest.approx(1e-3), 0.0)
    assert len(by_lr) == len(list(model.parameters()))
    optim.freeze(model, ["blocks.*"])
    assert not any(p.requires_grad for n, p in model.named_parameters() if n.startswith("blocks."))
    with pytest.raises(ConfigError, match="freezes every parameter"):
        optim.freeze(model, ["*"])


def test_learning_rate_scales_as_a_mapping_or_pairs_and_bad_ones_named():
    assert optim.scale_rules({"head.*": 2}) == optim.scale_rules([["head.*", 2.0]]) == {"head.*": 2.0}
    with pytest.raises(ConfigError, match="not a \\[pattern, factor\\] pair"):
        optim.scale_rules([["head.*"]])
    with pytest.raises(ConfigError, match="must be positive"):
        optim.scale_rules([["head.*", 0]])
