"""Options: every way to run a replica of a model, priced by the rate it carries.

An option is (model, node type, cores, batch setting); its capacity is the
highest Poisson rate one replica of it carries within the model's latency
target (``qosbatch.planner.capacity``). A model's options are enumerated over
node types x core counts x batch settings, and an option is dropped when:

- it does not fit one node (cores or memory), or
- a full batch of its setting alone misses the SLO (a setting whose largest
  batch is too slow is never recommended, even where light load would hide it), or
- another option of the same model on the same node type carries at least as
  much with no more cores and no more memory (it can replace it in any plan).

The last rule is what keeps the integer program small: of 64 (cores, batch)
pairs per node type typically a handful survive.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from qosbatch.planner.capacity import Curve, default_queue_capacity
from qosbatch.planner.catalogue import NodeType
from qosbatch.planner.service import ModelService
from qosbatch.planner.targets import Target

DEFAULT_MAX_BATCHES: tuple[int, ...] = (1, 2, 4, 8, 16, 32)


@dataclass(frozen=True)
class BatchSetting:
    """The (a, b) rule: start a batch when a requests wait, take at most b."""

    a: int
    b: int

    def policy(self, queue_capacity: int) -> str:
        """The policy spec that runs this rule (``qosbatch.policies.registry`` syntax).

        a = 1 is the dynamic batcher with no queue delay: a free worker takes up to b
        of what waits at once. a > 1 needs ``queue-optimal`` pinned to (a, b, N).
        """
        if self.a == 1:
            return f"dynamic:max_batch_size={self.b},max_queue_delay_ms=0"
        return f"queue-optimal:a={self.a},b={self.b},capacity={queue_capacity}"


def settings_for(max_batches: Sequence[int]) -> tuple[BatchSetting, ...]:
    return tuple(BatchSetting(1, b) for b in sorted(set(max_batches)))


@dataclass(frozen=True)
class Demand:
    """One model's traffic and objective: Poisson ``rate`` requests/s under ``target``."""

    model: str
    rate: float
    target: Target


@dataclass(frozen=True)
class Option:
    """One replica configuration and the rate it carries within its model's target."""

    model: str
    node_type: NodeType
    cores: int
    setting: BatchSetting
    queue_capacity: int  # N of the queueing model: requests allowed to wait
    capacity: float  # requests/s one replica carries within the target
    memory_bytes: float
    speed_factor: float  # service time on this node type over that on the profiled node
    predicted: bool  # latency carried over by flops*p/c, or at an unprofiled core count
    spec: str = ""  # the policy spec, where it is not the setting's rule (slo_options)

    @property
    def policy(self) -> str:
        return self.spec or self.setting.policy(self.queue_capacity)

    @property
    def runs_slo(self) -> bool:
        return self.policy.split(":", 1)[0] == "slo"

    @property
    def label(self) -> str:
        return f"{self.model} {self.policy} {self.cores}c {self.node_type.name}"


CoreCounts = Callable[[NodeType], Sequence[int]]


def enumerate_options(
    service: ModelService,
    demand: Demand,
    node_types: Sequence[NodeType],
    core_counts: CoreCounts,
    settings: Sequence[BatchSetting],
    usable_memory_bytes: Callable[[NodeType], float],
    *,
    rel_tol: float | None = None,
    prune: bool = True,
) -> list[Option]:
    """Every option of one model with capacity > 0 (non-dominated ones when ``prune``).

    One ``Curve`` per (cores, setting) answers every node type at once (capacity.py
    explains the scaling); ``rel_tol`` None means grid interpolation confirmed by one
    solve, a number refines each capacity by bisection to that relative width.

    With ``prune``, curves are solved by cores ascending and batch size descending,
    and a curve is skipped on a node type where even its saturation rate
    (b / s(b), which no latency target lets a replica reach) is already carried by
    an option found with no more cores: it could only be dominated. That holds
    where memory cannot bind on the type (no option needs more memory per core
    than the node has); elsewhere every curve is solved and memory kept in the test.
    """
    slo = demand.target.slo_s
    loose = {
        t.name: not memory_can_bind(service, t, core_counts(t), settings, usable_memory_bytes(t))
        for t in node_types
    }
    by_cores = _fitting(service, node_types, core_counts, settings, usable_memory_bytes)
    options: list[Option] = []
    best: dict[str, float] = {}  # node type -> most capacity of an option found so far
    for k in sorted(by_cores):
        for s in sorted(by_cores[k], key=lambda s: (-s.b, s.a)):
            curve = _curve(service, demand, k, s, [f for _, f in by_cores[k][s]])
            targets = [
                (t, f)
                for t, f in by_cores[k][s]
                if curve.full_batch_s * f <= slo  # a full batch alone must meet the SLO
                and not (prune and loose[t.name] and curve.saturation / f <= best.get(t.name, 0))
            ]
            if not targets:
                continue
            # Node types of equal speed share a threshold: solve for each distinct one once.
            thresholds = sorted({slo / f for _, f in targets})
            rates = dict(zip(thresholds, curve.max_rates(thresholds, rel_tol), strict=True))
            for t, f in targets:
                if rates[slo / f] <= 0:
                    continue
                o = Option(
                    model=demand.model,
                    node_type=t,
                    cores=k,
                    setting=s,
                    queue_capacity=curve.capacity,
                    capacity=rates[slo / f] / f,
                    memory_bytes=service.memory_bytes(s.b),
                    speed_factor=f,
                    predicted=not (t.is_profiled_node(service.node) and service.is_profiled(k)),
                )
                options.append(o)
                best[t.name] = max(best.get(t.name, 0.0), o.capacity)
    if not prune:
        return options
    return prune_dominated(options, {name for name, ok in loose.items() if ok})


