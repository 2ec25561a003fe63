#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# On the GPU machine: install the wheelhouse parts carried in .whl/ (every
# part of benchmarks/gpu_wheelhouse.sh must be there) into a folder of their
# own, then run benchmarks/gpu_check.py with its arguments, its log beside
# its results in $OUT.
#
#   bash benchmarks/gpu_run.sh                    # the full check
#   bash benchmarks/gpu_run.sh --parts compile    # a rerun of some parts
#
# Environment: OUT (results; ./gpu_check), PYTHON (python3), WHEELS (.whl),
# SITE (/tmp/site: where the wheels are installed).
set -uo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
out=${OUT:-gpu_check}
site=${SITE:-/tmp/site}
mkdir -p "$out"
start=$(date +%s)
"$python" benchmarks/wheelhouse.py unpack "${WHEELS:-.whl}" "$site.wheels" || exit 2
"$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
    "$site.wheels"/*.whl || exit 2
echo "gpu_run: wheels installed in $(( $(date +%s) - start )) s"
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$python" benchmarks/gpu_check.py --out "$out" "$@" 2>&1 | tee "$out/gpu_check.log"
exit "${PIPESTATUS[0]}"
