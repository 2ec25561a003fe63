# SPDX-License-Identifier: Apache-2.0
"""Climate projection (ClimaX paper section 4.3, ClimateBench): a task package.

* :mod:`.model`: :class:`ClimaXClimateBench`, a ClimaX encoder with a temporal aggregation;
* :mod:`.data`: ClimateBench scenario files and history windows;
* :mod:`.training`: ``train(cfg)`` on the shared loop;
* :mod:`.evaluation`: ``evaluate(cfg)``, NRMSEs against pattern scaling (:mod:`.scores`),
  and ``summarize(table, cfg)``: what ``climax evaluate`` prints.
"""

from .evaluation import evaluate, summarize
from .model import ClimaXClimateBench
from .training import train

__all__ = ["ClimaXClimateBench", "evaluate", "summarize", "train"]