def _fitting(
    service: ModelService,
    node_types: Sequence[NodeType],
    core_counts: CoreCounts,
    settings: Sequence[BatchSetting],
    usable_memory_bytes: Callable[[NodeType], float],
) -> dict[int, dict[BatchSetting, list[tuple[NodeType, float]]]]:
    """Per core count and setting, the node types it fits on, with their speed factors.

    Grouped so that one curve per (cores, setting) serves every node type at once.
    """
    by_cores: dict[int, dict[BatchSetting, list[tuple[NodeType, float]]]] = {}
    for t in node_types:
        memory = usable_memory_bytes(t)
        for k in core_counts(t):
            if k > t.cores or k > service.table.max_cores:
                continue
            factor = t.speed_factor(service.node, k)
            for s in settings:
                if s.b > service.table.max_batch or service.memory_bytes(s.b) > memory:
                    continue
                by_cores.setdefault(k, {}).setdefault(s, []).append((t, factor))
    return by_cores


def _curve(
    service: ModelService, demand: Demand, k: int, s: BatchSetting, factors: list[float]
) -> Curve:
    """The setting's curve on k cores, its queue bounded for the loosest threshold it meets."""
    means = service.means(k, s.b)
    top = demand.target.slo_s / min(factors)  # the loosest threshold of the curve
    return Curve(
        means,
        service.cvs(k, s.b),
        s.a,
        s.b,
        demand.target.percentile,
        default_queue_capacity(s.b, means[s.b], top),
    )


def memory_can_bind(
    service: ModelService,
    node_type: NodeType,
    cores: Sequence[int],
    settings: Sequence[BatchSetting],
    usable_bytes: float,
) -> bool:
    """Whether some replica needs more memory per core than the node has per core.

    If none does, any set of replicas whose cores fit a node fits its memory too, and
    memory can be left out of every comparison on this node type.
    """
    ks = [k for k in cores if k <= node_type.cores]
    if not ks or not settings:
        return False
    most = max(service.memory_bytes(s.b) for s in settings)
    return most / min(ks) > usable_bytes / node_type.cores


def prune_dominated(
    options: Sequence[Option], memory_loose: set[str] | None = None
) -> list[Option]:
    """Drop options that another of the same model and node type beats on every count.

    o' dominates o when it carries at least as much with no more cores and no more
    memory (memory is not compared on node types in ``memory_loose``, where it cannot
    bind): any plan using o stays feasible, at the same cost, with o' in its place.
    """
    loose = memory_loose or set()
    groups: dict[tuple[str, str], list[Option]] = {}
    for o in options:
        groups.setdefault((o.model, o.node_type.name), []).append(o)
    kept: list[Option] = []
    for (_, type_name), group in groups.items():
        # Best first: most capacity, then fewest cores and least memory.
        group.sort(key=lambda o: (-o.capacity, o.cores, o.memory_bytes))
        front: list[Option] = []
        for o in group:
            beaten = any(
                p.capacity >= o.capacity
                and p.cores <= o.cores
                and (type_name in loose or p.memory_bytes <= o.memory_bytes)
                for p in front
            )
            if not beaten:
                front.append(o)
        kept.extend(front)
    return kept


def saturation_hint(
    service: ModelService,
    node_types: Sequence[NodeType],
    core_counts: CoreCounts,
    target: Target,
) -> tuple[float, str]:
    """The fastest single request over every (node type, cores): why an SLO is out of reach.

    Returns (seconds at the target's percentile, where) for the error message.
    """
    best = (float("inf"), "")
    for t in node_types:
        for k in core_counts(t):
            if k > t.cores or k > service.table.max_cores:
                continue
            curve = Curve(service.means(k, 1), service.cvs(k, 1), 1, 1, target.percentile)
            s = curve.floor_s * t.speed_factor(service.node, k)
            if s < best[0]:
                where = f"{k} core{'s' * (k > 1)} of {t.name}"
                best = (s, where)
    return best
