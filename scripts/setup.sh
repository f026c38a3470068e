#!/usr/bin/env bash
# Create .venv and install the workbench into it (CPU torch 2.13.0, as this machine kind provides).
# On a GPU machine, install your CUDA torch into .venv first; this keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    .venv/bin/python -m pip install --quiet torch==2.13.0
fi
# The package's dependencies include ray (tested with 2.60.0) (`workbench study`); the import check below
# makes a broken install fail here rather than at the first study.
.venv/bin/python -m pip install --quiet -e '.[dev,nnsight]'
.venv/bin/python -c "import ray, nnsight, workbench.study" || { echo "setup: ray (workbench study) or nnsight (the nnsight extra) did not install" >&2; exit 1; }
