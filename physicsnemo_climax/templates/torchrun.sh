#!/bin/bash
# {{title}}
# Written by `climax launch torchrun`: one node, {{gpus_per_node}} GPU(s), one rank per GPU.
set -euo pipefail

export OMP_NUM_THREADS=${OMP_NUM_THREADS:-{{omp_threads}}}
export HYDRA_FULL_ERROR=1

{{steps}}
