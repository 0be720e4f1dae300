#!/usr/bin/env bash
# One command on a fresh machine: install Neural Hamilton (CPU build of PyTorch) and run the demo.
#
#   bash scripts/demo.sh [OUT]        # OUT defaults to runs/demo
#
# Builds a small dataset, trains the small DeepONet and TraONet on the CPU, builds the
# physical test potentials, evaluates both networks against RK4 / leapfrog / Yoshida-4 and
# writes OUT/report.md with its plots (about 2.5 minutes for the demo, 3.5 with the install, on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/demo}"
PYTHON="${PYTHON:-python3}"

# torch first, pinned: a bare `torch` requirement on a machine without it pulls a multi-GB
# CUDA build. An installed torch (a CUDA build on a GPU machine, say) is kept as it is.
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
    echo "== installing torch 2.13.0"
    "$PYTHON" -m pip install "torch==2.13.0"
fi
echo "== installing neural-hamilton (editable)"
"$PYTHON" -m pip install -e .
echo "== running the demo into $OUT"
"$PYTHON" -m cli demo --out "$OUT"
