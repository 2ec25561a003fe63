# SPDX-License-Identifier: Apache-2.0
"""A tour of the ClimaX model API on random data (seconds on a CPU).

python examples/climax/quickstart.py [--official 5.625deg.ckpt]
"""

import argparse
import tempfile
from pathlib import Path

import torch
from physicsnemo.core import Module

from physicsnemo_climax.models import ClimaX


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", help="an official ClimaX checkpoint to start from")
    args = parser.parse_args()

    if args.official:
        model = ClimaX.from_official_checkpoint(args.official)
    else:  # a small model on the default 48 variables, 5.625 deg grid
        model = ClimaX(embed_dim=128, depth=2, num_heads=4)
    model.eval()

    # Any subset of the known variables as input, in any order; lead times in hours.
    inputs = ["geopotential_500", "temperature_850", "2m_temperature", "land_sea_mask"]
    x = torch.randn(2, len(inputs), *model.img_size)  # normalized fields
    lead = torch.tensor([24.0, 72.0])
    with torch.inference_mode():
        y = model(x, lead, inputs, out_variables=["geopotential_500", "temperature_850"])
        europe = model(x, lead, inputs, ["2m_temperature"], region="Europe")
        box = model(x, lead, inputs, ["2m_temperature"], region=(-10, 10, 330, 30))
    print("global forecast", tuple(y.shape))
    print("Europe", tuple(europe.shape), "| box across 0 deg longitude", tuple(box.shape))

    # .mdlus checkpoints rebuild the model from the file alone.
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "climax.mdlus"
        model.save(str(path))
        again = Module.from_checkpoint(str(path)).eval()
        with torch.inference_mode():
            same = torch.equal(again(x, lead, inputs), model(x, lead, inputs))
    print("reloaded from .mdlus, identical outputs:", same)


if __name__ == "__main__":
    main()
