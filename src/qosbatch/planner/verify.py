"""Replay each model's workload in the simulator on a plan: does it meet its SLO?

The plan was priced with the queueing model and a calibrated tail factor; this
runs the same configuration through the discrete-event simulator, with the
profile's measured spread in every batch's time. For each model, Poisson
arrivals at its rate are routed at random to its replicas in proportion to the
plan's shares (what a weighted load balancer does, and what the planner
assumed: each replica sees a Poisson stream of its share). Every replica is its
own deployment with its own queue, its cores and its node type's latency
(the profiled table times the speed factor), under its planned policy.

This module sits above the simulator, unlike the rest of the planner (which
the simulator's layer could import): the CLI's ``--verify`` and the tests use it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from qosbatch.planner.checks import ModelCheck, check_target, record_outcomes
from qosbatch.planner.plan import Plan
from qosbatch.planner.service import ModelService
from qosbatch.policies.registry import parse_policy
from qosbatch.sim.frontend import FrontEnd
from qosbatch.sim.kernel import Deployment, simulate
from qosbatch.workloads import arrivals
from qosbatch.workloads.trace import Trace

DEFAULT_REQUESTS = 20_000  # per model: ~200 requests beyond the p99, enough to read it


def verify_plan(
    plan: Plan,
    services: Mapping[str, ModelService],
    requests_per_model: int = DEFAULT_REQUESTS,
    seed: int = 0,
    frontend: FrontEnd | None = None,
) -> list[ModelCheck]:
    """Simulate every model of ``plan`` and check it against its target.

    ``frontend``: the server's front end on each group's cores, as the plan was searched
    with (``plan --frontend``); None: free."""
    rng = np.random.default_rng(seed)
    checks = []
    for d in plan.demands:
        placed = plan.replicas_of(d.model)
        service = services[d.model]
        slo_ms = d.target.slo_s * 1e3
        times = arrivals.poisson_count(rng, d.rate, requests_per_model)
        shares = np.array([r.rate for _, r in placed])
        route = rng.choice(len(placed), size=times.size, p=shares / shares.sum())
        latency = np.full(times.size, np.inf)
        on_time = np.zeros(times.size, dtype=bool)
        groups: dict[str, list[int]] = {}
        for i, (_, r) in enumerate(placed):
            groups.setdefault(r.option.policy, []).append(i)
        for g, (policy, members) in enumerate(groups.items()):
            mask = np.isin(route, members)
            names = tuple(f"{d.model}#{i}" for i in members)
            code = {m: j for j, m in enumerate(members)}
            trace = Trace(
                times[mask],
                np.array([code[int(x)] for x in route[mask]], dtype=np.int64),
                names,
                np.full(int(mask.sum()), slo_ms),
            )
            deployments = []
            for i, name in zip(members, names, strict=True):
                o = placed[i][1].option
                table = service.table.scaled(o.speed_factor)
                deployments.append(Deployment(name, table, o.cores, 1))
            result = simulate(
                trace,
                deployments,
                parse_policy(policy).factory(),
                seed=seed + 7919 * g,
                frontend=frontend,
            )
            ids, served_s, served_on_time = record_outcomes(result.records)
            idx = np.flatnonzero(mask)[ids]
            latency[idx] = served_s
            on_time[idx] = served_on_time
        checks.append(check_target(d.model, d.target, latency, on_time))
    return checks
