# SPDX-License-Identifier: Apache-2.0
"""Variable aggregation: per spatial token, one learned query attends over the
token's variables and reduces ``V`` tokens to one.

With a single query the key and value projections of every (variable, token)
pair are unnecessary. For head ``h`` with projected query ``q_h``::

    score_i = q_h . (W_k,h x_i + b_k,h) / sqrt(d)
            = (W_k,h^T q_h / sqrt(d)) . x_i  +  const        (const cancels in softmax)
    out_h   = sum_i a_i (W_v,h x_i + b_v,h)
            = W_v,h (sum_i a_i x_i) + b_v,h                  (since sum_i a_i = 1)

so ``W_k`` folds into the query and ``W_v`` applies after the weighted sum.
The tokens themselves are affine in their ``p^2`` patch values,
``x_i = E_i u_i + c_i`` (:class:`~.tokenizer.VariableTokens`), so both steps
fold further into the tiny per-variable kernels::

    score_i = (E_i^T k_h) . u_i + c_i . k_h                  (k_h = W_k,h^T q_h / sqrt(d))
    out_h   = sum_i a_i [u_i, 1] @ G_h,i + b_v,h             (G_h,i = [E_i, c_i]^T W_v,h^T)

Everything per token then scales with ``V p^2`` instead of ``V D``: the
``[B, V, L, D]`` tokens, the ``[B L, V, D]`` keys and values and their
``O(V L D^2)`` projections (about half of the reference's FLOPs) are never
formed. The result equals plain multi-head attention up to rounding.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .tokenizer import VariableTokens


class VariableAggregation(nn.MultiheadAttention):
    """Single-query cross-attention over variables, fused as described above.

    Subclasses :class:`torch.nn.MultiheadAttention` so parameter names
    (``in_proj_weight``, ``in_proj_bias``, ``out_proj``) match the reference.

    Parameters
    ----------
    embed_dim : int
        Token width ``D``.
    num_heads : int
        Attention heads ``H``; ``D`` must divide by ``H``.
    fused : bool
        ``True`` for the fused computation; ``False`` builds the tokens and
        runs the reference's plain multi-head attention (for benchmarks and
        checks).
    """

    def __init__(self, embed_dim: int, num_heads: int, fused: bool = True):
        super().__init__(embed_dim, num_heads, batch_first=True)
        self.fused = fused

    def forward(self, tokens: VariableTokens, query: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Aggregate variables.

        Parameters
        ----------
        tokens : VariableTokens
            ``[B, V, L, D]`` variable tokens in factored form.
        query : torch.Tensor
            ``[1, 1, D]`` learned query.

        Returns
        -------
        torch.Tensor
            ``[B, L, D]``.
        """
        if not self.fused:
            x = tokens.materialize()
            b, v, l, d = x.shape
            kv = x.transpose(1, 2).reshape(b * l, v, d)
            out, _ = super().forward(query.expand(b * l, -1, -1), kv, kv, need_weights=False)
            return out.reshape(b, l, d)

        patches, kernel, offset = tokens.patches, tokens.weight, tokens.offset
        b, v, l, k = patches.shape
        d, heads, hd = self.embed_dim, self.num_heads, self.head_dim
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, _, b_v = self.in_proj_bias.chunk(3)

        # Query through W_q, then folded through W_k: one D-vector per head.
        q = (query.reshape(1, d) @ w_q.T + b_q).reshape(heads, hd)
        key = torch.einsum("he,hed->hd", q, w_k.reshape(heads, hd, d)) / math.sqrt(hd)
        # Scores from the patch values: [B, V, L, H]; softmax over variables.
        patch_key = torch.einsum("vdk,hd->vkh", kernel, key)
        scores = torch.einsum("bvlk,vkh->bvlh", patches, patch_key)
        scores = scores + (offset @ key.T)[None, :, None, :]
        attn = scores.softmax(dim=1)

        # Attention-weighted affine features [u_i, 1] per (token, head): [B, L, H, V (k+1)].
        affine = torch.cat([patches, patches.new_ones(b, v, l, 1)], dim=-1)
        features = torch.einsum("bvlh,bvlj->blhvj", attn.to(affine.dtype), affine)
        # Per-variable kernels and offsets through W_v: [H, V (k+1), hd].
        basis = torch.cat([kernel, offset[..., None]], dim=-1)  # [V, D, k+1]
        values = torch.einsum("vdj,hed->hvje", basis, w_v.reshape(heads, hd, d))
        out = torch.einsum(
            "blhn,hne->blhe", features.reshape(b, l, heads, v * (k + 1)), values.reshape(heads, v * (k + 1), hd)
        )
        return self.out_proj(out.reshape(b, l, d) + b_v)
