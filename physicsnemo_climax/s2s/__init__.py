# SPDX-License-Identifier: Apache-2.0
"""Sub-seasonal to seasonal prediction (ClimaX paper section 4.2.3): a task package.

The model is ClimaX forecasting's, trained on the shared loop with time-mean
targets: the reader (:class:`..data.ClimaXShardReader` with ``windows``)
averages the store over each window after the initial time, and the lead
input tells the model which window it predicts. So training is forecasting's
and ``climax forecast`` writes window means (:func:`..forecasting.core.window_dataset`);
what is this package's own is the scorecard:

* :mod:`.training`: ``train(cfg)``, forecasting's with the windows as targets;
* :mod:`.evaluation`: ``evaluate(cfg)``, window means against the window's
  climatology and anomaly persistence;
* :mod:`.terciles`: tercile edges of the training years and the ranked
  probability (skill) score of the S2S AI Challenge;
* :mod:`.report`: the files and ``summarize(table, cfg)``: what ``climax evaluate`` prints.
"""

from .evaluation import evaluate
from .report import summarize
from .training import fit, train

__all__ = ["evaluate", "fit", "summarize", "train"]
