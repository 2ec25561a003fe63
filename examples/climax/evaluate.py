# SPDX-License-Identifier: Apache-2.0
"""Scorecard of a run: ``python examples/climax/evaluate.py run_dir=runs/finetune_global``
(the same as ``climax evaluate``)."""

import sys

from physicsnemo_climax.cli import main

if __name__ == "__main__":
    main(["evaluate", *sys.argv[1:]])
