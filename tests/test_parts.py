# SPDX-License-Identifier: Apache-2.0
"""The model's parts against naive references written here."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from physicsnemo_climax.models.aggregation import VariableAggregation
from physicsnemo_climax.models.embeddings import (
    infer_patch_grid,
    resize_pos_embed,
    sincos_1d,
    sincos_2d,
)
from physicsnemo_climax.models.head import PredictionHead, overlap_add, tent, unpatchify
from physicsnemo_climax.models.pretrained import resize_head_window
from physicsnemo_climax.models.tokenizer import VariableTokenizer, VariableTokens


def test_sincos_1d_hand_values():
    emb = sincos_1d(4, torch.tensor([0.0, 1.0, 2.0]))
    # omega = [1, 1/100]; [sin(p), sin(p/100), cos(p), cos(p/100)]
    expected = [
        [0, 0, 1, 1],
        [math.sin(1), math.sin(0.01), math.cos(1), math.cos(0.01)],
        [math.sin(2), math.sin(0.02), math.cos(2), math.cos(0.02)],
    ]
    assert torch.allclose(emb, torch.tensor(expected), atol=1e-7)


def test_sincos_2d_first_half_encodes_column():
    emb = sincos_2d(8, 3, 5)  # [15, 8], row-major over (row, col)
    assert emb.shape == (15, 8)
    for r in range(3):
        for c in range(5):
            token = emb[r * 5 + c]
            assert torch.allclose(token[:4], sincos_1d(4, torch.tensor([float(c)]))[0])
            assert torch.allclose(token[4:], sincos_1d(4, torch.tensor([float(r)]))[0])


def test_resize_pos_embed_identity_constant_and_smooth():
    pe = torch.randn(1, 8 * 16, 12)
    assert resize_pos_embed(pe, (8, 16), (8, 16)) is pe
    const = torch.full((1, 8 * 16, 12), 3.5)
    assert torch.allclose(resize_pos_embed(const, (8, 16), (16, 32)), const.new_full((1, 512, 12), 3.5))
    rows, cols = torch.meshgrid(torch.arange(16.0), torch.arange(32.0), indexing="ij")
    smooth = torch.stack([torch.sin(0.2 * rows) * torch.cos(0.15 * cols), 0.05 * rows], -1)
    smooth = smooth.reshape(1, 16 * 32, 2)
    down = resize_pos_embed(resize_pos_embed(smooth, (16, 32), (32, 64)), (32, 64), (16, 32))
    assert (down - smooth).abs().max() < 0.02
    with pytest.raises(ValueError, match="tokens"):
        resize_pos_embed(pe, (4, 16), (8, 8))


def test_infer_patch_grid():
    assert infer_patch_grid(512) == (16, 32)
    assert infer_patch_grid(2048) == (32, 64)
    assert infer_patch_grid(8 * 8, aspect=1.0) == (8, 8)
    with pytest.raises(ValueError):
        infer_patch_grid(7)


def test_tokenizer_equals_per_variable_convolution():
    torch.manual_seed(0)
    tok = VariableTokenizer(5, patch_size=2, embed_dim=8)
    x = torch.randn(3, 3, 6, 10)
    ids = [4, 0, 2]
    var_embed = torch.randn(3, 8)
    got = tok(x, ids, var_embed).materialize()
    want = torch.stack(
        [tok[i].proj(x[:, c : c + 1]).flatten(2).transpose(1, 2) + var_embed[c] for c, i in enumerate(ids)], dim=1
    )
    assert got.shape == (3, 3, 15, 8)
    assert torch.allclose(got, want, atol=1e-6)


def random_tokens(b, v, l, d, k=4, requires_grad=False):
    parts = torch.randn(b, v, l, k), torch.randn(v, d, k), torch.randn(v, d)
    return VariableTokens(*(t.requires_grad_(requires_grad) for t in parts))


@pytest.mark.parametrize("heads", [1, 4])
def test_fused_aggregation_equals_multihead_attention(heads):
    torch.manual_seed(1)
    d, b, v, l = 32, 2, 7, 11
    reference = nn.MultiheadAttention(d, heads, batch_first=True)
    with torch.no_grad():  # non-zero biases so that their handling is checked
        reference.in_proj_bias.normal_()
        reference.out_proj.bias.normal_()
    fused = VariableAggregation(d, heads, fused=True)
    fused.load_state_dict(reference.state_dict())
    tokens = random_tokens(b, v, l, d)
    query = torch.randn(1, 1, d)

    x = tokens.materialize()
    kv = x.permute(0, 2, 1, 3).reshape(b * l, v, d)
    want, _ = reference(query.expand(b * l, 1, d), kv, kv)
    want = want.reshape(b, l, d)
    got = fused(tokens, query)
    rel = (got - want).norm() / want.norm()
    assert rel < 1e-5
    fused.fused = False
    assert torch.allclose(fused(tokens, query), want, atol=1e-6)


def test_fused_aggregation_gradients_match():
    torch.manual_seed(2)
    agg = VariableAggregation(16, 2)
    with torch.no_grad():
        agg.in_proj_bias.normal_()
    tokens = random_tokens(2, 4, 3, 16, requires_grad=True)
    query = torch.randn(1, 1, 16, requires_grad=True)
    leaves = [tokens.patches, tokens.weight, tokens.offset, query, agg.in_proj_weight, agg.in_proj_bias]
    grads = []
    for fused in (True, False):
        agg.fused = fused
        grads.append(torch.autograd.grad(agg(tokens, query).square().sum(), leaves))
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def test_head_selects_rows_of_full_projection():
    torch.manual_seed(3)
    head = PredictionHead(16, num_variables=5, patch_size=2, decoder_depth=2)
    assert [type(m) for m in head] == [nn.Linear, nn.GELU, nn.Linear, nn.GELU, nn.Linear]
    x = torch.randn(2, 6, 16)
    hidden = x
    for layer in list(head)[:-1]:
        hidden = layer(hidden)
    full = hidden @ head[-1].weight.T + head[-1].bias  # [2, 6, 4 * 5]
    out_ids = [3, 1]
    want = full.reshape(2, 6, 4, 5)[..., out_ids].reshape(2, 6, 8)
    assert torch.allclose(head(x, out_ids), want, atol=1e-6)


def test_unpatchify_layout_against_loops():
    b, h, w, p, c = 2, 3, 4, 2, 3
    x = torch.randn(b, h * w, p * p * c)
    got = unpatchify(x, p, (h, w))
    want = np.zeros((b, c, h * p, w * p), dtype=np.float32)
    xn = x.numpy()
    for i in range(h):
        for j in range(w):
            for pr in range(p):
                for pc in range(p):
                    for v in range(c):
                        want[:, v, i * p + pr, j * p + pc] = xn[:, i * w + j, (pr * p + pc) * c + v]
    assert np.array_equal(got.numpy(), want)


def overlap_add_by_loops(x, p, k, grid, periodic):
    """Every window's cells laid onto the grid one by one, tent-weighted, then averaged."""
    (h, w), m = grid, (k - p) // 2
    b, c = x.shape[0], x.shape[-1] // (k * k)
    weights = [1 - abs(i + 0.5 - k / 2) / (k / 2) for i in range(k)]
    total = np.zeros((b, c, h * p, w * p))
    norm = np.zeros((h * p, w * p))
    xn = x.double().numpy()
    for r in range(h):
        for col in range(w):
            for i in range(k):
                for j in range(k):
                    row, lon = r * p - m + i, col * p - m + j
                    if not 0 <= row < h * p or (not periodic and not 0 <= lon < w * p):
                        continue
                    lon %= w * p
                    weight = weights[i] * weights[j]
                    total[:, :, row, lon] += weight * xn[:, r * w + col, (i * k + j) * c : (i * k + j + 1) * c]
                    norm[row, lon] += weight
    return total / norm


