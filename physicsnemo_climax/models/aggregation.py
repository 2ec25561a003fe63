# SPDX-License-Identifier: Apache-2.0
"""Variable aggregation: per spatial token, one learned query attends over the
token's variables and reduces ``V`` tokens to one.

With a single query the key and value projections of every (variable, token)
pair are unnecessary. For head ``h`` with query ``q_h`` (already projected)::

    score_i = q_h . (W_k,h x_i + b_k,h) / sqrt(d)
            = (W_k,h^T q_h) . x_i / sqrt(d)  +  const      (const cancels in softmax)
    out_h   = sum_i a_i (W_v,h x_i + b_v,h)
            = W_v,h (sum_i a_i x_i) + b_v,h                (since sum_i a_i = 1)

so ``W_k`` is folded into the query and ``W_v`` is applied once per token after
the weighted sum. The cost falls from ``O(V L D^2)`` to ``O(V L D H + L D^2)``
and no ``[B L, V, D]`` key/value tensors are made.
"""

from __future__ import annotations

import math

import torch
from torch import nn


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
        ``True`` for the fused computation; ``False`` runs the reference's
        plain multi-head attention (kept for benchmarks and checks).
    """

    def __init__(self, embed_dim: int, num_heads: int, fused: bool = True):
        super().__init__(embed_dim, num_heads, batch_first=True)
        self.fused = fused

    def forward(self, tokens: torch.Tensor, query: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Aggregate variables.

        Parameters
        ----------
        tokens : torch.Tensor
            ``[B, V, L, D]`` variable tokens.
        query : torch.Tensor
            ``[1, 1, D]`` learned query.

        Returns
        -------
        torch.Tensor
            ``[B, L, D]``.
        """
        b, v, l, d = tokens.shape
        if not self.fused:
            kv = tokens.transpose(1, 2).reshape(b * l, v, d)
            out, _ = super().forward(query.expand(b * l, -1, -1), kv, kv, need_weights=False)
            return out.reshape(b, l, d)

        heads, hd = self.num_heads, self.head_dim
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, _, b_v = self.in_proj_bias.chunk(3)
        q = (query.reshape(1, d) @ w_q.T + b_q).reshape(heads, hd)
        # Query folded through W_k: one D-vector per head, in token space.
        q_folded = torch.einsum("he,hed->hd", q, w_k.reshape(heads, hd, d)) / math.sqrt(hd)
        scores = torch.einsum("bvld,hd->blhv", tokens, q_folded)
        weights = scores.softmax(dim=-1).to(tokens.dtype)
        mixed = torch.einsum("blhv,bvld->blhd", weights, tokens)
        # W_v after the weighted sum, per head: [B, L, H, hd] -> [B, L, D].
        out = torch.einsum("blhd,hed->blhe", mixed, w_v.reshape(heads, hd, d))
        out = out.reshape(b, l, d) + b_v
        return self.out_proj(out)
