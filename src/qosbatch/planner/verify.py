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

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from qosbatch.core.requests import ON_TIME, REJECTED
from qosbatch.planner.plan import Plan
from qosbatch.planner.service import ModelService
from qosbatch.planner.targets import Target
from qosbatch.policies.registry import parse_policy
from qosbatch.sim.kernel import Deployment, simulate
from qosbatch.workloads import arrivals
from qosbatch.workloads.trace import Trace

DEFAULT_REQUESTS = 20_000  # per model: ~200 requests beyond the p99, enough to read it


@dataclass(frozen=True)
class ModelCheck:
    """One model's simulated outcome against its target."""

    model: str
    target: Target
    requests: int
    attainment: float  # share answered within the SLO (a rejection is a miss)
    rejected: int
    mean_ms: float  # served requests
    p99_ms: float  # all requests, a rejection counted as infinitely late
    statistic_ms: float  # what the target bounds: the mean, or its percentile
    met: bool

    def line(self) -> str:
        mark = "meets" if self.met else "MISSES"
        return (
            f"{self.model}: attainment {self.attainment:.2%}, {self.target.label} "
            f"{self.statistic_ms:.1f} ms vs SLO {self.target.slo_s * 1e3:g} ms, "
            f"{self.rejected} rejected of {self.requests}: {mark} its target"
        )


def verify_plan(
    plan: Plan,
    services: Mapping[str, ModelService],
    requests_per_model: int = DEFAULT_REQUESTS,
    seed: int = 0,
) -> list[ModelCheck]:
    """Simulate every model of ``plan`` and check it against its target."""
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
                trace, deployments, parse_policy(policy).factory(), seed=seed + 7919 * g
            )
            rec = result.records
            idx = np.flatnonzero(mask)[rec.request_id]
            served = rec.outcome != REJECTED
            latency[idx[served]] = (rec.completion_s - rec.arrival_s)[served]
            on_time[idx] = rec.outcome == ON_TIME
        checks.append(_check(d.model, d.target, latency, on_time))
    return checks


def _check(model: str, target: Target, latency: np.ndarray, on_time: np.ndarray) -> ModelCheck:
    served = np.isfinite(latency)
    mean_ms = float(latency[served].mean() * 1e3) if served.any() else math.inf
    p99_ms = float(np.percentile(latency, 99) * 1e3)
    attainment = float(on_time.mean())
    if target.percentile is None:
        statistic = mean_ms
        met = mean_ms <= target.slo_s * 1e3 and not (~served).mean() > 0.01
    else:
        statistic = float(np.percentile(latency, target.percentile) * 1e3)
        met = attainment >= target.percentile / 100
    return ModelCheck(
        model,
        target,
        int(latency.size),
        attainment,
        int((~served).sum()),
        mean_ms,
        p99_ms,
        statistic,
        met,
    )
