#!/usr/bin/env bash
# Create .venv and install the service; `--test` adds the test tools and models.
# torch goes first and alone: pinned to 2.13.0 so pip never swaps in another build.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-$(command -v python3.11 || command -v python3)}
"$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || { echo "Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
pip install torch==2.13.0
if [ "${1:-}" = "--test" ]; then pip install -e ".[test]"; else pip install -e .; fi
