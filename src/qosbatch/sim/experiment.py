"""Policies side by side on one workload: the library behind ``qosbatch simulate``.

An ``Experiment`` is a node (one deployment per model), a workload that can be
drawn at any load factor, and a seed. It runs each policy once at the given
load, or searches each policy's capacity, or grid-tunes a baseline, or traces
attainment against load for the plot. Everything is deterministic for the seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from qosbatch.core.errors import UserError
from qosbatch.core.profile import Profile
from qosbatch.latency.table import DEFAULT_MAX_BATCH, LatencyTable
from qosbatch.metrics import Metrics, summarize
from qosbatch.policies.registry import PolicySpec
from qosbatch.sim.capacity import Capacity, TraceAt, Tuned, find_capacity, mean_rate, trace_at, tune
from qosbatch.sim.frontend import FrontEnd
from qosbatch.sim.kernel import Deployment, SimResult, simulate
from qosbatch.workloads.spec import WorkloadSpec
from qosbatch.workloads.trace import Trace


def deployments_from_profiles(
    profiles: Sequence[Profile],
    cores: int | None = None,
    workers: int = 1,
    max_batch: int = DEFAULT_MAX_BATCH,
    latency_kind: str = "auto",
) -> list[Deployment]:
    """One deployment per profiled model; ``cores`` defaults to the most profiled."""
    names = [p.model.name for p in profiles]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise UserError(f"two profiles of the same model {dup!r}; give one per model")
    out = []
    for p in profiles:
        pool = cores if cores is not None else max(p.core_counts)
        if pool < 1:
            raise UserError(f"--cores must be >= 1, got {pool}")
        table = LatencyTable.from_profile(p, max_cores=pool, max_batch=max_batch, kind=latency_kind)
        out.append(Deployment(p.model.name, table, pool, workers))
    return out


@dataclass
class Experiment:
    deployments: list[Deployment]
    traces: TraceAt  # load factor -> trace (same seed at every factor)
    seed: int = 0
    deterministic: bool = False
    node_cores: int | None = None  # one core pool for all models (simulate's node_cores)
    frontend: FrontEnd | None = None  # the server's front end on the same cores (simulate's)

    @classmethod
    def from_trace(cls, trace: Trace, deployments: list[Deployment], **kw: Any) -> Experiment:
        """Replay a trace; load factor f divides its times by f."""
        return cls(deployments, lambda f: trace if f == 1.0 else trace.scaled(f), **kw)

    @classmethod
    def from_spec(
        cls, spec: WorkloadSpec, deployments: list[Deployment], seed: int = 0, **kw: Any
    ) -> Experiment:
        default = deployments[0].model if len(deployments) == 1 else None
        return cls(deployments, trace_at(spec, seed, default), seed=seed, **kw)

    @property
    def base_rate(self) -> float:
        return mean_rate(self.traces(1.0))

    def run(self, policy: PolicySpec, factor: float = 1.0) -> SimResult:
        return simulate(
            self.traces(factor),
            self.deployments,
            policy.factory(),
            seed=self.seed,
            deterministic=self.deterministic,
            node_cores=self.node_cores,
            frontend=self.frontend,
        )

    def compare(self, policies: Sequence[PolicySpec]) -> list[tuple[PolicySpec, Metrics]]:
        return [(p, summarize(self.run(p).records)) for p in policies]

    def capacity(self, policy: PolicySpec, target: float = 0.99, rel_tol: float = 0.02) -> Capacity:
        return find_capacity(
            self.traces,
            self.deployments,
            policy,
            target=target,
            seed=self.seed,
            rel_tol=rel_tol,
            deterministic=self.deterministic,
            node_cores=self.node_cores,
            frontend=self.frontend,
        )

    def tune(self, policy: PolicySpec, target: float = 0.99, rel_tol: float = 0.05) -> Tuned:
        return tune(
            self.traces,
            self.deployments,
            policy,
            target=target,
            seed=self.seed,
            rel_tol=rel_tol,
            deterministic=self.deterministic,
            node_cores=self.node_cores,
            frontend=self.frontend,
        )

    def load_curve(self, policy: PolicySpec, factors: Sequence[float]) -> list[tuple[float, float]]:
        """(mean arrival rate, attainment) at each load factor."""
        base = self.base_rate
        out = []
        for f in factors:
            m = summarize(self.run(policy, f).records)
            out.append((base * f, m.attainment))
        return out


def plot_factors(low: float, high: float, points: int = 12) -> list[float]:
    """Load factors spread geometrically over [low, high] for an attainment curve."""
    low, high = max(low, 1e-3), max(high, low * 1.01)
    return [float(x) for x in np.geomspace(low, high, points)]


def finite(x: float) -> float | None:
    return None if math.isnan(x) or math.isinf(x) else x