@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("p", [2, 4])
def test_overlap_add_against_loops(periodic, p):
    torch.manual_seed(4)
    b, h, w, c, k = 2, 3, 4, 2, 2 * p
    x = torch.randn(b, h * w, k * k * c, dtype=torch.float64)
    got = overlap_add(x, p, (h, w), periodic)
    assert got.shape == (b, c, h * p, w * p)
    np.testing.assert_allclose(got.numpy(), overlap_add_by_loops(x, p, k, (h, w), periodic), atol=1e-12)


def test_tent_windows_a_patch_apart_sum_to_one():
    weights = tent(8)
    assert weights[0] == pytest.approx(1 / 8) and weights[3] == pytest.approx(7 / 8)
    assert torch.allclose(weights[4:] + weights[:4], torch.ones(4, dtype=torch.float64))


def test_overlap_add_keeps_a_field_every_window_agrees_on():
    """Windows that all hold the same smooth field give back exactly that field, poles and date line included."""
    p, k, h, w = 4, 8, 3, 5
    m = (k - p) // 2
    rows, cols = torch.meshgrid(torch.arange(-m, h * p + m), torch.arange(-m, w * p + m), indexing="ij")
    field = (0.3 * rows + torch.cos(2 * math.pi * cols / (w * p))).double()  # periodic in longitude
    windows = torch.stack(
        [field[r * p : r * p + k, c * p : c * p + k].reshape(-1) for r in range(h) for c in range(w)]
    )[None, :, :]
    got = overlap_add(windows, p, (h, w), periodic=True)[0, 0]
    assert torch.allclose(got, field[m:-m, m:-m], atol=1e-12)


