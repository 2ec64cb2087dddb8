#!/usr/bin/env bash
# The main job: set up .venv, then train a CPU-sized NCSN on embedded digits and sample from it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh data
exec .venv/bin/ncsn demo "$@"
