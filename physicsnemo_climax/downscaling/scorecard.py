# SPDX-License-Identifier: Apache-2.0
"""The scorecard of a generation file: scores, spectra and maps written as one set.

Scores and spectra need the file's ``truth`` group; a file without one (a
forecast downscaled beyond the analyses) gets its maps only.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..files import output_folder
from . import plots
from .scores import SCORECARD, is_scorecard, open_groups, write_scores


def write_scorecard(
    path: str | Path, out_dir: str | Path | None = None, spread_ddof: int = 1, overwrite: bool = False
) -> tuple[pd.DataFrame | None, Path]:
    """Scores (against bilinear interpolation and regression-only) and plots of the generation
    file ``path``, written into ``out_dir`` (default: beside the file, named after it) as one set
    (:func:`..files.output_folder`: an earlier scorecard is replaced only with ``overwrite``).

    Returns
    -------
    table : DataFrame or None
        The scores, one row per variable and method (``None`` without truth).
    out_dir : Path
        Where the scorecard is.
    """
    out_dir = Path(out_dir or Path(path).with_suffix(""))
    with open_groups(path) as groups:
        has_truth = "truth" in groups
    table = None
    with output_folder(
        out_dir, SCORECARD, overwrite=overwrite, inputs=[path], legacy=is_scorecard, option="--out-dir"
    ) as staging:
        if has_truth:
            table = write_scores(path, staging, spread_ddof)
            plots.plot_spectra(path, staging / "spectra.png")
        plots.plot_maps(path, staging / "maps.png")
    return table, out_dir
