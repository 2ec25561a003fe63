# SPDX-License-Identifier: Apache-2.0
"""Training a sub-seasonal run: forecasting's task with time-mean targets.

Nothing here differs from :mod:`..forecasting.training` but the targets: with
``task.windows`` its readers (:class:`..data.ClimaXShardReader`) average the
store over each window after the initial time, the lead input is the window's
start, ``run.json`` records the windows (:func:`..forecasting.training.window_leads`),
and what has no meaning for a mean (``model.residual``, rollouts) is refused.
The same loop, model, losses, LoRA, freezing and distribution therefore apply.
"""

from ..forecasting.training import fit, train

__all__ = ["fit", "train"]
