# SPDX-License-Identifier: Apache-2.0
"""ClimaX forecasting, a task package: pretraining with random lead times,
global, regional and rollout fine-tuning, evaluation, forecasts.

* :mod:`.training`: ``train(cfg)`` / ``fit(cfg)`` on the shared loop;
* :mod:`.run`: :class:`Run`, a trained run folder (weights, statistics, region);
* :mod:`.rollout`: model steps of a lead, and chaining the model on its output;
* :mod:`.inference`: ``forecast(run, initial_condition, leads)`` from xarray;
* :mod:`.evaluation`: ``evaluate(cfg)``, the scorecard, scored by
  :mod:`.scoring` and written by :mod:`.report` (``summarize(table, cfg)``: what
  ``climax evaluate`` prints);
* :mod:`.quickstart`: the main job, ``climax quickstart``.
"""

from .evaluation import evaluate
from .inference import forecast
from .report import summarize
from .run import Run
from .training import fit, train

__all__ = ["Run", "evaluate", "fit", "forecast", "summarize", "train"]
