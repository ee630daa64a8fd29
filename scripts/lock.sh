#!/usr/bin/env bash
# Refresh the lock files from pyproject.toml's ranges: run after changing a dependency, or to take
# newer releases on purpose (then run the suite: `bash scripts/test.sh`). Installs read only the locks.
#   requirements-test.lock  the service and its tests (scripts/test.sh, CI)
#   requirements.lock       the service alone (scripts/serve.sh), the same versions
# `--out DIR` writes them into DIR instead (scripts/test.sh --latest). Other arguments go to
# `uv pip compile`, e.g. `--upgrade` or `--upgrade-package transformers`.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.
if [ "${1:-}" = "--out" ]; then out=$2; shift 2; mkdir -p "$out"; fi
uv=$(bash scripts/uv.sh)
# /opt/wheels holds the local CPU build of torch 2.13.0 that install.sh takes; without it uv would
# lock PyPI's CUDA build and its nvidia-* packages.
links=(); [ -d /opt/wheels ] && links=(--find-links /opt/wheels)
compile() { "$uv" pip compile pyproject.toml --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
  "${links[@]}" --no-header --annotation-style line --quiet "$@"; }
compile --extra test -o "$out/requirements-test.lock" "$@"
compile -c "$out/requirements-test.lock" -o "$out/requirements.lock" "$@"
echo "locked: $(grep -c '==' "$out/requirements-test.lock") packages (test), $(grep -c '==' "$out/requirements.lock") (service)"
