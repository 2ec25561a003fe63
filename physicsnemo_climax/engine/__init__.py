# SPDX-License-Identifier: Apache-2.0
"""What every task shares: the setup of a training (:mod:`.task`), the
training loop (:mod:`.loop`), the run plan (:mod:`.plan` on
:mod:`.environment`), wrapping (:mod:`.wrap`), the optimizer (:mod:`.optim`),
checkpoints (:mod:`.checkpointing`), the run record (:mod:`.record`), metrics
and progress (:mod:`.tracking`), distributed setup (:mod:`.distributed`) and
config errors (:mod:`.checks`)."""
