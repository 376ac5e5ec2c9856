"""A plan: which nodes to rent, which replicas run on each, and what latency to expect.

``make_plan`` is the planner end to end: enumerate and price every model's
options, solve the integer program, place replicas on named nodes, route each
model's traffic to its replicas in proportion to their capacity (so every
replica runs at the same fraction of what it can carry) and predict each
replica's latency at the rate it will see. ``Plan.to_dict`` is the plan file the
server and the Ray deployment read (schema ``qosbatch.plan``, version 1).
Pure: no files are read or written here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from qosbatch.core.errors import UserError
from qosbatch.core.pricing import per_million
from qosbatch.planner.capacity import Curve
from qosbatch.planner.catalogue import Catalogue, NodeType
from qosbatch.planner.checks import on_time_floor
from qosbatch.planner.milp import TIME_LIMIT_S, Allocation, allocate
from qosbatch.planner.options import (
    DEFAULT_MAX_BATCHES,
    BatchSetting,
    CoreCounts,
    Demand,
    Option,
    enumerate_options,
    saturation_hint,
    settings_for,
)
from qosbatch.planner.paths import PATHS, ServingPath
from qosbatch.planner.service import ModelService, powers_of_two
from qosbatch.planner.slo_options import SloSearch, enumerate_slo_options, slo_latency
from qosbatch.planner.targets import OPTIMISM_TOLERANCE

PLAN_SCHEMA = "qosbatch.plan"
PLAN_VERSION = 1
PLANNED_POLICIES = ("slo", "dynamic")


@dataclass(frozen=True)
class PlannerSettings:
    """The search space and margins of a plan."""

    # slo: our policy, its capacity simulated (slo_options); dynamic: the (1, b) rule
    # without delay that the peers run, its capacity from the queueing model (options).
    policy: str = "slo"
    search: SloSearch = field(default_factory=SloSearch)
    # What the serving path adds per request: each SLO is planned less it (paths.py).
    path: ServingPath = PATHS["local"]
    max_batches: tuple[int, ...] = DEFAULT_MAX_BATCHES  # b of the (1, b) rule
    cores: tuple[int, ...] | None = None  # replica sizes; None: powers of two up to the node
    # Plan for rate * (1 + headroom). The default matches the tail factor's calibration,
    # which lets a predicted p-capacity exceed the simulated one by up to 3%.
    headroom: float = OPTIMISM_TOLERANCE
    rel_tol: float | None = None  # capacity precision (None: grid + one confirming solve)
    time_limit_s: float = TIME_LIMIT_S  # per integer program; past it, the best plan found

    def __post_init__(self) -> None:
        if self.policy not in PLANNED_POLICIES:
            raise UserError(
                f"the planner plans {' or '.join(PLANNED_POLICIES)}, got policy {self.policy!r}"
            )

    @property
    def settings(self) -> tuple[BatchSetting, ...]:
        return settings_for(self.max_batches)

    def core_counts(self, service: ModelService) -> CoreCounts:
        """Replica sizes on a node type: given, or the profile's on its own node, else 2^n."""

        def counts(t: NodeType) -> Sequence[int]:
            if self.cores is not None:
                return [k for k in self.cores if k <= t.cores]
            if t.is_profiled_node(service.node):
                return [k for k in service.profiled_cores if k <= t.cores]
            return powers_of_two(t.cores)

        return counts


@dataclass(frozen=True)
class PlannedReplica:
    """One replica: its option, the rate routed to it and its predicted latency there."""

    option: Option
    rate: float  # requests/s routed here (share of the model's rate)
    predicted_latency_s: float  # the model's target statistic (mean or percentile) at rate

    @property
    def model(self) -> str:
        return self.option.model


@dataclass(frozen=True)
class PlannedNode:
    name: str  # e.g. c6i.2xlarge-0
    node_type: NodeType
    replicas: tuple[PlannedReplica, ...]


