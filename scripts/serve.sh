#!/usr/bin/env bash
# Install, then serve on http://127.0.0.1:8000 (CPU profile). Ctrl-C stops it.
# An embedded Ray is started unless a cluster is named: RAY_ADDRESS=host:port, or `--address host:port`
# among the arguments (which go to `serve run`); a named cluster that does not answer is an error.
# SERVE_CONFIG picks another Serve config file; Serve runs in its HAProxy mode (INFERENCE_SERVE_MODE=proxy:
# Serve's Python HTTP proxy).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export RAY_USAGE_STATS_ENABLED=0
exec "${INFERENCE_VENV:-.venv}/bin/python" -m deployments.launch.serve_launcher "${SERVE_CONFIG:-serve_config.cpu.yaml}" "$@"
