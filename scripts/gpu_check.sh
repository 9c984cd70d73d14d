#!/usr/bin/env bash
# One command for a lent GPU (under 8 minutes on one GPU): environment, what precision=auto chose, ADM-256
# training steps (microbatch 2 and auto; fp32, bf16) and restoration latency, the authors' code beside ours
# with --authors PATH, two DDP processes on one GPU, bit-exact resume with trainer.deterministic=true.
#   scripts/gpu_check.sh [--authors PATH] [--out DIR] [--device cpu --quick]   (see scripts/gpu_check.py --help)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
exec "$PYTHON" scripts/gpu_check.py "$@"
