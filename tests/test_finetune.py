# SPDX-License-Identifier: Apache-2.0
"""Parameter-efficient fine-tuning: frozen parameters do not change, per-pattern learning
rates reach the optimizer, bad patterns are errors naming them."""

import pytest
import torch
from conftest import tiny_climax
from physicsnemo.core import Module
from test_recipes import config, store, train_killed_during  # noqa: F401 -- the store fixture

from physicsnemo_climax.engine import checkpointing, optim
from physicsnemo_climax.errors import ConfigError
from physicsnemo_climax.tasks import train


def weights(run_dir):
    return Module.from_checkpoint(str(checkpointing.model_file(run_dir / "checkpoints"))).state_dict()


def test_frozen_parameters_keep_their_values_and_the_others_train(store, tmp_path):  # noqa: F811
    base = train(config(store, tmp_path / "base", "task=finetune_global", "task.lead_hours=6"))
    init = checkpointing.model_file(base / "checkpoints")
    tuned = train(
        config(
            store,
            tmp_path / "tuned",
            "task=finetune_global",
            "task.lead_hours=6",
            f"init={init}",
            "train.freeze=[blocks.*,pos_embed]",
            "train.lr_scale=[[head.*,5.0]]",
        )
    )
    before, after = weights(base), weights(tuned)
    frozen = [k for k in before if k.startswith("blocks.") or k == "pos_embed"]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    trained = [k for k in before if k.startswith("head.")]
    assert trained and all(not torch.equal(before[k], after[k]) for k in trained if k.endswith("weight"))
    with pytest.raises(ConfigError, match="'blocs.\\*' matches no parameter"):
        train(config(store, tmp_path / "typo", "task=finetune_global", "task.lead_hours=6", "train.freeze=[blocs.*]"))


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


def test_lora_merged_and_unmerged_models_agree_and_the_merge_is_plain():
    from physicsnemo_climax.engine.lora import add_lora, lora_layers, merged_copy

    torch.manual_seed(0)
    model = tiny_climax().eval()
    x, lead = torch.randn(2, len(model.variables), *model.img_size), torch.tensor([6.0, 24.0])
    before = model(x, lead, model.variables)
    wrapped = add_lora(model, rank=2, alpha=4.0)
    assert wrapped and torch.allclose(model(x, lead, model.variables), before)  # B = 0: the base model
    for layer in lora_layers(model).values():
        torch.nn.init.normal_(layer.lora_b)
    plain = merged_copy(model)
    assert not lora_layers(plain) and set(plain.state_dict()) == set(tiny_climax().state_dict())
    assert torch.allclose(plain(x, lead, model.variables), model(x, lead, model.variables), atol=1e-5)
    with pytest.raises(ConfigError, match="matches no linear layer"):
        add_lora(tiny_climax(), ["blocks.*.attn.qkvv"])


def val_losses(run_dir):
    import pandas as pd

    rows = pd.read_csv(run_dir / "metrics.csv", names=["step", "key", "value"])
    return rows[rows.key == "val/loss"].value.to_numpy()


def test_lora_fine_tune_trains_only_adapters_saves_plain_weights_and_resumes(store, tmp_path, monkeypatch):  # noqa: F811
    base = train(config(store, tmp_path / "base", "task=finetune_global", "task.lead_hours=6"))
    init = checkpointing.model_file(base / "checkpoints")
    lora = [
        "task=finetune_global",
        "task.lead_hours=24",
        f"init={init}",
        "train.lora.rank=4",
        "train.freeze=[*]",
        "train.lr=3e-3",
        "train.steps=12",
        "train.val_every=4",
        "train.ckpt_every=4",
    ]
    tuned = train(config(store, tmp_path / "lora", *lora))
    before, after = weights(base), weights(tuned)  # a plain ClimaX: same keys as the base
    assert set(before) == set(after)
    targets = [
        k
        for k in before
        if k.startswith("blocks.") and any(f".{t}.weight" in k for t in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"))
    ]
    assert targets and all(not torch.equal(before[k], after[k]) for k in targets)
    assert all(torch.equal(before[k], after[k]) for k in before if k not in targets)  # the rest frozen
    losses = val_losses(tuned)
    assert losses[-1] < losses[0]  # the shifted task (24 h instead of 6 h) improves
    # a LoRA run killed during step 10 and resumed (from the checkpoint of step 8) ends where the straight one does
    train_killed_during(config(store, tmp_path / "resumed", *lora), 10, monkeypatch)
    assert checkpointing.checkpoint_steps(tmp_path / "resumed" / "checkpoints")[-1] == 8
    resumed = weights(train(config(store, tmp_path / "resumed", *lora)))
    assert all(torch.allclose(after[k], resumed[k], atol=1e-5) for k in after)
