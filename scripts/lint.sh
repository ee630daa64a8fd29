#!/usr/bin/env bash
# Lint and type-check (CI runs this before the tests): ruff over the code and tests, mypy over the
# service's packages. Both come from the locked test set (`bash scripts/install.sh --test`).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${INFERENCE_VENV:-.venv}
"$venv/bin/ruff" check deployments registry tests bench
"$venv/bin/mypy" deployments registry
