# SPDX-License-Identifier: Apache-2.0
"""Forecast from a NetCDF initial condition:
``python examples/climax/forecast.py --run runs/x --input ic.nc --lead 72h --output out.nc``
(the same as ``climax forecast``)."""

import sys

from physicsnemo_climax.cli import main

if __name__ == "__main__":
    main(["forecast", *sys.argv[1:]])
