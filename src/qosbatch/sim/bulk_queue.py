"""The simulator as an M/G(a,b)/1/N queue: the check on the queueing model.

``queue-optimal`` pinned to (a, b, N) on one worker, with deadlines too loose
to matter, is exactly the bulk-service queue the model solves, so simulating it
on Poisson arrivals measures what the model predicts. The CLI's plot and the
validation benchmark both draw their simulated points from here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qosbatch.core.requests import REJECTED
from qosbatch.latency.table import LatencyTable
from qosbatch.policies.registry import parse_policy
from qosbatch.sim.kernel import Deployment, simulate
from qosbatch.workloads import arrivals
from qosbatch.workloads.trace import Trace

LOOSE_SLO_MS = 1e9  # no deadline ever binds: the pure (a, b) rule


@dataclass(frozen=True)
class QueueRun:
    mean_latency_s: float  # served requests, arrival to completion
    blocking: float  # share of requests rejected because N were waiting
    requests: int


def simulate_bulk_queue(
    table: LatencyTable,
    cores: int,
    a: int,
    b: int,
    capacity: int,
    rate: float,
    requests: int = 50_000,
    seed: int = 0,
    deterministic: bool = False,
) -> QueueRun:
    """Simulate ``requests`` Poisson arrivals at ``rate`` through the (a, b, N) rule."""
    rng = np.random.default_rng(seed)
    trace = Trace.of(arrivals.poisson_count(rng, rate, requests), LOOSE_SLO_MS, "model")
    spec = parse_policy(f"queue-optimal:a={a},b={b},capacity={capacity}")
    result = simulate(
        trace,
        [Deployment("model", table, cores, 1)],
        spec.factory(),
        seed=seed,
        deterministic=deterministic,
    )
    rec = result.records
    served = rec.outcome != REJECTED
    latency = rec.completion_s[served] - rec.arrival_s[served]
    return QueueRun(float(latency.mean()), 1.0 - float(served.mean()), len(rec))
