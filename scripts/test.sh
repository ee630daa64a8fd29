#!/usr/bin/env bash
# Install with the test extras, then run the test suite (a real local Ray + Serve, a local test hub).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
export RAY_USAGE_STATS_ENABLED=0
exec .venv/bin/python -m pytest "$@"
