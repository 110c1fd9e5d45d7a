#!/usr/bin/env bash
# Set up, then run the baseline end to end on the shipped demo data (a few minutes on 2 CPU cores).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(bash scripts/setup.sh | tail -n 1)
"$VENV/bin/honed" demo "$@"
