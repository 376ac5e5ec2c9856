"""The agent against ``slo`` and the best-tuned ``dynamic`` on held-out workloads.

Held out: the same workload shapes with seeds never drawn in training (and any
extra shapes the caller adds). ``dynamic`` is tuned for utility on the training
seeds, as a user would tune it on past traffic, then judged on the held-out
ones with the others: with several models, each model gets its own knobs (as a
Triton user sets each model's), found by one pass of coordinate search from the
best setting common to all. Each policy runs on the deployment the agent was
trained for (a worker per instance, on as many cores; several models sharing the node's cores).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from qosbatch.metrics import summarize
from qosbatch.policies.base import CompletedBatch, Decision, Policy, PolicyFactory, QueueView
from qosbatch.policies.registry import PolicySpec, make_spec
from qosbatch.rl.env import Scheduled, for_models
from qosbatch.sim.capacity import DYNAMIC_GRID
from qosbatch.sim.kernel import simulate
from qosbatch.workloads.spec import parse_workload

HELD_OUT_SEED = 10_000  # held-out seeds start here; training draws below 2**31 from its own rng


@dataclass(frozen=True)
class Scores:
    policy: str
    utility: float  # mean over the held-out runs
    attainment: float


class _PerModel:
    """Each model's own policy behind one object (a factory gets no model name)."""

    def __init__(self, policies: dict[str, Policy]) -> None:
        self.policies = policies
        self.idle_only = all(getattr(p, "idle_only", False) for p in policies.values())

    def decide(self, view: QueueView) -> list[Decision]:
        return self.policies[view.model].decide(view)

    def observe(self, done: CompletedBatch) -> None:
        self.policies[done.model].observe(done)


def per_model(specs: dict[str, PolicySpec]) -> PolicyFactory:
    """A factory for a run in which model m follows ``specs[m]``."""

    def build(rng: np.random.Generator) -> Policy:
        del rng
        return _PerModel({m: s.factory()(np.random.default_rng(0)) for m, s in specs.items()})

    shared = build(np.random.default_rng(0))
    return lambda rng: shared


class _Bench:
    """The runs of one evaluation: the same deployment, workloads and seeds for every policy."""

    def __init__(self, models: Sequence[Scheduled], node_cores: int | None) -> None:
        self.models = list(models)
        self.names = [m.model for m in models]
        self.deployments = [m.deployment() for m in models]
        self.node_cores = node_cores  # (the agent's: None for one model, as in training)

    def run(
        self, make: Callable[[], PolicyFactory], workloads: Sequence[str], seeds: Sequence[int]
    ) -> tuple[float, float]:
        """Mean utility and attainment; ``make`` gives each run fresh policies."""
        rows = []
        for w in workloads:
            ws = for_models(parse_workload(w), self.names)
            for seed in seeds:
                trace = ws.generate(np.random.default_rng(seed))
                result = simulate(
                    trace, self.deployments, make(), seed=seed, node_cores=self.node_cores
                )
                rows.append(summarize(result.records))
        utility = float(np.mean([m.utility for m in rows]))
        return utility, float(np.mean([m.attainment for m in rows]))


def _grid() -> list[PolicySpec]:
    return [
        make_spec("dynamic", {"max_batch_size": b, "max_queue_delay_ms": float(d)})
        for b in DYNAMIC_GRID["max_batch_size"]
        for d in DYNAMIC_GRID["max_queue_delay_ms"]
    ]


def tune_dynamic_for_utility(
    bench: _Bench, workloads: Sequence[str], seeds: Sequence[int]
) -> dict[str, PolicySpec]:
    """Each model's ``dynamic`` knobs with the best utility: common best, then per model."""
    grid = _grid()
    common = max(grid, key=lambda s: bench.run(s.factory, workloads, seeds)[0])
    chosen = dict.fromkeys(bench.names, common)
    if len(bench.names) == 1:
        return chosen
    for name in bench.names:

        def utility(spec: PolicySpec, name: str = name) -> float:
            specs = {**chosen, name: spec}
            return bench.run(lambda: per_model(specs), workloads, seeds)[0]

        chosen[name] = max(grid, key=utility)
    return chosen


def evaluate(
    agent: str,
    models: Sequence[Scheduled],
    node_cores: int | None,
    train_workloads: Sequence[str],
    held_out_workloads: Sequence[str] = (),
    runs: int = 3,
) -> list[Scores]:
    """Mean utility and attainment of the agent, slo and tuned dynamic on held-out runs."""
    bench = _Bench(models, node_cores)
    tuned = tune_dynamic_for_utility(bench, train_workloads, seeds=(0,))
    workloads = [*train_workloads, *held_out_workloads]
    seeds = [HELD_OUT_SEED + i for i in range(runs)]
    labels = {t.label for t in tuned.values()}
    tuned_label = (
        next(iter(labels))
        if len(labels) == 1
        else "dynamic per model: " + "; ".join(f"{m} {t.label}" for m, t in tuned.items())
    )
    rl, slo = make_spec("rl", {"agent": agent}), make_spec("slo", {})
    out = []
    for label, make in (
        (rl.label, rl.factory),
        (slo.label, slo.factory),
        (tuned_label, lambda: per_model(tuned)),
    ):
        utility, attainment = bench.run(make, workloads, seeds)
        out.append(Scores(label, utility, attainment))
    return out