def test_overlapping_head_is_continuous_where_the_paper_head_jumps():
    """Tokens that disagree by a random offset each: the paper's head jumps at every patch edge,
    overlapping windows change no faster across an edge than inside a patch."""
    torch.manual_seed(5)
    p, k, h, w = 4, 8, 4, 8
    offsets = torch.randn(h * w, 1)
    plain = unpatchify((offsets * torch.ones(p * p))[None], p, (h, w))[0, 0]
    smooth = overlap_add((offsets * torch.ones(k * k))[None], p, (h, w), periodic=True)[0, 0]

    def jumps(field):  # mean |difference| between neighbouring columns: across patch edges, inside patches
        step = (field[:, 1:] - field[:, :-1]).abs().mean(0)
        edges = torch.arange(1, w * p) % p == 0
        return step[edges].mean(), step[~edges].mean()

    across, inside = jumps(plain)
    assert across > 0.5 and inside == 0
    across, inside = jumps(smooth)
    assert across < 1.5 * inside


def test_head_window_resize_round_trip():
    torch.manual_seed(6)
    rows = torch.randn(4, 3, 5)  # a 2 x 2 patch, 3 variables, width 5
    wide = resize_head_window(rows, 4)
    assert wide.shape == (16, 3, 5)
    grid = wide.reshape(4, 4, 3, 5)
    assert torch.equal(grid[1:3, 1:3].reshape(4, 3, 5), rows)  # the patch in the middle of its window
    assert torch.equal(grid[0, 0], rows[0]) and torch.equal(grid[3, 0], rows[2])  # edges repeated outwards
    assert torch.equal(resize_head_window(wide, 2), rows)
    with pytest.raises(ValueError, match="centred"):
        resize_head_window(rows, 3)


def test_fused_aggregation_keeps_no_token_sized_tensor():
    """Neither the [B, V, L, D] tokens nor [B L, V, D] keys/values are formed."""
    torch.manual_seed(3)
    b, v, l, d = 2, 12, 64, 256
    agg = VariableAggregation(d, 4)
    tokens = random_tokens(b, v, l, d, requires_grad=True)
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = agg(tokens, torch.randn(1, 1, d))
    out.sum().backward()
    assert max(sizes) < b * v * l * d / 4
    agg.fused, sizes[:] = False, []
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        agg(tokens, torch.randn(1, 1, d))
    assert max(sizes) >= b * v * l * d  # the naive path does form them
