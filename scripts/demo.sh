#!/usr/bin/env bash
# `make demo`: the main job end to end on an embedded default, a few minutes on 2 cores.
# Profile ResNet-18 over batch sizes and core counts, fit the latency models,
# predict an unmeasured point, plot the profile; then simulate the four policies
# on a bursty workload and ask the queueing model for the best (a, b).
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

echo "== 4. simulate four policies on a bursty workload (MMPP, network-delay SLOs) =="
workload="mmpp:rates=8/50,switch_s=5/1,duration_s=300,slo=netdelay,base_ms=250,delay_ms=40"
$qb simulate --profile "$out/resnet18.json" --policy slo,dynamic,aimd,single \
    --workload "$workload" --plot "$out/policies.png"

# 60% of what the node sustains with batches of up to 32, from the profile just taken.
rate=$(.venv/bin/python -c "
from qosbatch.core.profile import load_profile
from qosbatch.latency.table import LatencyTable
t = LatencyTable.from_profile(load_profile('$out/resnet18.json'), ${cores##*,}, 32)
print(round(0.6 * max(b / t.s(b, ${cores##*,}) for b in range(1, 33)), 1))")
echo "== 5. queueing model: the best (a, b) at $rate req/s (60% of capacity) =="
$qb queue --profile "$out/resnet18.json" --rate "$rate" --b 32 --optimize --plot "$out/queue.png"

echo "== 6. serve resnet18 (policy slo) and send it 30 s of the bursty workload, live =="
$qb workload generate "${workload/duration_s=300/duration_s=30}" --model resnet18 -o "$out/trace.csv"
echo "-- simulated, same trace:"
$qb simulate --profile "$out/resnet18.json" --policy slo --trace "$out/trace.csv"
port=$(.venv/bin/python -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
$qb serve --model resnet18 --profile "$out/resnet18.json" --policy slo --port "$port" \
    > "$out/serve.log" 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null || true; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 240); do
    grep -q "serving on" "$out/serve.log" && break
    kill -0 $server 2>/dev/null || { cat "$out/serve.log"; exit 1; }
    sleep 0.5
done
echo "-- live, from the client's side:"
$qb bench --url "http://127.0.0.1:$port" --model resnet18 --trace "$out/trace.csv" --plot "$out/live.png"
kill -TERM $server
wait $server
trap - EXIT
echo "== 7. an offline job: plan 96 samples by a deadline on cloud nodes, then run them here =="
.venv/bin/python -c "import numpy as np; np.save('$out/images.npy', np.random.default_rng(0).standard_normal((96, 3, 224, 224), dtype=np.float32))"
$qb job plan "$out/images.npy" --model resnet18 --profile "$out/resnet18.json" --deadline 30s
$qb job run "$out/images.npy" --model resnet18 --profile "$out/resnet18.json" -o "$out/job" \
    --deadline 1m
echo "demo done: profile $out/resnet18.json, plots $out/resnet18.png $out/policies.png" \
    "$out/queue.png $out/live.png"
