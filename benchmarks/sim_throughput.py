"""Simulator speed: simulated requests per wall second on a 1,000,000-request Poisson trace.

The trace is drawn once (not timed); each policy's ``simulate`` call is timed
end to end, records included. The load is ``--load`` times the node's throughput
at batch 1 (one worker per core), with a fixed SLO of 4 x s(1, cores): a busy,
realistic operating point, where batches form and some requests are shed.

    .venv/bin/python benchmarks/sim_throughput.py --profile /tmp/qb/resnet18.json
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from qosbatch.core.profile import load_profile
from qosbatch.metrics import summarize
from qosbatch.policies.latency_table import LatencyTable
from qosbatch.policies.registry import parse_policy
from qosbatch.sim.kernel import Deployment, simulate
from qosbatch.testing import synthetic_profile
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
    args = ap.parse_args()

    profile = load_profile(args.profile) if args.profile else synthetic_profile()
    name = profile.model.name
    table = LatencyTable.from_profile(profile, max_cores=args.cores, max_batch=64)
    per_worker = args.cores // args.workers
    rate = args.load * args.workers / table.s(1, per_worker)
    slo_ms = 4 * table.s(1, args.cores) * 1e3
    rng = np.random.default_rng(args.seed)
    trace = Trace.of(arrivals.poisson_count(rng, rate, args.requests), slo_ms, name)
    dep = [Deployment(name, table, args.cores, args.workers)]
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
        m = summarize(result.records)
        print(
            f"  {spec.label:45s} {len(trace) / wall:>10,.0f} requests/s "
            f"({wall:.2f} s wall; attainment {m.attainment:.2%}, {result.batches:,} batches)"
        )


if __name__ == "__main__":
    main()
