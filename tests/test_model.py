# SPDX-License-Identifier: Apache-2.0
"""ClimaX as a whole: defaults, shapes, equivalences, round trips, bad input."""

from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch
from conftest import TINY_VARS, tiny_climax
from physicsnemo.core import ModelRegistry, Module

from physicsnemo_climax.models import DEFAULT_VARIABLES, ClimaX, Weights, load_weights
from physicsnemo_climax.models.embeddings import resize_pos_embed
from physicsnemo_climax.models.head import PredictionHead

REFERENCE = Path(__file__).parent / "data" / "climax_tiny_reference.pt"


def test_defaults_and_parameter_count():
    model = ClimaX()
    assert len(DEFAULT_VARIABLES) == 48
    assert model.variables[:4] == ["land_sea_mask", "orography", "lattitude", "2m_temperature"]
    assert model.variables[6] == "geopotential_50" and model.variables[-1] == "specific_humidity_925"
    assert model.img_size == (32, 64) and model.patch_size == 2
    assert len(model.blocks) == 8 and len(model.head) == 5
    assert sum(p.numel() for p in model.parameters()) == 108_088_512
    # drop path grows linearly from 0 to 0.1
    assert model.blocks[0].drop_path1.__class__.__name__ == "Identity"
    assert model.blocks[-1].drop_path1.drop_prob == pytest.approx(0.1)


def test_state_dict_uses_reference_names():
    keys = set(tiny_climax().state_dict())
    for key in [
        "token_embeds.0.proj.weight",
        "token_embeds.5.proj.bias",
        "var_embed",
        "var_query",
        "var_agg.in_proj_weight",
        "var_agg.in_proj_bias",
        "var_agg.out_proj.weight",
        "pos_embed",
        "lead_time_embed.weight",
        "blocks.1.norm1.weight",
        "blocks.1.attn.qkv.weight",
        "blocks.1.attn.proj.bias",
        "blocks.1.norm2.bias",
        "blocks.1.mlp.fc1.weight",
        "blocks.1.mlp.fc2.weight",
        "norm.weight",
        "head.0.weight",
        "head.2.weight",
        "head.4.bias",
    ]:
        assert key in keys, key


def test_forward_shapes_for_subsets(tiny):
    x = torch.randn(2, 3, 16, 32)
    lead = torch.tensor([6.0, 48.0])
    assert tiny(x, lead, ["z500", "t2m", "q700"]).shape == (2, 3, 16, 32)
    assert tiny(x, lead, ["z500", "t2m", "q700"], ["t850"]).shape == (2, 1, 16, 32)
    assert tiny(x[:, :1], lead, ["v10"], TINY_VARS).shape == (2, 6, 16, 32)


def test_input_order_and_output_order_do_not_matter(tiny):
    torch.manual_seed(4)
    x = torch.randn(2, 4, 16, 32)
    lead = torch.tensor([24.0, 72.0])
    names = ["t2m", "z500", "u10", "q700"]
    out = ["t850", "z500", "t2m"]
    base = tiny(x, lead, names, out)
    perm = [2, 0, 3, 1]
    shuffled = tiny(x[:, perm], lead, [names[i] for i in perm], out[::-1])
    assert torch.allclose(shuffled.flip(1), base, atol=1e-5)


def test_lead_time_changes_output_in_hundreds_of_hours(tiny):
    x = torch.randn(1, 2, 16, 32)
    with torch.no_grad():
        tiny.lead_time_embed.weight.normal_()
    a = tiny(x, torch.tensor([0.0]), ["t2m", "z500"])
    b = tiny(x, torch.tensor([100.0]), ["t2m", "z500"])
    assert not torch.allclose(a, b)
    # the embedding sees lead/100: a lead of 100 h adds exactly the weight column
    tokens0 = tiny.lead_time_embed(torch.tensor([[0.0]]))
    tokens1 = tiny.lead_time_embed(torch.tensor([[1.0]]))
    assert torch.allclose(tokens1 - tokens0, tiny.lead_time_embed.weight[:, 0])


def test_fused_model_equals_naive_model():
    torch.manual_seed(5)
    fused = tiny_climax().eval()
    naive = tiny_climax(fused_aggregation=False).eval()
    naive.load_state_dict(fused.state_dict())
    x = torch.randn(2, 6, 16, 32)
    lead = torch.tensor([6.0, 120.0])
    a, b = fused(x, lead, TINY_VARS), naive(x, lead, TINY_VARS)
    assert ((a - b).norm() / b.norm()) < 1e-5


def test_non_regression_against_stored_reference():
    ref = torch.load(REFERENCE, weights_only=True)
    torch.manual_seed(ref["seed"])
    model = tiny_climax().eval()
    out = model(ref["x"], ref["lead_times"], ref["variables"], ref["out_variables"])
    assert torch.allclose(out, ref["output"], rtol=1e-4, atol=1e-5)


def test_mdlus_round_trip(tiny, tmp_path):
    path = tmp_path / "tiny.mdlus"
    tiny.save(str(path))
    loaded = Module.from_checkpoint(str(path)).eval()
    assert isinstance(loaded, ClimaX) and loaded.variables == TINY_VARS
    assert loaded.img_size == (16, 32)
    x = torch.randn(2, 6, 16, 32)
    lead = torch.tensor([6.0, 12.0])
    assert torch.equal(loaded(x, lead, TINY_VARS), tiny(x, lead, TINY_VARS))


