#!/usr/bin/env bash
# Create .venv and install exactly the locked versions: requirements.lock for the service,
# requirements-test.lock with `--test` (both made by scripts/lock.sh from pyproject.toml's ranges).
# `--test` also installs Debian's chromium for the browser tests.
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
# The console's browser tests drive Debian's chromium through Playwright (its own browser download
# cannot reach the internet here); the realtime tests speak with Debian's espeak-ng.
if [ "${1:-}" = "--test" ] && ! { command -v chromium && command -v espeak-ng; } >/dev/null; then
  as_root=(); [ "$(id -u)" = 0 ] || as_root=(sudo)
  "${as_root[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends chromium \
    espeak-ng >/dev/null
fi
