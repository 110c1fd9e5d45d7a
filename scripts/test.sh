#!/usr/bin/env bash
# Set up, then run the default test suite (slow and reliability suites: add -m slow / -m reliability).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(bash scripts/setup.sh | tail -n 1)
exec "$VENV/bin/python" -m pytest -q "$@"
