"""Capacity at a target attainment: the highest load a policy carries on time.

"Capacity at 99% attainment" is the arrival rate at which at least 99% of
requests are answered on time: the one number that compares policies fairly,
because every policy can look good at a load of its choosing. It is found by
scaling the workload (every arrival rate times a factor, same seed so that the
runs share their randomness) and bisecting the factor in log space. The
attainment of a finite run is not exactly monotone in the load; bisection keeps
the invariant "lo passed, hi failed" and reports the last passing load.

``tune`` grid-searches a baseline's knobs for its best capacity, so that ours is
compared with the best-tuned peer, not a strawman.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qosbatch.core.errors import UserError
from qosbatch.metrics import Metrics, summarize
from qosbatch.policies.registry import PolicySpec
from qosbatch.sim.frontend import FrontEnd
from qosbatch.sim.kernel import Deployment, simulate
from qosbatch.workloads.spec import WorkloadSpec
from qosbatch.workloads.trace import Trace

TraceAt = Callable[[float], Trace]  # load factor -> trace


@dataclass
class Capacity:
    """Result of a search: the capacity and every load that was tried."""

    policy: str
    factor: float  # the highest load factor that met the target (0 if none did)
    rate: float  # that factor as a mean arrival rate, requests/s
    target: float
    points: list[tuple[float, float]] = field(default_factory=list)  # (rate, attainment)
    metrics: Metrics | None = None  # at the capacity


def trace_at(spec: WorkloadSpec, seed: int, default_model: str | None) -> TraceAt:
    """Traces of ``spec`` at any load factor, all drawn from the same seed."""

    def at(factor: float) -> Trace:
        return spec.scaled(factor).generate(np.random.default_rng(seed), default_model)

    return at


def mean_rate(trace: Trace) -> float:
    return len(trace) / trace.duration_s if trace.duration_s > 0 else math.inf


def bisect_load(
    passes: Callable[[float], bool],
    *,
    start: float = 1.0,
    fails_at: float = math.inf,
    rel_tol: float = 0.02,
    max_runs: int = 30,
) -> float:
    """The highest load factor found to pass, 0.0 if none did: doubling or halving from
    ``start`` until the target is bracketed, then bisecting in log space.

    Shared by the simulator's search and the live one (``benchmarks/peers``), where each
    call of ``passes`` is a run against a real server, so ``max_runs`` bounds the cost.
    The invariant is "lo passed, hi failed"; attainment of a finite run is not exactly
    monotone in the load, so the answer is the last passing load, not a proof.
    ``fails_at`` is a load already known to fail (a coarse search's), so that a refining
    search spends no run on finding it again.
    """
    lo, hi = 0.0, fails_at
    factor = start
    runs = 0
    while runs < max_runs and (hi == math.inf or lo == 0.0):
        runs += 1
        if passes(factor):
            lo = factor
            factor = min(factor * 2.0, math.sqrt(factor * hi)) if hi < math.inf else factor * 2
        else:
            hi = factor
            factor /= 2.0
        if factor < 1e-6 * start:
            break
    while runs < max_runs and lo > 0 and hi < math.inf and hi / lo > 1 + rel_tol:
        runs += 1
        mid = math.sqrt(lo * hi)
        if passes(mid):
            lo = mid
        else:
            hi = mid
    return lo


def find_capacity(
    traces: TraceAt,
    deployments: Sequence[Deployment],
    policy: PolicySpec,
    *,
    target: float = 0.99,
    seed: int = 0,
    rel_tol: float = 0.02,
    max_runs: int = 30,
    deterministic: bool = False,
    node_cores: int | None = None,
    frontend: FrontEnd | None = None,
) -> Capacity:
    """Bisect the load factor until the bracket is within ``rel_tol``."""
    if not 0 < target <= 1:
        raise UserError(f"target attainment must be in (0, 1], got {target}")
    policy.factory()  # a bad spec fails here, before any run
    base_rate = mean_rate(traces(1.0))
    result = Capacity(policy.label, 0.0, 0.0, target)
    cache: dict[float, Metrics] = {}

    def passes(factor: float) -> bool:
        trace = traces(factor)
        m = summarize(
            simulate(
                trace,
                deployments,
                policy.factory(),
                seed=seed,
                deterministic=deterministic,
                node_cores=node_cores,
                frontend=frontend,
            ).records
        )
        cache[factor] = m
        result.points.append((base_rate * factor, m.attainment))
        return m.attainment >= target

    lo = bisect_load(passes, rel_tol=rel_tol, max_runs=max_runs)
    result.factor = lo
    result.rate = base_rate * lo
    result.metrics = cache.get(lo)
    result.points.sort()
    return result


DYNAMIC_GRID: dict[str, Sequence[Any]] = {
    "max_batch_size": (1, 2, 4, 8, 16, 32),
    "max_queue_delay_ms": (0, 1, 2, 5, 10, 20, 50),
}


@dataclass
class Tuned:
    """The best knobs found for a baseline and the capacity of every combination."""

    best: Capacity
    spec: PolicySpec
    tried: list[tuple[str, float]]  # (spec label, capacity rate)


def tune(
    traces: TraceAt,
    deployments: Sequence[Deployment],
    policy: PolicySpec,
    grid: dict[str, Sequence[Any]] | None = None,
    **kwargs: Any,
) -> Tuned:
    """Capacity of every knob combination in ``grid``; the best one wins."""
    grid = grid or (DYNAMIC_GRID if policy.name == "dynamic" else {})
    if not grid:
        raise UserError(f"no tuning grid for policy {policy.name}; only dynamic is tunable")
    best: tuple[Capacity, PolicySpec] | None = None
    tried = []
    for values in itertools.product(*grid.values()):
        spec = policy.with_params(**dict(zip(grid, values, strict=True)))
        cap = find_capacity(traces, deployments, spec, **kwargs)
        tried.append((spec.label, cap.rate))
        if best is None or cap.rate > best[0].rate:
            best = (cap, spec)
    assert best is not None  # the grid is never empty
    return Tuned(best[0], best[1], tried)
