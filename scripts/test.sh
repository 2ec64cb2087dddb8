#!/usr/bin/env bash
# Set up .venv, then run lint and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ruff check src tests benchmarks
# bootstrap installed every extra: a test that needs one (diffusers' round trip) fails, not skips
export NCSN_TEST_ALL_EXTRAS=1
exec .venv/bin/python -m pytest -q "$@"
