#!/usr/bin/env bash
# The README's GPU figures in one go: parity on the device, then the 3B suites, each step under its own
# time limit so that one slow step cannot take the others' results with it.
#   bash benchmarks/gpu_suite.sh OUT_DIR [SHAPE]     (SHAPE: 3b, 8b, 3b-siglip2, 8b-siglip2; default 3b)
set -u
OUT=${1:?usage: gpu_suite.sh OUT_DIR [SHAPE]}
SHAPE=${2:-3b}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
step() {  # step NAME SECONDS COMMAND...: log to OUT/NAME.log, print its tail and how it ended
  local name=$1 limit=$2 start=$SECONDS
  shift 2
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "=== $name: exit $? after $((SECONDS - start)) s"
  grep -v "Loading weights" "$OUT/$name.log" | tail -n 12
}
B=(python -m benchmarks.run --shape "$SHAPE" --device cuda)
step parity 150 python -m benchmarks.device_parity --device cuda
step inference_b1 150 "${B[@]}" --suite inference --cache static --batches 1 --repeats 3 --out "$OUT/inference_b1.json"
step train 150 "${B[@]}" --suite train --train-batch 8 --repeats 3 --out "$OUT/train.json"
step inference_b32 150 "${B[@]}" --suite inference --cache static --batches 32 --repeats 3 --out "$OUT/inference_b32.json"
step vision 60 "${B[@]}" --suite vision --repeats 5 --out "$OUT/vision.json"
