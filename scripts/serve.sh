#!/usr/bin/env bash
# Install, then serve on http://127.0.0.1:8000 with an embedded Ray (CPU profile). Ctrl-C stops it.
# SERVE_CONFIG picks another Serve config file.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export RAY_USAGE_STATS_ENABLED=0
# SIGINT back to its default: a shell starts background jobs with it ignored, and `serve run`
# needs it to shut Serve and its embedded Ray down.
exec .venv/bin/python -c 'import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
from ray.serve.scripts import cli
cli(["run", *sys.argv[1:]])' "${SERVE_CONFIG:-serve_config.cpu.yaml}" "$@"
