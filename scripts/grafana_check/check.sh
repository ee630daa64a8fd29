#!/usr/bin/env bash
# Type-checks a Grafana dashboard JSON (default: grafana/inference_dashboard.json) against
# the dashboard model published by Grafana in the npm package @grafana/schema.
# Usage: scripts/grafana_check/check.sh [path/to/dashboard.json]
set -euo pipefail
json="$(realpath "${1:-$(dirname "$0")/../../grafana/inference_dashboard.json}")"
cd "$(dirname "$0")"
if [ ! -d node_modules ]; then
  npm ci --no-audit --no-fund --loglevel=error >/dev/null
fi
node generate.mjs "$json"
# tsc reports positions in generated/dashboard.gen.ts; its line numbers equal the JSON's.
if out="$(node_modules/.bin/tsc -p tsconfig.json --pretty false 2>&1)"; then
  echo "PASS: $json satisfies @grafana/schema $(node -p 'require("./node_modules/@grafana/schema/package.json").version') Dashboard"
else
  printf '%s\n' "$out" | sed "s#^generated/dashboard.gen.ts#$json#"
  echo "FAIL: $json does not satisfy @grafana/schema Dashboard ($(printf '%s\n' "$out" | grep -c 'error TS') errors)"
  exit 1
fi
