#!/usr/bin/env bash
# Create .venv and install exactly the locked versions: requirements.lock for the service,
# requirements-test.lock with `--test` (both made by scripts/lock.sh from pyproject.toml's ranges).
# torch goes first and alone, pinned to 2.13.0, so pip never swaps in another build.
# INFERENCE_VENV names another folder (scripts/test.sh --latest uses .venv-latest); INFERENCE_LOCK
# another lock file.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-$(command -v python3.11 || command -v python3)}
"$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || { echo "Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
venv=${INFERENCE_VENV:-.venv}
lock=${INFERENCE_LOCK:-requirements.lock}
[ "${1:-}" = "--test" ] && lock=${INFERENCE_LOCK:-requirements-test.lock}
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip() { "$venv/bin/python" -m pip --disable-pip-version-check -q "$@"; }
pip install torch==2.13.0
pip install -r "$lock"
pip install --no-deps -e .
