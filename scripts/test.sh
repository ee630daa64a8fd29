#!/usr/bin/env bash
# Install the locked test set into .venv, then run the test suite (a real local Ray + Serve, a local
# test hub). Arguments go to pytest.
# `--latest` (drift check, not run by CI): the same suite in .venv-latest on the newest versions
# pyproject.toml's ranges allow today, after printing which locked versions they replace.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--latest" ]; then
  shift
  export INFERENCE_VENV=.venv-latest INFERENCE_LOCK=.venv-latest/requirements-test.lock
  bash scripts/lock.sh --out .venv-latest --upgrade
  echo "newer than the lock:"; diff requirements-test.lock "$INFERENCE_LOCK" | sed -n 's/^> \([^ ]*\).*/  \1/p' || true
fi
venv=${INFERENCE_VENV:-.venv}
bash scripts/install.sh --test
export RAY_USAGE_STATS_ENABLED=0
exec "$venv/bin/python" -m pytest "$@"
