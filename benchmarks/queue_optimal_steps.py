"""queue-optimal against best-tuned dynamic and fixed batching when the rate steps.

A Poisson workload whose rate moves in steps (low, high, peak, medium: fractions
of the node's batching capacity) with a fixed SLO, on one worker. Baselines are
tuned offline for the whole trace, as an operator would with one setting:
``dynamic`` over max_batch_size x max_queue_delay_ms, ``fixed`` over batch_size
(with no timeout, BatOpt's fixed-batch baseline; and with a timeout of the SLO's
half, the way the peers ship it). Each baseline keeps its setting with the lowest
mean latency (BatOpt's objective; attainment is printed beside it).
``queue-optimal`` re-plans (a, b) from its online rate estimate; ``slo`` is
shown for reference.

    .venv/bin/python benchmarks/queue_optimal_steps.py --profile resnet18.json
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from qosbatch.core.profile import load_profile
from qosbatch.latency.table import LatencyTable
from qosbatch.metrics import Metrics, mean_latency_ms, summarize
from qosbatch.policies.registry import PolicySpec, parse_policy
from qosbatch.sim.capacity import DYNAMIC_GRID
from qosbatch.sim.kernel import Deployment, simulate
from qosbatch.testing import synthetic_profile
from qosbatch.workloads import parse_workload

STEPS = (0.1, 0.4, 0.7, 0.25)  # rate per step, as a fraction of the batching capacity


def run(
    trace: object, deps: list[Deployment], spec: PolicySpec, seed: int
) -> tuple[Metrics, float]:
    res = simulate(trace, deps, spec.factory(), seed=seed)  # type: ignore[arg-type]
    return summarize(res.records), mean_latency_ms(res.records)


def best_of(
    trace: object, deps: list[Deployment], specs: list[PolicySpec], seed: int
) -> tuple[PolicySpec, Metrics, float]:
    scored = [(spec, *run(trace, deps, spec, seed)) for spec in specs]
    return min(scored, key=lambda x: x[2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", help="profile JSON (default: a synthetic AlexNet-like model)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--step-s", type=float, default=60.0, help="seconds per rate step")
    ap.add_argument("--slo-x", type=float, default=5.0, help="SLO as a multiple of s(1, cores)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    profile = load_profile(args.profile) if args.profile else synthetic_profile()
    name = profile.model.name
    table = LatencyTable.from_profile(profile, max_cores=args.cores, max_batch=32)
    capacity = max(b / table.s(b, args.cores) for b in range(1, 33))
    slo_ms = round(args.slo_x * table.s(1, args.cores) * 1e3)
    rates = "/".join(f"{f * capacity:.2f}" for f in STEPS)
    at = "/".join(f"{i * args.step_s:g}" for i in range(len(STEPS)))
    text = f"step:rates={rates},at_s={at},duration_s={len(STEPS) * args.step_s:g},slo_ms={slo_ms}"
    trace = parse_workload(text).generate(np.random.default_rng(args.seed), name)
    deps = [Deployment(name, table, args.cores, 1)]
    print(f"{name} on {args.cores} cores, batching capacity {capacity:.1f} req/s; {text}")
    print(f"{len(trace)} requests, SLO {slo_ms} ms (s(1) = {table.s(1, args.cores) * 1e3:.1f} ms)")

    dyn = [
        parse_policy(f"dynamic:max_batch_size={b},max_queue_delay_ms={d}")
        for b in DYNAMIC_GRID["max_batch_size"]
        for d in DYNAMIC_GRID["max_queue_delay_ms"]
    ]
    sizes = (1, 2, 4, 8, 16, 32)
    fixed = [parse_policy(f"fixed:batch_size={b}") for b in sizes]
    fixed_t = [parse_policy(f"fixed:batch_size={b},timeout_ms={slo_ms / 2:g}") for b in sizes]
    rows = [("queue-optimal", parse_policy("queue-optimal"), *run(trace, deps,
             parse_policy("queue-optimal"), args.seed))]  # fmt: skip
    rows.append(("dynamic (best of 42)", *best_of(trace, deps, dyn, args.seed)))
    rows.append(("fixed (best size)", *best_of(trace, deps, fixed, args.seed)))
    rows.append(("fixed+timeout (best size)", *best_of(trace, deps, fixed_t, args.seed)))
    rows.append(("slo (reference)", parse_policy("slo"), *run(trace, deps, parse_policy("slo"),
                                                               args.seed)))  # fmt: skip

    print(f"\n{'policy':28s} {'setting':42s} {'mean ms':>8s} {'p99 ms':>8s} "
          f"{'attain':>7s} {'batch':>6s}")  # fmt: skip
    for label, spec, m, mean in rows:
        print(f"{label:28s} {spec.label:42s} {mean:8.1f} {m.p99_ms:8.1f} "
              f"{m.attainment:7.2%} {m.mean_batch:6.2f}")  # fmt: skip
    q = rows[0][3]
    for label, _, _, mean in rows[1:4]:
        ratio = mean / q if q > 0 and math.isfinite(mean) else float("nan")
        print(f"mean latency {label} / queue-optimal: {ratio:.2f}x")


if __name__ == "__main__":
    main()
