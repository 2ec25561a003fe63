# SPDX-License-Identifier: Apache-2.0
"""ClimaX and CorrDiff in Earth2Studio workflows (extra ``earth2studio``).

* :class:`ClimaXPrognostic`: the ``earth2studio.models.px`` protocol, for
  ``earth2studio.run.deterministic`` / ``ensemble``;
* :class:`CorrDiffDiagnostic`: the ``earth2studio.models.dx`` protocol for a
  CorrDiff downscaler of this package, chained after ClimaX with
  ``earth2studio.run.diagnostic``;
* :class:`ClimaXPerturbation`: this package's ensemble perturbations
  (``climax forecast --members``) for ``earth2studio.run.ensemble``;
* :class:`FileSource`: local ERA5 / WeatherBench / CMIP6 files as an
  Earth2Studio data source;
* :mod:`.lexicon`: ClimaX / WeatherBench names <-> Earth2Studio ids.

Only ``earth2studio.utils.coords`` is imported, and only when coordinates are
checked: importing ``earth2studio.models`` loads every model it ships.
"""

from .diagnostic import CorrDiffDiagnostic
from .lexicon import from_e2s, to_e2s
from .perturbation import ClimaXPerturbation
from .prognostic import ClimaXPrognostic
from .source import FileSource

__all__ = ["ClimaXPerturbation", "ClimaXPrognostic", "CorrDiffDiagnostic", "FileSource", "from_e2s", "to_e2s"]
