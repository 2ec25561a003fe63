#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Install physicsnemo-climax into an NGC PhysicsNeMo image (or any environment)
# while keeping the CUDA stack it already has: torch, triton, numpy, apex,
# Transformer Engine, DALI, cupy and the nvidia-* CUDA libraries are pinned to
# the installed versions, and the install fails if any of them would change.
#
#   containers/install.sh [SOURCE_DIR]     install SOURCE_DIR (default: this checkout)
#   containers/install.sh --pins           print the pins and exit
#
# CLIMAX_EXTRAS (default "sim") picks the package extras; PYTHON (default the
# `python` on PATH) the interpreter whose environment is installed into. The NGC image's own
# /etc/pip/constraint.txt (PIP_CONSTRAINT) is set aside for this one install:
# it also pins pure-Python packages, PhysicsNeMo among them, that this package
# may need newer; the compiled stack is held by the pins above instead.
set -euo pipefail
python=${PYTHON:-python}

pins() {
    "$python" - <<'PY'
import importlib.metadata as md
import re

held = re.compile(r"^(torch|torchvision|torchaudio|triton|pytorch-triton|numpy|apex|transformer[-_]engine.*"
                  r"|nvidia-dali.*|cupy.*|cuda-python|cuda-bindings|nvidia-(?!physicsnemo).*)$", re.IGNORECASE)
seen = {}
for dist in md.distributions():
    name = dist.metadata["Name"]
    if name and held.match(name) and name.lower() not in seen:
        seen[name.lower()] = f"{name}=={dist.version}"
print("\n".join(sorted(seen.values())))
PY
}

if [[ "${1:-}" == "--pins" ]]; then
    pins
    exit 0
fi

src=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
extras=${CLIMAX_EXTRAS-sim}
target=$src${extras:+[$extras]}
before=$(mktemp)
after=$(mktemp)
trap 'rm -f "$before" "$after"' EXIT
pins > "$before"
echo "holding $(wc -l < "$before") installed packages: $(grep -io '^torch==.*' "$before" || echo 'no torch')"

PIP_CONSTRAINT="" "$python" -m pip install --no-cache-dir --constraint "$before" "$target"

pins > "$after"
if ! diff -u "$before" "$after"; then
    echo "install.sh: the install changed the held CUDA stack (diff above)" >&2
    exit 1
fi
"$python" -m physicsnemo_climax.cli doctor  # the report lands in the build log; non-zero if the config cannot run
echo "physicsnemo-climax installed; torch and the CUDA stack unchanged"
