"""Simulator speed: simulated requests per wall second on a 1,000,000-request Poisson trace.

The trace is drawn once (not timed); each policy's ``simulate`` call is timed
end to end, records included. The load is ``--load`` times the node's throughput
at batch 1 (one worker per core), with a fixed SLO of 4 x s(1, cores): a busy,
realistic operating point, where batches form and some requests are shed.

``--compiled build/compiled`` (after ``make compiled``) runs the source and the
mypyc-compiled build each in a child process on the same trace, side by side, and
prints both speeds, their ratio, and whether every record of the two runs is equal.

    .venv/bin/python benchmarks/sim_throughput.py --profile /tmp/qb/resnet18.json
    make compiled && .venv/bin/python benchmarks/sim_throughput.py --compiled build/compiled
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from qosbatch.core.profile import load_profile
from qosbatch.latency.table import LatencyTable
from qosbatch.metrics import summarize
from qosbatch.policies.registry import parse_policy
from qosbatch.sim.kernel import Deployment, simulate
from qosbatch.testing import records_digest, synthetic_profile
from qosbatch.workloads import arrivals
from qosbatch.workloads.trace import Trace


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", help="profile JSON (default: a synthetic AlexNet-like model)")
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--load", type=float, default=0.7, help="fraction of batch-1 throughput")
    ap.add_argument("--policy", action="append", help="policy spec (repeatable)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--compiled", metavar="DIR", help="compare with the compiled build in DIR, side by side"
    )
    ap.add_argument("--json", action="store_true", help="one JSON line per policy (children)")
    args = ap.parse_args()
    if args.compiled:
        compare_builds(args)
        return

    profile = load_profile(args.profile) if args.profile else synthetic_profile()
    name = profile.model.name
    table = LatencyTable.from_profile(profile, max_cores=args.cores, max_batch=64)
    per_worker = args.cores // args.workers
    rate = args.load * args.workers / table.s(1, per_worker)
    slo_ms = 4 * table.s(1, args.cores) * 1e3
    rng = np.random.default_rng(args.seed)
    trace = Trace.of(arrivals.poisson_count(rng, rate, args.requests), slo_ms, name)
    dep = [Deployment(name, table, args.cores, args.workers)]
    if not args.json:
        print(
            f"{name}: {args.requests:,} Poisson requests at {rate:.1f} req/s "
            f"({trace.duration_s:,.0f} s simulated), SLO {slo_ms:.0f} ms, "
            f"{args.workers} worker(s) on {args.cores} cores"
        )
    for spec_text in args.policy or ["dynamic:max_batch_size=8,max_queue_delay_ms=5", "slo"]:
        spec = parse_policy(spec_text)
        start = time.perf_counter()
        result = simulate(trace, dep, spec.factory(), seed=args.seed)
        wall = time.perf_counter() - start
        speed = len(trace) / wall
        if args.json:
            digest = records_digest(result.records)
            print(json.dumps({"policy": spec.label, "rate": speed, "digest": digest}))
            continue
        m = summarize(result.records)
        print(
            f"  {spec.label:45s} {speed:>10,.0f} requests/s "
            f"({wall:.2f} s wall; attainment {m.attainment:.2%}, {result.batches:,} batches)"
        )


def compare_builds(args: argparse.Namespace) -> None:
    """This benchmark in two children, the source and the compiled build, on one trace."""
    if not Path(args.compiled, "qosbatch").is_dir():
        sys.exit(f"error: no compiled build in {args.compiled} (make compiled builds one)")
    argv = [f"--{k}={getattr(args, k)}" for k in ("requests", "cores", "workers", "load", "seed")]
    argv += [f"--profile={args.profile}"] if args.profile else []
    argv += [f"--policy={p}" for p in args.policy or []]
    rows: dict[str, list[dict[str, Any]]] = {}
    for build, path in (
        ("source", Path(__file__).resolve().parents[1] / "src"),
        ("compiled", Path(args.compiled).resolve()),
    ):
        env = {**os.environ, "PYTHONPATH": str(path)}
        out = subprocess.run(
            [sys.executable, __file__, *argv, "--json"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        rows[build] = [json.loads(line) for line in out.splitlines()]
    print(
        f"{args.requests:,} Poisson requests at {args.load}x the batch-1 throughput, "
        f"{args.workers} worker(s) on {args.cores} cores; simulated requests per wall second:"
    )
    print(f"{'policy':45s} {'source':>12s} {'compiled':>12s}  ratio  records")
    for src, fast in zip(rows["source"], rows["compiled"], strict=True):
        same = "identical" if src["digest"] == fast["digest"] else "DIFFER"
        print(
            f"{src['policy']:45s} {src['rate']:>10,.0f}/s {fast['rate']:>10,.0f}/s "
            f"{fast['rate'] / src['rate']:5.2f}x  {same}"
        )


if __name__ == "__main__":
    main()
