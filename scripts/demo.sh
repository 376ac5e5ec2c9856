#!/usr/bin/env bash
# `make demo`: the main job end to end on an embedded default, a few minutes on 2 cores.
# Profile ResNet-18 over batch sizes and core counts, fit the latency models,
# predict an unmeasured point and plot the profile.
set -euo pipefail
out=${1:-demo-out}
mkdir -p "$out"
qb=.venv/bin/qosbatch
cores=$(.venv/bin/python -c "import os; n=len(os.sched_getaffinity(0)); print('1,2' if n >= 2 else '1')")

echo "== 1. profile resnet18 (cores $cores) =="
$qb profile resnet18 --batch-sizes 1,2,3,4,6,8,12,16 --cores "$cores" --max-seconds 3 \
    -o "$out/resnet18.json"

echo "== 2. predict a batch size that was never fitted on =="
$qb predict "$out/resnet18.json" --batch 10 --cores "${cores##*,}"

echo "== 3. plot =="
$qb plot "$out/resnet18.json" -o "$out/resnet18.png"
echo "demo done: profile $out/resnet18.json, plot $out/resnet18.png"