@dataclass(frozen=True)
class Plan:
    demands: tuple[Demand, ...]  # server-side: each SLO less the path's overhead
    nodes: tuple[PlannedNode, ...]
    cost_per_hour: float
    lower_bound: float  # no plan of the same options costs less
    method: str
    currency: str = "USD"
    prices: str = ""  # where the prices come from and their date
    options_considered: int = 0
    plan_seconds: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)
    path: ServingPath = PATHS["none"]

    def client_ms(self, d: Demand, server_s: float) -> float:
        """A server-side latency (or SLO) of ``d``'s model as its client sees it, in ms."""
        return round((server_s + self.path.overhead_s(d.target)) * 1e3, 3)

    @property
    def cost_per_million_on_time(self) -> float:
        """At most this per million on-time requests: the hour's cost over the requests each
        model's target keeps on time (``checks.on_time_floor``) at its planned rate."""
        return per_million(
            self.cost_per_hour, sum(d.rate * on_time_floor(d.target) for d in self.demands)
        )

    def replicas_of(self, model: str) -> list[tuple[PlannedNode, PlannedReplica]]:
        return [(n, r) for n in self.nodes for r in n.replicas if r.model == model]

    def to_dict(self) -> dict[str, Any]:
        models = []
        for d in self.demands:
            placed = self.replicas_of(d.model)
            models.append(
                {
                    "name": d.model,
                    "rate": d.rate,
                    "slo_ms": self.client_ms(d, d.target.slo_s),
                    "server_slo_ms": round(d.target.slo_s * 1e3, 3),
                    "target": d.target.label,
                    "replicas": len(placed),
                    "capacity": round(sum(r.option.capacity for _, r in placed), 4),
                    "predicted_latency_ms": self.client_ms(
                        d, max(r.predicted_latency_s for _, r in placed)
                    ),
                    "latency_source": _source(
                        any(r.option.predicted for _, r in placed),
                        any(r.option.runs_slo for _, r in placed),
                    ),
                }
            )
        return {
            "schema": PLAN_SCHEMA,
            "version": PLAN_VERSION,
            "cost_per_hour": round(self.cost_per_hour, 6),
            "cost_per_million_on_time": round(self.cost_per_million_on_time, 6),
            "currency": self.currency,
            "prices": self.prices,
            "optimal": self.cost_per_hour <= self.lower_bound * (1 + 1e-9) + 1e-12,
            "lower_bound_per_hour": round(self.lower_bound, 6),
            "method": self.method,
            "serving_path": {
                "name": self.path.name,
                "mean_ms": self.path.mean_s * 1e3,
                "p99_ms": self.path.p99_s * 1e3,
                "note": "planned for slo_ms less the path's overhead (server_slo_ms); "
                "predicted latencies include it",
            },
            "routing": "each model's requests go to its replicas in proportion to 'share'",
            "models": models,
            "nodes": [
                {
                    "name": n.name,
                    "type": n.node_type.name,
                    "cores": n.node_type.cores,
                    "memory_gib": None
                    if math.isinf(n.node_type.memory_gib)
                    else n.node_type.memory_gib,
                    "price_per_hour": n.node_type.price_per_hour,
                    "billing": n.node_type.billing,
                    "replicas": [_replica_dict(r, self) for r in n.replicas],
                }
                for n in self.nodes
            ],
            "notes": list(self.notes),
        }


def _source(predicted: bool, simulated: bool = False) -> str:
    how = "simulated (slo) on " if simulated else ""
    return how + ("predicted (flops*p/c or unprofiled cores)" if predicted else "profiled")


def _replica_dict(r: PlannedReplica, plan: Plan) -> dict[str, Any]:
    o = r.option
    d = next(d for d in plan.demands if d.model == o.model)
    total = d.rate
    return {
        "model": o.model,
        "cores": o.cores,
        "policy": o.policy,
        "a": o.setting.a,
        "b": o.setting.b,
        "queue_capacity": o.queue_capacity,
        "capacity": round(o.capacity, 4),
        "rate": round(r.rate, 4),
        "share": round(r.rate / total, 6),
        "predicted_latency_ms": plan.client_ms(d, r.predicted_latency_s),
        "latency_source": _source(o.predicted, o.runs_slo),
        "memory_mib": round(o.memory_bytes / 2**20, 1),
    }


def replica_latency(
    service: ModelService, option: Option, rate: float, demand: Demand, search: SloSearch
) -> float:
    """The target statistic (seconds) of one replica fed ``rate``: simulated for ``slo``,
    from the queueing model for an (a, b) rule, as each option's capacity was found."""
    if option.runs_slo:
        return slo_latency(service, option, rate, demand.target, search)
    return predicted_latency(service, option, rate, demand)


def predicted_latency(service: ModelService, option: Option, rate: float, demand: Demand) -> float:
    """The target statistic (seconds) of one replica of ``option`` fed ``rate`` requests/s."""
    s = option.setting
    curve = Curve(
        service.means(option.cores, s.b),
        service.cvs(option.cores, s.b),
        s.a,
        s.b,
        demand.target.percentile,
        option.queue_capacity,
    )
    f = option.speed_factor
    return curve.latency_at(rate * f) * f


