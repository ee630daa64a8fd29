#!/usr/bin/env bash
# Print the path of a uv of the pinned version (installed into .cache/uv-venv on first use).
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.13.9
venv=.cache/uv-venv
if ! [ -x "$venv/bin/uv" ] || [ "$("$venv/bin/uv" --version | cut -d' ' -f2)" != "$version" ]; then
  python=${PYTHON:-$(command -v python3.11 || command -v python3)}
  "$python" -m venv "$venv" >&2
  "$venv/bin/python" -m pip --disable-pip-version-check -q install "uv==$version" >&2
fi
echo "$PWD/$venv/bin/uv"
