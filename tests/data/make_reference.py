# SPDX-License-Identifier: Apache-2.0
"""Regenerate climax_tiny_reference.pt (non-regression data). Run only when a
deliberate change of the model's numerics is made, and say so in the commit."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1]))
from conftest import tiny_climax  # noqa: E402

SEED = 1234
torch.manual_seed(SEED)
model = tiny_climax().eval()
x = torch.randn(2, 4, 16, 32)
lead_times = torch.tensor([6.0, 96.0])
variables, out_variables = ["z500", "t2m", "u10", "q700"], ["t850", "t2m"]
with torch.no_grad():
    output = model(x, lead_times, variables, out_variables)
torch.save(
    dict(seed=SEED, x=x, lead_times=lead_times, variables=variables, out_variables=out_variables, output=output),
    Path(__file__).with_name("climax_tiny_reference.pt"),
)