def model_options(
    service: ModelService,
    demand: Demand,
    catalogue: Catalogue,
    settings: PlannerSettings,
) -> list[Option]:
    """A model's non-dominated options; a UserError naming the model when there are none."""
    counts = settings.core_counts(service)
    if settings.policy == "slo":
        options = enumerate_slo_options(
            service,
            demand,
            catalogue.node_types,
            counts,
            settings.max_batches,
            catalogue.usable_memory_bytes,
            settings.search,
        )
        if not options:
            raise UserError(no_option_reason(service, demand, catalogue, settings))
        return options
    options = enumerate_options(
        service,
        demand,
        catalogue.node_types,
        counts,
        settings.settings,
        catalogue.usable_memory_bytes,
        rel_tol=settings.rel_tol,
    )
    if not options:
        raise UserError(no_option_reason(service, demand, catalogue, settings))
    return options


def no_option_reason(
    service: ModelService, demand: Demand, catalogue: Catalogue, settings: PlannerSettings
) -> str:
    """One line: why no option of this model meets its target."""
    target = demand.target
    fastest, where = saturation_hint(
        service, catalogue.node_types, settings.core_counts(service), target
    )
    slo_ms = target.slo_s * 1e3
    if fastest > target.slo_s:
        return (
            f"model {demand.model}: no option meets {target.label} <= {slo_ms:g} ms; the fastest "
            f"batch-1 latency is {fastest * 1e3:.1f} ms ({target.label}, on {where})"
        )
    smallest = service.memory_bytes(min(settings.max_batches)) / 2**30
    roomiest = max(catalogue.usable_memory_bytes(t) for t in catalogue.node_types) / 2**30
    if smallest > roomiest:
        return (
            f"model {demand.model}: a replica needs {smallest:.2f} GiB, more than any node "
            f"type offers ({roomiest:.2f} GiB usable)"
        )
    return (
        f"model {demand.model}: no option meets {target.label} <= {slo_ms:g} ms at any rate "
        f"(fastest batch-1 latency {fastest * 1e3:.1f} ms on {where}, but queueing "
        "behind it leaves no room; try smaller --max-batch values or more cores)"
    )


def make_plan(
    demands: Sequence[Demand],
    services: Mapping[str, ModelService],
    catalogue: Catalogue,
    settings: PlannerSettings | None = None,
) -> Plan:
    """The cheapest plan that meets every demand's target on the catalogue's nodes.

    Each target is planned for the server's budget, its SLO less the serving path's
    overhead (``settings.path``); the plan's demands are those budgets."""
    settings = settings or PlannerSettings()
    if settings.headroom < 0:
        raise UserError(f"headroom must be >= 0, got {settings.headroom}")
    names = [d.model for d in demands]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise UserError(f"model {dup!r} is listed twice in the workload")
    start = time.perf_counter()
    demands = [replace(d, target=settings.path.budget(d.target, d.model)) for d in demands]
    options: list[Option] = []
    for d in demands:
        options.extend(model_options(services[d.model], d, catalogue, settings))
    sized = [replace(d, rate=d.rate * (1 + settings.headroom)) for d in demands]
    alloc = allocate(
        options, sized, catalogue.usable_memory_bytes, time_limit_s=settings.time_limit_s
    )
    plan = place(alloc, options, demands, services, settings.search)
    return replace(
        plan,
        currency=catalogue.currency,
        prices=catalogue.source,
        options_considered=len(options),
        plan_seconds=time.perf_counter() - start,
        path=settings.path,
    )


def place(
    alloc: Allocation,
    options: Sequence[Option],
    demands: Sequence[Demand],
    services: Mapping[str, ModelService],
    search: SloSearch | None = None,
) -> Plan:
    """Name the nodes, route traffic by capacity, predict each replica's latency."""
    search = search or SloSearch()
    carried = {d.model: 0.0 for d in demands}
    for n in alloc.nodes:
        for i in n.replicas:
            carried[options[i].model] += options[i].capacity
    by_model = {d.model: d for d in demands}
    counters: dict[str, int] = {}
    nodes = []
    cache: dict[tuple[int, float], float] = {}
    for n in sorted(alloc.nodes, key=lambda n: (n.node_type.name, -len(n.replicas))):
        index = counters.get(n.node_type.name, 0)
        counters[n.node_type.name] = index + 1
        replicas = []
        for i in sorted(n.replicas, key=lambda i: (options[i].model, -options[i].cores)):
            o = options[i]
            d = by_model[o.model]
            rate = d.rate * o.capacity / carried[o.model]
            key = (i, rate)
            if key not in cache:
                cache[key] = replica_latency(services[o.model], o, rate, d, search)
            replicas.append(PlannedReplica(o, rate, cache[key]))
        nodes.append(PlannedNode(f"{n.node_type.name}-{index}", n.node_type, tuple(replicas)))
    return Plan(
        demands=tuple(demands),
        nodes=tuple(nodes),
        cost_per_hour=alloc.cost_per_hour,
        lower_bound=alloc.lower_bound,
        method=alloc.method,
    )
