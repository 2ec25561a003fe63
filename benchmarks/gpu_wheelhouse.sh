#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Build here, in the ignored folder .whl/, every Python package the bare GPU
# machine lacks for benchmarks/gpu_check.py: this package (from the working
# tree) and the distributions of benchmarks/gpu_wheels.txt at the versions
# installed here, as wheels for the GPU machine's Python (no torch, no CUDA
# libraries), packed into numbered parts that each fit one device call
# (benchmarks/wheelhouse.py says why there are parts).
#
#   bash benchmarks/gpu_wheelhouse.sh            # -> .whl/1, .whl/2, ...
#
# Environment: PYTHON_VERSION (the GPU machine's, 3.12), PART_MIB (56),
# XZ_LEVEL (9; 0 packs fast and large), PYTHON (python).
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-.whl}
python=${PYTHON:-python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

platforms=()
for tag in manylinux1 manylinux2010 manylinux2014 manylinux_2_17 manylinux_2_24 manylinux_2_27 \
           manylinux_2_28 manylinux_2_31 manylinux_2_34 manylinux_2_35; do
    platforms+=(--platform "${tag}_x86_64")
done

"$python" -m pip wheel -q --no-deps --no-build-isolation -w "$work/wheels" .
# shellcheck disable=SC2046  # one word per pin
"$python" -m pip wheel -q --no-deps -w "$work/wheels" $("$python" benchmarks/wheelhouse.py pins --build benchmarks/gpu_wheels.txt)
# shellcheck disable=SC2046  # one word per pin
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version "${PYTHON_VERSION:-3.12}" \
    --implementation cp "${platforms[@]}" -d "$work/wheels" \
    $("$python" benchmarks/wheelhouse.py pins benchmarks/gpu_wheels.txt)
"$python" benchmarks/wheelhouse.py slim "$work"/wheels/warp_lang-*.whl
"$python" benchmarks/wheelhouse.py pack "$work/wheels" "$dest" --part-mib "${PART_MIB:-56}" --level "${XZ_LEVEL:-9}"
