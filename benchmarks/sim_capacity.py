"""Capacity at 99% attainment: slo vs best-tuned dynamic vs aimd vs single.

Two workloads on one model (default: a resnet18 profile on 2 cores):
(a) Poisson arrivals, a fixed SLO; (b) bursty MMPP (rates 1:8, mean dwell 5 s
low / 1 s high, the shape of ``mmpp:rates=50/400,switch_s=5/1``) with network-delay
SLOs (a base budget minus a lognormal delay). SLOs default to a few times the
batch-1 latency on all cores. Each policy gets its best deployment: 1 worker on
all cores or one worker per core (Triton's instance count); ``dynamic`` also gets
its best max_batch_size x max_queue_delay_ms. Capacity is the highest mean arrival
rate with >= 99% of requests on time, found by bisection on a load factor.

    .venv/bin/python benchmarks/sim_capacity.py --profile /tmp/qb/resnet18.json
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from qosbatch.core.profile import load_profile
from qosbatch.latency.table import LatencyTable
from qosbatch.policies.registry import PolicySpec, parse_policy
from qosbatch.sim.capacity import DYNAMIC_GRID, TraceAt, find_capacity, trace_at
from qosbatch.sim.kernel import Deployment
from qosbatch.testing import synthetic_profile
from qosbatch.workloads import parse_workload


@dataclass
class Row:
    policy: str
    workers: int
    rate: float


def best_capacity(
    traces: TraceAt,
    table: LatencyTable,
    cores: int,
    spec: PolicySpec,
    workers_grid: list[int],
    seed: int,
    rel_tol: float,
) -> Row:
    best = Row(spec.label, 0, 0.0)
    for workers in workers_grid:
        deps = [Deployment(MODEL, table, cores, workers)]
        cap = find_capacity(traces, deps, spec, seed=seed, rel_tol=rel_tol)
        if cap.rate > best.rate:
            best = Row(spec.label, workers, cap.rate)
    return best


def tuned_dynamic(
    traces: TraceAt,
    table: LatencyTable,
    cores: int,
    workers_grid: list[int],
    seed: int,
    rel_tol: float,
    grid: dict[str, Sequence[Any]],
) -> Row:
    best = Row("dynamic", 0, 0.0)
    for bs in grid["max_batch_size"]:
        for delay in grid["max_queue_delay_ms"]:
            spec = parse_policy(f"dynamic:max_batch_size={bs},max_queue_delay_ms={delay}")
            row = best_capacity(traces, table, cores, spec, workers_grid, seed, rel_tol)
            if row.rate > best.rate:
                best = row
    return best


MODEL = "model"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", help="profile JSON (default: a synthetic AlexNet-like model)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--slo-x", type=float, default=4.0, help="SLO as a multiple of s(1, cores)")
    ap.add_argument("--poisson-s", type=float, default=300.0, help="Poisson duration (s)")
    ap.add_argument("--mmpp-s", type=float, default=600.0, help="MMPP duration (s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="small dynamic grid, shorter runs")
    args = ap.parse_args()

    global MODEL
    profile = load_profile(args.profile) if args.profile else synthetic_profile()
    MODEL = profile.model.name
    table = LatencyTable.from_profile(profile, max_cores=args.cores, max_batch=64)
    s1 = table.s(1, args.cores) * 1e3
    slo_ms = round(args.slo_x * s1)
    # Network-delay budgets: about the same mean as the fixed SLO, and the network
    # leaves at least 2 x s(1) for 99.9% of requests (delay ~ lognormal, sigma 0.5).
    base_ms = round((args.slo_x + 0.5) * s1)
    delay_ms = round(0.5 * s1)
    grid = dict(DYNAMIC_GRID)
    if args.quick:
        grid = {"max_batch_size": (1, 2, 4, 8), "max_queue_delay_ms": (0, 2, 10)}
        args.poisson_s, args.mmpp_s = args.poisson_s / 3, args.mmpp_s / 3
    rate = 0.5 * args.cores / table.s(1, args.cores)  # a starting point only; bisection scales
    workloads = {
        "(a) poisson, fixed SLO": (
            f"poisson:rate={rate:.2f},duration_s={args.poisson_s:g},slo_ms={slo_ms}"
        ),
        "(b) bursty MMPP, netdelay SLO": (
            f"mmpp:rates={rate / 4:.2f}/{2 * rate:.2f},switch_s=5/1,duration_s={args.mmpp_s:g},"
            f"slo=netdelay,base_ms={base_ms},delay_ms={delay_ms},delay_sigma=0.5"
        ),
    }
    workers_grid = sorted({1, args.cores})
    print(f"model {MODEL}: s(1,{args.cores}) = {s1:.1f} ms, s(1,1) = {table.s(1, 1) * 1e3:.1f} ms")
    results = {}
    for name, text in workloads.items():
        print(f"\n{name}: {text}")
        traces = trace_at(parse_workload(text), args.seed, MODEL)
        t0 = time.perf_counter()

        def best(name: str, traces: TraceAt = traces) -> Row:
            spec = parse_policy(name)
            return best_capacity(traces, table, args.cores, spec, workers_grid, args.seed, 0.01)

        rows = [
            best("slo"),
            tuned_dynamic(traces, table, args.cores, workers_grid, args.seed, 0.02, grid),
            best("aimd"),
            best("single"),
        ]
        results[name] = rows
        for row in rows:
            print(f"  {row.policy:50s} workers={row.workers}  capacity {row.rate:7.2f} req/s")
        print(f"  ({time.perf_counter() - t0:.0f} s)")
    print("\ncapacity at 99% attainment, slo relative to each baseline:")
    print(f"{'workload':32s} {'slo/dynamic':>12s} {'slo/aimd':>10s} {'slo/single':>11s}")
    for name, rows in results.items():
        slo = rows[0].rate
        ratios = [slo / r.rate if r.rate else float("inf") for r in rows[1:]]
        print(f"{name:32s} " + " ".join(f"{x:>10.2f}x" for x in ratios))


if __name__ == "__main__":
    main()
