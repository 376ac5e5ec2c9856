"""One plan, one trace: ``qosbatch serve --plan`` against ``qosbatch deploy`` (Ray Serve).

All run the same model, policy, SLO and cores from one plan file; the same
open-loop trace goes to each (``qosbatch bench``'s load generator), one after
the other: serve, Ray with its replicas pinned to claimed cores (deploy's
default), and Ray with ``--no-pin`` (``--skip-unpinned`` leaves that one out).
Printed side by side: attainment, p50/p99 latency, throughput, and each Ray
run's per-request overhead as the ratio of its mean latency to serve's.

    .venv/bin/python benchmarks/ray_vs_serve.py --model small-cnn --rate 40 --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import tempfile
from pathlib import Path

import numpy as np

from qosbatch.client.loadgen import run_load
from qosbatch.metrics import mean_latency_ms, summarize
from qosbatch.testing import running_server
from qosbatch.workloads.spec import parse_workload

PLAN = """\
schema: qosbatch.plan
version: 1
models:
- {{name: {model}, slo_ms: {slo}}}
nodes:
- name: node-0
  replicas:
"""
REPLICA = '  - {{model: {model}, cores: {cores}, policy: "{policy}", memory_mib: 500}}\n'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="small-cnn")
    ap.add_argument("--policy", default="slo")
    ap.add_argument("--slo-ms", type=float, default=100.0)
    ap.add_argument("--cores", type=int, default=1, help="per replica")
    ap.add_argument("--replicas", type=int, default=1, help="all on the one node")
    ap.add_argument("--rate", type=float, default=40.0)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-unpinned", action="store_true", help="no Ray --no-pin run")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plan = Path(tmp) / "plan.yaml"
        replica = REPLICA.format(model=args.model, cores=args.cores, policy=args.policy)
        plan.write_text(PLAN.format(model=args.model, slo=args.slo_ms) + replica * args.replicas)
        spec = f"poisson:rate={args.rate},duration_s={args.duration},slo_ms={args.slo_ms}"
        trace = parse_workload(spec).generate(np.random.default_rng(args.seed), args.model)
        runs = [
            ("qosbatch serve", ["serve", "--plan", str(plan), "--port", "0"]),
            ("Ray, pinned", ["deploy", str(plan), "--port", str(free_port())]),
            ("Ray, --no-pin", ["deploy", str(plan), "--port", str(free_port()), "--no-pin"]),
        ]
        rows = {}
        for label, cli in runs[:2] if args.skip_unpinned else runs:
            with running_server(cli) as url:
                records = asyncio.run(run_load(url, args.model, trace)).records
            rows[label] = (summarize(records), mean_latency_ms(records))
    print(
        f"{args.model}, {len(trace)} requests: {spec}, policy {args.policy}, "
        f"{args.replicas} replica(s) x {args.cores} core(s)"
    )
    print(f"{'system':<18}{'attain %':>9}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'req/s':>8}")
    for label, (m, mean) in rows.items():
        print(
            f"{label:<18}{100 * m.attainment:>9.2f}{m.p50_ms:>9.1f}{m.p99_ms:>9.1f}"
            f"{mean:>9.1f}{m.throughput:>8.1f}"
        )
    base = rows["qosbatch serve"][1]
    for label, (_, mean) in list(rows.items())[1:]:
        print(f"{label} / serve mean latency: {mean / base:.2f}x (+{mean - base:.1f} ms)")


if __name__ == "__main__":
    main()
