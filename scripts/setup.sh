#!/usr/bin/env bash
# Create (or reuse) the virtual environment and install honed with its test dependencies.
# HONED_VENV overrides the location; an existing environment with torch is reused, not rebuilt.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${HONED_VENV:-$HOME/.venvs/honed}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
if ! "$PY" -c "import torch, torchvision" 2>/dev/null; then
  # The 2.14.1 / 0.29.1 wheels lie on this machine's disk; elsewhere pip takes what the index offers.
  "$PY" -m pip install -q "torch==2.14.1" "torchvision==0.29.1" || "$PY" -m pip install -q torch torchvision
fi
"$PY" -m pip install -q -e ".[test]"
echo "$VENV"
