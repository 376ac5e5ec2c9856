"""Planner speed and plan cost: 10 models x 6 node types x 8 batch settings x 8 core counts.

    .venv/bin/python benchmarks/planner_speed.py [--repeats 3] [--verify]

The models are synthetic profiles of Amdahl-like latency laws spanning a small
MLP (2 ms of work per sample) to a ResNet-50-sized CNN (400 ms), profiled at
1, 2 and 4 cores with 3% spread; each has a Poisson rate and a p99 SLO. The
six node types are priced as AWS on-demand list prices (mid 2024) with given,
different per-core compute power, so each has its own speed factor. Options:
8 max batch sizes (1..32) x 8 core counts (1..16) x 6 node types per model =
3,840 in all. Every plan (and both baselines) carries the default 3% headroom.

Prints the median wall time of ``make_plan`` (capacities, pruning, the integer
program, placement and latency prediction; the per-model latency tables are
built once, outside the timing, as a real run builds them while loading
profiles) and the cost of the plan against two baselines on the same workload:

- naive: each model alone on the cheapest node type that meets its SLO, one
  replica per node on all its cores, fixed max batch 8 (the largest b <= 8 whose
  full batch meets the SLO where 8 does not), as many nodes as its rate needs;
- per model: each model alone (no node shared between models) but with the
  planner's full choice of options (``recommend``).

Goal (issue 6): <= 5 s, aim 1 s. ``--pow2`` runs the same models on 128-192-core
node types with replica sizes 1..128, where packing is exact and the integer
program is proven optimal at once.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

from qosbatch.core.profile import Measurement, ModelInfo, NodeInfo, Profile
from qosbatch.latency import AmdahlModel
from qosbatch.planner import (
    Catalogue,
    Demand,
    ModelService,
    NodeType,
    PlannerSettings,
    Target,
    make_plan,
    recommend,
)
from qosbatch.planner.capacity import Curve

WORK_S = (0.002, 0.005, 0.01, 0.02, 0.04, 0.06, 0.1, 0.15, 0.25, 0.4)  # per sample, 1 core
RATES = (3200.0, 2400.0, 1600.0, 960.0, 640.0, 400.0, 240.0, 160.0, 80.0, 48.0)
SLO_MS = (50.0, 60.0, 80.0, 100.0, 150.0, 200.0, 300.0, 450.0, 700.0, 1000.0)
MAX_BATCHES = (1, 2, 4, 8, 12, 16, 24, 32)
CORES = (1, 2, 3, 4, 6, 8, 12, 16)
POW2_CORES = (1, 2, 4, 8, 16, 32, 64, 128)
NAIVE_BATCH = 8
GFLOPS_PER_CORE = 40.0  # the profiled node's


def big_node_types() -> tuple[NodeType, ...]:
    """Nodes of 128-192 vCPUs: with replica sizes 1..128 (powers of two) packing is exact."""
    return (
        NodeType("c6i.32xlarge", 128, 256, 5.44, 40.0),
        NodeType("c6a.32xlarge", 128, 256, 4.896, 33.0),
        NodeType("c7i.48xlarge", 192, 384, 8.568, 46.0),
        NodeType("m6i.32xlarge", 128, 512, 6.144, 38.0),
        NodeType("c6a.48xlarge", 192, 384, 7.344, 33.0),
        NodeType("m7i.48xlarge", 192, 768, 9.677, 46.0),
    )


def node_types() -> tuple[NodeType, ...]:
    return (
        NodeType("c6i.4xlarge", 16, 32, 0.68, 40.0),
        NodeType("c6i.8xlarge", 32, 64, 1.36, 40.0),
        NodeType("c6i.12xlarge", 48, 96, 2.04, 40.0),
        NodeType("c7i.8xlarge", 32, 64, 1.428, 46.0),
        NodeType("m6i.8xlarge", 32, 128, 1.536, 38.0),
        NodeType("c6a.12xlarge", 48, 96, 1.836, 33.0),
    )


def profile(i: int) -> Profile:
    w = WORK_S[i]
    law = AmdahlModel(alpha=0.85 * w, beta=0.1 * w, gamma=0.05 * w, delta=0.003 + 0.1 * w)
    points = [
        Measurement(b, c, float(law.predict_s(b, c)) * 1e3, 0.0, 0.03, int(2e6 * b), 10)
        for c in (1, 2, 4)
        for b in (1, 2, 4, 8, 16, 32)
    ]
    flops = w * GFLOPS_PER_CORE * 1e9 / 4  # a density of 4 at one core
    return Profile(
        model=ModelInfo(f"model{i}", "factory", (1,), flops, int(5e6 * (i + 1)), "torch"),
        node=NodeInfo("bench cpu", 4, {c: GFLOPS_PER_CORE * c for c in (1, 2, 4)}),
        measurements=points,
    )


def naive_cost(
    service: ModelService, demand: Demand, catalogue: Catalogue, headroom: float
) -> float:
    """Each model alone on whole nodes of its cheapest type, one replica per node, b <= 8."""
    best = math.inf
    for t in catalogue.node_types:
        f = t.speed_factor(service.node, t.cores)
        for b in range(NAIVE_BATCH, 0, -1):
            curve = Curve(
                service.means(t.cores, b), service.cvs(t.cores, b), 1, b, demand.target.percentile
            )
            if curve.full_batch_s * f <= demand.target.slo_s:
                break
        capacity = curve.max_rate(demand.target.slo_s / f, 1e-3) / f
        if capacity > 0:
            nodes = math.ceil(demand.rate * (1 + headroom) / capacity)
            best = min(best, nodes * float(t.price_per_hour or 0))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--verify", action="store_true", help="also simulate the plan")
    ap.add_argument(
        "--pow2",
        action="store_true",
        help="128-192-core nodes and replica sizes 1, 2, 4, ..., 128 (exact packing)",
    )
    args = ap.parse_args()
    types, cores = (big_node_types(), POW2_CORES) if args.pow2 else (node_types(), CORES)
    catalogue = Catalogue(types, reserved_memory_gib=0.5, source="bench (2024-06 list)")
    # The queueing planner: slo plans simulate each option and are timed elsewhere.
    settings = PlannerSettings(policy="dynamic", max_batches=MAX_BATCHES, cores=cores)
    t0 = time.perf_counter()
    services = {
        f"model{i}": ModelService.from_profile(profile(i), max_cores=192, max_batch=32)
        for i in range(len(WORK_S))
    }
    tables_s = time.perf_counter() - t0
    demands = [
        Demand(f"model{i}", RATES[i], Target(SLO_MS[i] / 1e3, 99.0)) for i in range(len(WORK_S))
    ]
    total = len(demands) * len(catalogue.node_types) * len(MAX_BATCHES) * len(CORES)
    times = []
    cpu = []
    plan = None
    for _ in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        plan = make_plan(demands, services, catalogue, settings)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    assert plan is not None
    naive = sum(naive_cost(services[d.model], d, catalogue, settings.headroom) for d in demands)
    alone = sum(
        float(recommend(services[d.model], d, catalogue, settings).cost_per_hour or 0)
        for d in demands
    )
    replicas = sum(len(n.replicas) for n in plan.nodes)
    print(
        f"{total} options (10 models x 6 node types x 8 batch settings x 8 core counts "
        f"{','.join(map(str, cores))})"
    )
    print(f"latency tables for 10 profiles: {tables_s:.2f} s (once, not in the timing)")
    print(
        f"make_plan: median {statistics.median(times):.3f} s wall, "
        f"{statistics.median(cpu):.3f} s CPU over {len(times)} runs (min wall {min(times):.3f}); "
        f"{plan.options_considered} non-dominated options in the program"
    )
    print(
        f"plan: ${plan.cost_per_hour:.3f}/h, {len(plan.nodes)} nodes, {replicas} replicas, "
        + (
            "optimal"
            if plan.cost_per_hour <= plan.lower_bound * (1 + 1e-9)
            else f"within {plan.cost_per_hour / plan.lower_bound - 1:.1%} of the proven bound "
            f"${plan.lower_bound:.3f}/h"
        )
        + f" ({plan.method})"
    )
    used = sum(r.option.cores for n in plan.nodes for r in n.replicas)
    print(f"  cores used {used} of {sum(n.node_type.cores for n in plan.nodes)} rented")
    print(f"naive baseline (alone, whole nodes, b<=8): ${naive:.3f}/h")
    print(f"per-model best (alone, any option):      ${alone:.3f}/h")
    print(
        f"plan / naive = {plan.cost_per_hour / naive:.3f}; "
        f"plan / per-model = {plan.cost_per_hour / alone:.3f}"
    )
    if args.verify:
        from qosbatch.planner.verify import verify_plan

        for check in verify_plan(plan, services):
            print(check.line())


if __name__ == "__main__":
    main()
