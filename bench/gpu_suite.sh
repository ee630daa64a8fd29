#!/usr/bin/env bash
# The GPU checks, as one prepared run for a lent device (nothing reaches a hub there: every model is a
# random-weight one built from its real config). Each step has its own time limit and writes its JSON into
# $OUT (default bench/results/gpu); a step that fails or runs out of time is recorded and the next runs.
#
#   bash bench/gpu_suite.sh                 # on the device, with the wheels it lacks carried in .whl
#
# The device's image has torch, transformers, sentence-transformers and onnxruntime, but no Ray: Ray's wheel
# alone is larger than what may travel to it, so the steps here measure the engines in-process on the GPU
# (Whisper on transformers and on CTranslate2 float16, against faster-whisper used directly, with each
# path's peak GPU memory; chat's continuous vs static batching through the chat deployment's scheduler). Deploying serve_config.gpu1.yaml itself is checked on a Ray that declares the GPU
# (tests/test_gpu1_profile.py); the service-level GPU benches (bench/*_batching.py --gpu) need Ray there.
# Wheels to carry (pip download ... -d .whl, see the device notes): ctranslate2, faster-whisper, av.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-bench/results/gpu}
budget=${GPU_SUITE_SECONDS:-480}
mkdir -p "$out"
started=$(date +%s)
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
python=${PYTHON:-python3}

step() {  # step NAME SECONDS COMMAND...: run within the time left, log to $out/NAME.log
  local name=$1 limit=$2; shift 2
  local left=$((budget - ($(date +%s) - started)))
  [ "$left" -lt 20 ] && { echo "skip $name: budget spent" | tee -a "$out/steps.log"; return; }
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (at most ${limit}s)" | tee -a "$out/steps.log"
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  echo "$name exit $?" | tee -a "$out/steps.log"
  tail -n 15 "$out/$name.log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$out/gpu.csv" 2>&1
step whisper_engines 240 "$python" bench/whisper_engines.py --gpu --skip-service --seconds 300 --batch 16 \
  --out "$out/whisper_engines.json"
# continuous vs static batching of chat on Qwen2.5-0.5B's layer sizes (bf16), through the deployment's own
# scheduler in-process (no Ray there); 16 clients, half asking 8 tokens, half 256
step chat_batching 150 "$python" bench/chat_batching.py --in-process --gpu --size 0.5b --requests 64 \
  --out "$out/chat_batching.json"
echo "suite done in $(($(date +%s) - started)) s; results in $out"
