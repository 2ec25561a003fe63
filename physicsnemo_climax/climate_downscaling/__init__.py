# SPDX-License-Identifier: Apache-2.0
"""Climate-model downscaling with ClimaX (paper section 4.4): a task package.

A coarse input (a climate model's fields, e.g. MPI-ESM at 5.625 deg) is
interpolated bilinearly to a fine grid and ClimaX predicts the fine target
(e.g. ERA5 at 1.40625 deg) at the same valid time.

* :mod:`.pairing`: valid times both stores hold, under the calendar rule;
* :mod:`.data`: the two stores, the samples, the interpolation matrices;
* :mod:`.model`: ClimaX for the target grid, the optional residual over the interpolation;
* :mod:`.training`: ``train(cfg)`` on the shared loop;
* :mod:`.scores`: RMSE, mean bias and Pearson correlation accumulated over a split, zonal spectra;
* :mod:`.evaluation`: ``evaluate(cfg)`` against bilinear and conservative interpolation, and
  ``summarize(table, cfg)``; :mod:`.report` writes its files;
* :mod:`.inference`: ``downscale_coarse(run, coarse)``, a coarse dataset to the run's fine grid, and
  ``write_downscaled`` (``climax forecast --run RUN --input coarse.nc --output fine.nc``).
"""

from .evaluation import evaluate, summarize
from .inference import DownscalingRun, downscale_coarse, write_downscaled
from .training import train

__all__ = ["DownscalingRun", "downscale_coarse", "evaluate", "summarize", "train", "write_downscaled"]