def test_overlapping_head_round_trips_and_loads_a_plain_model(tmp_path):
    """A plain model's weights go into an overlapping-head model (each patch in the middle of its
    window) and back out unchanged; the overlapping model saves and loads as any ClimaX."""
    torch.manual_seed(7)
    plain = tiny_climax().eval()
    smooth = tiny_climax(overlapping_head=True).eval()
    assert smooth.head.window == 4 and smooth.periodic
    load_weights(smooth, Weights(plain.state_dict(), plain.variables, plain.patch_grid, "plain"))
    assert torch.equal(smooth.blocks[1].mlp.fc1.weight, plain.blocks[1].mlp.fc1.weight)
    middle = smooth.head[-1].weight.reshape(4, 4, len(TINY_VARS), -1)[1:3, 1:3]
    assert torch.equal(middle.reshape(-1, 64), plain.head[-1].weight)
    back = tiny_climax().eval()
    load_weights(back, Weights(smooth.state_dict(), smooth.variables, smooth.patch_grid, "smooth"))
    x, lead = torch.randn(2, 6, 16, 32), torch.tensor([6.0, 24.0])
    assert torch.equal(back(x, lead, TINY_VARS), plain(x, lead, TINY_VARS))

    smooth.save(str(tmp_path / "smooth.mdlus"))
    loaded = Module.from_checkpoint(str(tmp_path / "smooth.mdlus")).eval()
    assert torch.equal(loaded(x, lead, TINY_VARS), smooth(x, lead, TINY_VARS))
    assert smooth(x, lead, TINY_VARS, region=(0, 60, 0, 120)).shape[:2] == (2, 6)


def test_only_a_grid_closing_the_circle_wraps():
    assert tiny_climax().periodic
    assert tiny_climax(lon=torch.arange(32) * -11.25 + 180.0).periodic  # descending, across 0 deg
    box = tiny_climax(lat=torch.linspace(30, 60, 16), lon=torch.linspace(-20, 40, 32))
    assert not box.periodic
    with pytest.raises(ValueError, match="even patch size"):
        PredictionHead(8, 2, patch_size=3, decoder_depth=1, overlapping=True)


def test_registry_entry_point():
    names = {ep.name: ep.value for ep in entry_points(group="physicsnemo.models")}
    assert names.get("ClimaX") == "physicsnemo_climax.models:ClimaX"
    assert ModelRegistry().factory("ClimaX") is ClimaX


def test_weights_from_another_grid_resample_pos_embed():
    torch.manual_seed(6)
    coarse = tiny_climax(img_size=(8, 16))
    fine = tiny_climax(img_size=(16, 32))
    with pytest.raises(RuntimeError, match="pos_embed"):  # never silently: only through the one loader
        fine.load_state_dict(coarse.state_dict())
    load_weights(fine, Weights(coarse.state_dict(), coarse.variables, coarse.patch_grid, "coarse"))
    want = resize_pos_embed(coarse.pos_embed.detach(), (4, 8), (8, 16))
    assert torch.equal(fine.pos_embed.detach(), want)
    assert torch.equal(fine.blocks[0].attn.qkv.weight, coarse.blocks[0].attn.qkv.weight)


def test_other_grid_sizes():
    model = tiny_climax(img_size=(12, 20), patch_size=4).eval()
    out = model(torch.randn(1, 2, 12, 20), torch.tensor([6.0]), ["t2m", "z500"])
    assert out.shape == (1, 2, 12, 20)
    with pytest.raises(ValueError, match="divisible"):
        tiny_climax(img_size=(12, 21), patch_size=4)


def test_bf16_autocast_on_cpu_close_to_fp32(tiny):
    torch.manual_seed(7)
    x = torch.randn(2, 6, 16, 32)
    lead = torch.tensor([6.0, 72.0])
    ref = tiny(x, lead, TINY_VARS)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = tiny(x, lead, TINY_VARS)
    assert low.dtype == torch.bfloat16
    assert ((low.float() - ref).norm() / ref.norm()) < 3e-2


def test_grad_checkpointing_gives_same_gradients():
    torch.manual_seed(8)
    model = tiny_climax()
    x = torch.randn(2, 6, 16, 32)
    lead = torch.tensor([6.0, 72.0])
    grads = []
    for enable in (False, True):
        model.zero_grad()
        model.set_grad_checkpointing(enable)
        model(x, lead, TINY_VARS).square().mean().backward()
        grads.append(model.blocks[0].attn.qkv.weight.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


# ------------------------------------------------------------------ bad input
def test_unknown_variable_is_named(tiny):
    x = torch.randn(1, 2, 16, 32)
    with pytest.raises(KeyError, match="'rain'.*knows"):
        tiny(x, torch.tensor([6.0]), ["t2m", "rain"])
    with pytest.raises(KeyError, match="snow"):
        tiny(x, torch.tensor([6.0]), ["t2m", "z500"], ["snow"])


def test_wrong_grid_states_expected_and_got(tiny):
    with pytest.raises(ValueError, match=r"expected .*\(16, 32\), got \(32, 64\)"):
        tiny(torch.randn(1, 2, 32, 64), torch.tensor([6.0]), ["t2m", "z500"])
    with pytest.raises(ValueError, match="2 variables"):
        tiny(torch.randn(1, 3, 16, 32), torch.tensor([6.0]), ["t2m", "z500"])


@pytest.mark.parametrize("lead", [torch.tensor(6.0), torch.tensor([[6.0], [6.0]]), torch.tensor([6.0])])
def test_lead_times_must_be_batch_vector(tiny, lead):
    with pytest.raises(ValueError, match="lead_times must have shape"):
        tiny(torch.randn(2, 2, 16, 32), lead, ["t2m", "z500"])


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="duplicates"):
        tiny_climax(variables=["a", "a"])
    with pytest.raises(ValueError, match="num_heads"):
        tiny_climax(num_heads=5)
    with pytest.raises(ValueError, match="lat/lon"):
        tiny_climax(lat=[0.0] * 3)
