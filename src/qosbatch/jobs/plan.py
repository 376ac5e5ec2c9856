"""The job planner: the cheapest (node type, nodes, cores, batch, workers) meeting a deadline.

Pure: numbers and dataclasses in, a ``JobPlan`` out; no I/O, no torch.

A worker of k cores running batches of b takes s(b, k) per batch on the profiled
node (the profile's ``LatencyTable``) and s(b, k) * c_ref(k) / c_t(k) on node type
t (flops*p/c, ``NodeType.speed_factor``). A node holds w = cores // k workers (fewer
if memory binds), each working through its share of the ceil(N / b) batches one
after another, so m nodes finish in

    T = startup + ceil(ceil(N / b) / (m * w)) * s_t(b, k)

and, billed per second (with a minimum per node), cost m * price * max(T, minimum).
Per-second billing makes the cost of a configuration nearly independent of m, so
for each (t, k, b) the fewest nodes that meet the deadline are taken; then the
cheapest configuration wins (fewer nodes, then shorter, on ties).

Safety margin: the compute time is stretched by ``margin + z * cv / sqrt(batches)``
before it is compared with the deadline, where cv is the profile's measured spread of
one batch's time: a worker's total is a sum of many batches, so its relative spread
shrinks with their number; the constant margin covers what the profile's spread does
not (a drifting machine, a prediction carried to another node type).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from qosbatch.core.errors import UserError
from qosbatch.jobs.units import format_duration, format_money
from qosbatch.planner.catalogue import Catalogue, NodeType
from qosbatch.planner.service import ModelService, powers_of_two


@dataclass(frozen=True)
class JobSettings:
    """The search space and margins of a job plan."""

    margin: float = 0.05  # constant part of the safety margin on compute time
    z: float = 2.0  # standard deviations of a worker's total time added on top
    startup_s: float = 5.0  # per node: process start, model load, first batches
    min_billed_s: float = 60.0  # per node (the common cloud per-second billing minimum)
    max_nodes: int = 64  # per node type, where the catalogue gives no max_nodes
    max_batch: int | None = None  # None: the profile's largest measured batch


@dataclass(frozen=True)
class JobConfig:
    """One way to run the job, with its predicted duration and cost."""

    node_type: NodeType
    nodes: int
    workers_per_node: int
    cores: int  # per worker
    batch: int
    batch_s: float  # predicted mean service time of one batch on this node type
    batches_per_worker: int
    duration_s: float  # predicted mean, startup included
    guarded_s: float  # with the safety margin: what is held against the deadline
    cost: float | None  # at the predicted mean duration; None: the node type has no price
    guarded_cost: float | None  # at the guarded duration: what is held against a budget
    predicted: bool  # latency carried over by flops*p/c (another node type or core count)

    @property
    def throughput(self) -> float:
        return self.nodes * self.workers_per_node * self.batch / self.batch_s

    @property
    def setup(self) -> str:
        """What to rent and run: nodes, workers, cores and batch size."""
        plural = "s" * (self.nodes > 1)
        workers = f"{self.workers_per_node} worker{'s' * (self.workers_per_node > 1)}"
        return (
            f"{self.nodes} x {self.node_type.name} node{plural}, {workers} x {self.cores} "
            f"core{'s' * (self.cores > 1)}, batch {self.batch}"
        )

    def label(self, currency: str = "USD") -> str:
        return (
            f"{self.setup}: {format_duration(self.duration_s)} "
            f"({format_duration(self.guarded_s)} with margin), "
            f"{format_money(self.cost, currency)}"
        )


@dataclass(frozen=True)
class JobPlan:
    samples: int
    deadline_s: float | None
    budget: float | None
    best: JobConfig
    alternatives: tuple[JobConfig, ...]  # the best of each other node type, cheapest first


@dataclass(frozen=True)
class _Worker:
    """One (node type, cores, batch) with its batch time: what a node count multiplies."""

    node_type: NodeType
    workers: int  # per node
    cores: int
    batch: int
    batch_s: float
    cv: float
    predicted: bool
    cap: int  # most nodes of this type


def plan_job(
    samples: int,
    service: ModelService,
    catalogue: Catalogue,
    deadline_s: float,
    budget: float | None = None,
    settings: JobSettings = JobSettings(),
    alternatives: int = 4,
) -> JobPlan:
    """The cheapest configuration finishing ``samples`` by ``deadline_s`` (and within budget).

    Raises UserError saying by how much the deadline (or budget) is missed when
    nothing meets it.
    """
    if samples < 1:
        raise UserError("the input holds no samples")
    feasible: list[JobConfig] = []
    fastest: JobConfig | None = None
    for worker in _workers(service, catalogue, settings):
        quick = _config(samples, worker, worker.cap, settings)
        if fastest is None or quick.guarded_s < fastest.guarded_s:
            fastest = quick
        if quick.guarded_s <= deadline_s:
            feasible.append(_fewest_nodes(samples, worker, deadline_s, settings))
    if fastest is None:
        raise UserError("no node type in the catalogue fits one worker of this model")
    currency = catalogue.currency
    if not feasible:
        raise UserError(
            f"the deadline {format_duration(deadline_s)} is missed by "
            f"{format_duration(fastest.guarded_s - deadline_s)}: the fastest configuration, "
            f"{fastest.setup}, takes {format_duration(fastest.guarded_s)} "
            "with its safety margin"
        )
    ranked = sorted(feasible, key=_rank)
    if budget is not None:
        within = [c for c in ranked if c.guarded_cost is not None and c.guarded_cost <= budget]
        if not within:
            cheapest = ranked[0]
            over = (cheapest.guarded_cost or math.inf) - budget
            raise UserError(
                f"the budget {format_money(budget, currency)} is missed by "
                f"{format_money(over, currency)}: the cheapest configuration that meets the "
                f"deadline, {cheapest.setup}, costs "
                f"{format_money(cheapest.guarded_cost, currency)} with its margin"
            )
        ranked = within
    best = ranked[0]
    seen = {best.node_type.name}
    others: list[JobConfig] = []
    for c in ranked[1:]:
        if c.node_type.name not in seen and len(others) < alternatives:
            seen.add(c.node_type.name)
            others.append(c)
    return JobPlan(samples, deadline_s, budget, best, tuple(others))


def _workers(service: ModelService, catalogue: Catalogue, settings: JobSettings) -> list[_Worker]:
    """Every (node type, cores, batch) that fits a node, with its batch time there."""
    out = []
    batches = _batches(service, settings)
    for t in catalogue.node_types:
        memory = catalogue.usable_memory_bytes(t)
        cap = t.max_nodes if t.max_nodes is not None else settings.max_nodes
        for k in _core_counts(service, t):
            factor = t.speed_factor(service.node, k)
            predicted = not (t.is_profiled_node(service.node) and service.is_profiled(k))
            for b in batches:
                w = min(t.cores // k, int(memory // service.memory_bytes(b)))
                if w >= 1 and cap >= 1:
                    s = service.table.s(b, k) * factor
                    out.append(_Worker(t, w, k, b, s, service.table.spread(b, k), predicted, cap))
    return out


def _rank(c: JobConfig) -> tuple[float, int, float]:
    cost = c.cost if c.cost is not None else math.inf
    return (cost, c.nodes, c.duration_s)


def _core_counts(service: ModelService, t: NodeType) -> list[int]:
    counts = set(powers_of_two(t.cores))
    if t.is_profiled_node(service.node):
        counts |= set(service.profiled_cores)
    return sorted(k for k in counts if k <= min(t.cores, service.table.max_cores))


def _batches(service: ModelService, settings: JobSettings) -> list[int]:
    """Measured batch sizes and powers of two up to the largest measured (no extrapolation)."""
    measured = [b for b, _ in service.activation] or [1]
    top = min(max(measured), settings.max_batch or max(measured), service.table.max_batch)
    return sorted({b for b in measured if b <= top} | set(powers_of_two(top)))


def _config(samples: int, w: _Worker, nodes: int, settings: JobSettings) -> JobConfig:
    per = math.ceil(math.ceil(samples / w.batch) / (nodes * w.workers))
    compute = per * w.batch_s
    margin = settings.margin + settings.z * w.cv / math.sqrt(per)
    duration = settings.startup_s + compute
    guarded = settings.startup_s + compute * (1 + margin)
    cost = guarded_cost = None
    if w.node_type.node_price_per_hour is not None:
        rate = nodes * w.node_type.node_price_per_hour / 3600
        cost = rate * max(duration, settings.min_billed_s)
        guarded_cost = rate * max(guarded, settings.min_billed_s)
    return JobConfig(
        w.node_type,
        nodes,
        w.workers,
        w.cores,
        w.batch,
        w.batch_s,
        per,
        duration,
        guarded,
        cost,
        guarded_cost,
        w.predicted,
    )


def _fewest_nodes(samples: int, w: _Worker, deadline_s: float, settings: JobSettings) -> JobConfig:
    """The fewest nodes (<= cap, known to suffice) that meet the deadline: bisection on m."""
    lo, hi = 1, w.cap
    while lo < hi:
        mid = (lo + hi) // 2
        if _config(samples, w, mid, settings).guarded_s <= deadline_s:
            hi = mid
        else:
            lo = mid + 1
    return _config(samples, w, lo, settings)


def plan_local(
    samples: int,
    service: ModelService,
    cores: int,
    deadline_s: float | None,
    settings: JobSettings = JobSettings(),
    slowdown: float = 1.0,
    min_cores: int = 1,
) -> tuple[JobConfig, bool]:
    """This machine, one in-process worker of ``min_cores`` to ``cores``: (batch, cores) to run.

    With a deadline, the fewest core-seconds that meet it (pay-per-use on cores),
    else the fastest; without one, the fastest. ``slowdown`` scales every predicted
    batch time (the drift a running job measured); pass ``settings`` with
    ``startup_s=0`` to re-plan a job already running. The flag says whether the
    deadline is met.
    """
    options = [
        predict_one(samples, service, b, k, settings, slowdown)
        for k in range(min(min_cores, cores), min(cores, service.table.max_cores) + 1)
        for b in _batches(service, settings)
    ]
    fastest = min(options, key=lambda c: (c.guarded_s, c.cores))
    if deadline_s is None:
        return fastest, True
    meets = [c for c in options if c.guarded_s <= deadline_s]
    if not meets:
        return fastest, False
    return min(meets, key=lambda c: (c.cores * c.duration_s, c.duration_s)), True


def predict_one(
    samples: int,
    service: ModelService,
    batch: int,
    cores: int,
    settings: JobSettings = JobSettings(),
    slowdown: float = 1.0,
) -> JobConfig:
    """One in-process worker of (batch, cores) on the profiled machine."""
    here = NodeType("this machine", cores, math.inf, None, cpu_model=service.node.cpu_model)
    s = service.table.s(batch, cores) * slowdown
    cv = service.table.spread(batch, cores)
    w = _Worker(here, 1, cores, batch, s, cv, not service.is_profiled(cores), 1)
    return _config(samples, w, 1, settings)
