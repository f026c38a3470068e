#!/usr/bin/env bash
# Quick start 1: set up, then run the main job on its default configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/workbench main "$@"
