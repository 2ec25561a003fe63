# SPDX-License-Identifier: Apache-2.0
"""Import of official ClimaX Lightning checkpoints, on synthetic files that
reproduce their layout: ``net.`` prefix, legacy ``channel_*`` names."""

import pytest
import torch
from conftest import tiny_climax

from physicsnemo_climax.models import DEFAULT_VARIABLES, ClimaX
from physicsnemo_climax.models.embeddings import resize_pos_embed


def official_like_state(model: ClimaX, stacked: bool = False) -> dict:
    state = {}
    for key, value in model.state_dict().items():
        for new, old in (("var_embed", "channel_embed"), ("var_query", "channel_query"), ("var_agg", "channel_agg")):
            if key.startswith(new):
                key = old + key[len(new) :]
        state["net." + key] = value.clone()
    if stacked:
        n = len(model.variables)
        state["net.token_embeds.proj_weights"] = torch.stack(
            [state.pop(f"net.token_embeds.{i}.proj.weight") for i in range(n)]
        )
        state["net.token_embeds.proj_biases"] = torch.stack(
            [state.pop(f"net.token_embeds.{i}.proj.bias") for i in range(n)]
        )
    return state


def write_ckpt(path, state):
    torch.save(
        {"epoch": 3, "global_step": 1200, "state_dict": state, "hyper_parameters": {"lr": 5e-4, "warmup_epochs": 5}},
        path,
    )
    return path


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(11)
    with torch.no_grad():
        model = tiny_climax(variables=list(DEFAULT_VARIABLES), img_size=(32, 64)).eval()
        for p in model.parameters():  # no zero-initialised parameter left
            p.add_(0.01 * torch.randn_like(p))
    return model


def compare(a, b, variables, out):
    torch.manual_seed(0)
    x = torch.randn(2, len(variables), *a.img_size)
    lead = torch.tensor([6.0, 72.0])
    return torch.equal(a(x, lead, variables, out), b(x, lead, variables, out))


@pytest.mark.parametrize("stacked", [False, True])
def test_loads_and_reproduces_outputs(source, tmp_path, stacked):
    path = write_ckpt(tmp_path / "official.ckpt", official_like_state(source, stacked))
    model = ClimaX.from_official_checkpoint(path, num_heads=4, drop_path=0.0, drop_rate=0.0).eval()
    assert model.variables == list(DEFAULT_VARIABLES)
    assert (model.patch_size, model.img_size, len(model.blocks)) == (2, (32, 64), 2)
    assert model.pos_embed.shape[-1] == 64 and len(model.head) == 5
    out = ["geopotential_500", "temperature_850", "2m_temperature"]
    assert compare(model, source, model.variables, out)


def test_imported_model_saves_as_mdlus(source, tmp_path):
    from physicsnemo.core import Module

    path = write_ckpt(tmp_path / "official.ckpt", official_like_state(source))
    model = ClimaX.from_official_checkpoint(path, num_heads=4, drop_rate=0.0, drop_path=0.0).eval()
    model.save(str(tmp_path / "imported.mdlus"))
    again = Module.from_checkpoint(str(tmp_path / "imported.mdlus")).eval()
    assert compare(again, source, ["2m_temperature", "orography"], ["2m_temperature"])


def test_variable_subset_and_new_grid(source, tmp_path):
    path = write_ckpt(tmp_path / "official.ckpt", official_like_state(source))
    subset = ["temperature_850", "geopotential_500", "land_sea_mask"]
    model = ClimaX.from_official_checkpoint(path, num_heads=4, variables=subset, drop_rate=0.0, drop_path=0.0).eval()
    assert len(model.token_embeds) == 3
    assert compare(model, source, subset, ["geopotential_500", "temperature_850"])

    wider = ClimaX.from_official_checkpoint(path, num_heads=4, img_size=(64, 128))
    want = resize_pos_embed(source.pos_embed.detach(), (16, 32), (32, 64))
    assert torch.equal(wider.pos_embed.detach(), want)


