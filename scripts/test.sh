#!/usr/bin/env bash
# Quick start 2: set up, then run the default (fast) test suite. Slow tests: add -m slow.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest -q "$@"
