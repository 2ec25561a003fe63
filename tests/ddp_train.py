# SPDX-License-Identifier: Apache-2.0
"""Run by ``torchrun`` from test_recipes: a tiny DDP (or FSDP2) training on
CPU/gloo, after which each rank saves its (full) parameters for the test.
Arguments after the first three are more overrides (test_crps)."""

import sys
from pathlib import Path

import torch

from physicsnemo_climax.config import load_config
from physicsnemo_climax.engine.distributed import setup_distributed
from physicsnemo_climax.forecasting import fit

if __name__ == "__main__":
    store, run_dir, fsdp = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    cfg = load_config(
        [
            f"data.root={store}",
            f"run_dir={run_dir}",
            "task=finetune_global",
            "task.lead_hours=6",
            "model.embed_dim=32",
            "model.depth=1",
            "model.num_heads=4",
            "model.drop_rate=0.1",
            "train.batch_size=4",
            "train.steps=6",
            "train.ckpt_every=3",
            "train.val_every=3",
            "train.progress=false",
            "train.num_workers=0",
            f"train.fsdp={fsdp}",
            *sys.argv[4:],
        ]
    )
    _, model = fit(cfg)
    rank = setup_distributed().rank
    full = [p.full_tensor() if hasattr(p, "full_tensor") else p for p in model.parameters()]  # FSDP
    torch.save(torch.cat([p.detach().flatten() for p in full]), run_dir / f"params_rank{rank}.pt")
