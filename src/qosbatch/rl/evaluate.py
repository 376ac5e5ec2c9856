"""The agent against ``slo`` and the best-tuned ``dynamic`` on held-out workloads.

Held out: the same workload shapes with seeds never drawn in training (and any
extra shapes the caller adds). ``dynamic`` is tuned for utility on the training
seeds, as a user would tune it on past traffic, then judged on the held-out
ones with the others. Each policy runs on the deployment the agent was trained
for (one instance per core).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from qosbatch.metrics import summarize
from qosbatch.policies.latency_table import LatencyTable
from qosbatch.policies.registry import PolicySpec, make_spec
from qosbatch.sim.capacity import DYNAMIC_GRID
from qosbatch.sim.kernel import Deployment, simulate
from qosbatch.workloads.spec import parse_workload

HELD_OUT_SEED = 10_000  # held-out seeds start here; training draws below 2**31 from its own rng


@dataclass(frozen=True)
class Scores:
    policy: str
    utility: float  # mean over the held-out runs
    attainment: float


def _run(
    spec: PolicySpec, deployment: Deployment, workloads: Sequence[str], seeds: Sequence[int]
) -> tuple[float, float]:
    rows = []
    for w in workloads:
        ws = parse_workload(w)
        for seed in seeds:
            trace = ws.generate(np.random.default_rng(seed), deployment.model)
            rows.append(summarize(simulate(trace, [deployment], spec.factory(), seed=seed).records))
    return float(np.mean([m.utility for m in rows])), float(np.mean([m.attainment for m in rows]))


def tune_dynamic_for_utility(
    deployment: Deployment, workloads: Sequence[str], seeds: Sequence[int]
) -> PolicySpec:
    best: tuple[float, PolicySpec] | None = None
    for b in DYNAMIC_GRID["max_batch_size"]:
        for d in DYNAMIC_GRID["max_queue_delay_ms"]:
            spec = make_spec("dynamic", {"max_batch_size": b, "max_queue_delay_ms": float(d)})
            utility, _ = _run(spec, deployment, workloads, seeds)
            if best is None or utility > best[0]:
                best = (utility, spec)
    assert best is not None
    return best[1]


def evaluate(
    agent: str,
    model: str,
    latency: LatencyTable,
    instances: int,
    train_workloads: Sequence[str],
    held_out_workloads: Sequence[str] = (),
    runs: int = 3,
) -> list[Scores]:
    """Mean utility and attainment of the agent, slo and tuned dynamic on held-out runs."""
    deployment = Deployment(model, latency, instances, instances)
    tuned = tune_dynamic_for_utility(deployment, train_workloads, seeds=(0,))
    workloads = [*train_workloads, *held_out_workloads]
    seeds = [HELD_OUT_SEED + i for i in range(runs)]
    out = []
    for spec in (make_spec("rl", {"agent": agent}), make_spec("slo", {}), tuned):
        utility, attainment = _run(spec, deployment, workloads, seeds)
        out.append(Scores(spec.label, utility, attainment))
    return out
