# SPDX-License-Identifier: Apache-2.0
"""ClimaX for climate projection (ClimateBench), as in the paper's section 4.3.

The ClimaX encoder reads each of the last ``T`` years of forcing maps, with
a learnable temporal position embedding (sin-cos initialised) added to its
tokens and lead time 0; the tokens are averaged over space; a single-query
attention aggregates the ``T`` years; one linear layer maps the result to the
output field(s), as in the reference.
Parameter names of the encoder are ClimaX's, so pretrained weights load by
name (:meth:`from_pretrained`, the rules of :func:`..models.pretrained.load_weights`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import InputError
from ..models import ClimaX
from ..models.embeddings import sincos_1d


class ClimaXClimateBench(ClimaX):
    """ClimaX encoder + temporal aggregation for yearly climate projection.

    Parameters
    ----------
    variables : sequence of str
        Input forcings (ClimateBench: ``CO2``, ``SO2``, ``CH4``, ``BC``).
    out_variables : sequence of str
        Predicted fields (one model per target in ClimaX: ``["tas"]``).
    history : int
        Years of input per sample ``T``.
    img_size, patch_size, embed_dim, depth, num_heads, mlp_ratio, drop_path, drop_rate, fused_aggregation, lat, lon
        As :class:`ClimaX`.

    Forward
    -------
    x : torch.Tensor
        ``[B, T, V, H, W]`` normalized forcings, oldest year first.
    variables : sequence of str
        Names of the ``V`` channels.

    Returns
    -------
    torch.Tensor
        ``[B, len(out_variables), H, W]``.
    """

    def __init__(
        self,
        variables: Sequence[str] = ("CO2", "SO2", "CH4", "BC"),
        out_variables: Sequence[str] = ("tas",),
        history: int = 10,
        img_size: Sequence[int] = (32, 64),
        patch_size: int = 2,
        embed_dim: int = 1024,
        depth: int = 8,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.1,
        drop_rate: float = 0.1,
        fused_aggregation: bool = True,
        lat: Sequence[float] | None = None,
        lon: Sequence[float] | None = None,
    ):
        super().__init__(
            variables=variables,
            img_size=img_size,
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=depth,
            decoder_depth=0,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            drop_path=drop_path,
            drop_rate=drop_rate,
            fused_aggregation=fused_aggregation,
            lat=lat,
            lon=lon,
        )  # no decoder: the head is one linear layer
        self.out_variables, self.history = list(out_variables), history
        self.time_pos_embed = nn.Parameter(sincos_1d(embed_dim, torch.arange(history))[None].float())
        self.time_query = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.time_agg = nn.MultiheadAttention(embed_dim, num_heads, batch_first=True)
        self.head = nn.Linear(embed_dim, len(self.out_variables) * self.img_size[0] * self.img_size[1])

    def freeze_encoder(self) -> None:
        """Stop training the transformer blocks, except their layer norms."""
        for name, p in self.blocks.named_parameters():
            p.requires_grad_("norm" in name)

    def forward(self, x: torch.Tensor, variables: Sequence[str]) -> torch.Tensor:  # type: ignore[override]
        b, t, v = x.shape[:3]
        if x.ndim != 5 or v != len(variables) or tuple(x.shape[-2:]) != self.img_size or t > self.history:
            raise InputError(
                f"x must be [B, T <= {self.history}, {len(variables)}, *{self.img_size}], got {tuple(x.shape)}"
            )
        var_ids = self.variable_ids(variables)
        time_embed = self.time_pos_embed[:, :t].expand(b, -1, -1).reshape(b * t, 1, -1)
        lead = torch.zeros(b * t, device=x.device)
        tokens = self.encode(x.flatten(0, 1), lead, var_ids, self.pos_embed, time_embed)  # [B T, L, D]
        years = tokens.mean(dim=1).unflatten(0, (b, t))  # [B, T, D]
        summary, _ = self.time_agg(self.time_query.expand(b, -1, -1), years, years, need_weights=False)
        out = self.head(summary[:, 0])
        return out.view(b, len(self.out_variables), *self.img_size)

    #: The encoder: what :meth:`from_pretrained` takes from a ClimaX (with the
    #: shared variables' embeddings); the time aggregation and head stay new.
    pretrained_parts = ("blocks.", "norm.", "var_agg.", "var_query", "pos_embed", "lead_time_embed.")
    pretrained_head = False

    @classmethod
    def from_pretrained(cls, path: str, freeze: bool = False, **kwargs) -> ClimaXClimateBench:
        """A model whose encoder holds the weights of a ClimaX ``.mdlus`` or official ``.ckpt``.

        Kept: the transformer blocks and final norm, the variable aggregation
        and query, the lead-time embedding, the positional embedding
        (resampled to another grid), and the token and variable embeddings of
        variables both know. New: the other variables' embeddings, the time
        embedding and aggregation, and the head. ``freeze`` then stops
        training the blocks except their norms.
        """
        model = super().from_pretrained(path, **kwargs)
        if freeze:
            model.freeze_encoder()
        return model