def test_unexpected_missing_and_misshaped_keys_are_listed(source, tmp_path):
    state = official_like_state(source)
    state["net.extra_thing"] = torch.zeros(3)
    del state["net.norm.bias"]
    state["net.blocks.1.mlp.fc2.bias"] = torch.zeros(7)
    path = write_ckpt(tmp_path / "bad.ckpt", state)
    with pytest.raises(ValueError) as err:
        ClimaX.from_official_checkpoint(path, num_heads=4)
    msg = str(err.value)
    assert "extra_thing" in msg and "norm.bias" in msg and "blocks.1.mlp.fc2.bias" in msg


def test_layout_errors_name_the_keys(source, tmp_path):
    state = official_like_state(source)
    state["net.head.4.weight"] = state["net.head.4.weight"][:-4]
    with pytest.raises(ValueError, match="head.4.weight"):
        ClimaX.from_official_checkpoint(write_ckpt(tmp_path / "a.ckpt", state))

    state = official_like_state(source)
    del state["net.pos_embed"]
    with pytest.raises(ValueError, match="pos_embed"):
        ClimaX.from_official_checkpoint(write_ckpt(tmp_path / "b.ckpt", state))

    state = official_like_state(source)
    state["optimizer_thing"] = torch.zeros(1)
    with pytest.raises(ValueError, match="optimizer_thing"):
        ClimaX.from_official_checkpoint(write_ckpt(tmp_path / "c.ckpt", state))

    path = write_ckpt(tmp_path / "d.ckpt", official_like_state(source))
    with pytest.raises(ValueError, match="48 token embeddings but 3"):
        ClimaX.from_official_checkpoint(path, checkpoint_variables=["a", "b", "c"])
    with pytest.raises(KeyError, match="rain"):
        ClimaX.from_official_checkpoint(path, num_heads=4, variables=["rain"])


def test_unsafe_pickle_is_refused(tmp_path):
    path = tmp_path / "pickled.ckpt"
    torch.save({"state_dict": {}, "callback": object()}, path)
    with pytest.raises(ValueError, match="weights_only"):
        ClimaX.from_official_checkpoint(path)


def test_init_goes_through_the_one_loader_with_its_rules(source, tmp_path, caplog):
    import logging

    path = write_ckpt(tmp_path / "official.ckpt", official_like_state(source))
    args = dict(
        variables=["rain", "geopotential_500"],
        img_size=(64, 128),
        patch_size=2,
        embed_dim=64,
        depth=2,
        decoder_depth=2,
        num_heads=4,
    )
    with caplog.at_level(logging.INFO, logger="physicsnemo_climax.models.pretrained"):
        model = ClimaX.from_pretrained(path, **args)
    assert "resampling pos_embed" in caplog.text and "(16, 32) to (32, 64)" in caplog.text
    assert "['rain'] are not in" in caplog.text and "fresh initialisation" in caplog.text
    j = DEFAULT_VARIABLES.index("geopotential_500")
    assert torch.equal(model.token_embeds[1].proj.weight, source.token_embeds[j].proj.weight)
    assert torch.equal(model.var_embed[0, 1], source.var_embed[0, j])
    rows = model.head[-1].weight.reshape(4, 2, -1)[:, 1]  # head rows are (p_row, p_col, variable)
    assert torch.equal(rows, source.head[-1].weight.reshape(4, len(DEFAULT_VARIABLES), -1)[:, j])
    assert torch.equal(model.blocks[1].mlp.fc1.weight, source.blocks[1].mlp.fc1.weight)
    with pytest.raises(ValueError, match=r"unexpected keys \['blocks\.1\.attn"):
        ClimaX.from_pretrained(path, **dict(args, depth=1))  # a deeper checkpoint is not cut silently
    with pytest.raises(ValueError, match="no variable in common"):
        ClimaX.from_pretrained(path, **dict(args, variables=["rain"]))
