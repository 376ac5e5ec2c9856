"""The one-line answer to "which batch size, how many cores, how many replicas, where?".

For one model at one rate, the answer a person can act on is a single
configuration: one batch setting on one core count, replicated, on nodes of one
type. Each option needs ceil(rate / capacity) replicas; a node of its type holds
as many as its cores and memory allow; the cheapest (nodes x price) wins, then
the lowest predicted latency at the rate each replica will see, then the fewest
cores. Without prices (the profiled node alone, no catalogue), the fewest nodes
and then the fewest cores win. The integer program is not needed here: with one
model and one option per answer, this enumeration is exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from qosbatch.core.errors import UserError
from qosbatch.core.pricing import per_million
from qosbatch.planner.catalogue import Catalogue, NodeType, profiled_node_type
from qosbatch.planner.checks import on_time_floor
from qosbatch.planner.options import Demand, Option
from qosbatch.planner.plan import PlannerSettings, model_options, replica_latency
from qosbatch.planner.service import ModelService

_LATENCY_CANDIDATES = 12  # equally cheap options whose latency is compared


@dataclass(frozen=True)
class Recommendation:
    demand: Demand
    option: Option
    replicas: int
    nodes: int
    cost_per_hour: float | None  # None: the node type has no price
    predicted_latency_s: float  # the target statistic at rate / replicas per replica

    @property
    def cost_per_million_on_time(self) -> float | None:
        """At most this: the hour's cost over the requests the target keeps on time."""
        if self.cost_per_hour is None:
            return None
        return per_million(self.cost_per_hour, self.demand.rate * on_time_floor(self.demand.target))

    def line(self, currency: str = "USD") -> str:
        o, d = self.option, self.demand
        node = o.node_type.name
        cost = (
            f"{_money(self.cost_per_hour, currency)}/h "
            f"({_money(self.cost_per_million_on_time, currency)} per million on-time requests)"
            if self.cost_per_hour is not None
            else "cost n/a (no price: pass --nodes or --price)"
        )
        source = "predicted via flops*p/c" if o.predicted else "from the profile"
        if o.runs_slo:
            source = f"simulated, {source}"
        plural = "s" * (self.replicas > 1)
        return (
            f"{d.model}: {o.policy} on {o.cores} core{'s' * (o.cores > 1)} x {self.replicas} "
            f"replica{plural} on {self.nodes} x {node}, {cost}; "
            f"{d.target.label} {self.predicted_latency_s * 1e3:.1f} ms at {d.rate:g} req/s "
            f"(SLO {d.target.slo_s * 1e3:g} ms; {o.capacity:.3g} req/s per replica; "
            f"latency {source})"
        )


def _money(value: float | None, currency: str) -> str:
    if value is None:
        return "n/a"
    return f"${value:.4g}" if currency == "USD" else f"{value:.4g} {currency}"


def recommend(
    service: ModelService,
    demand: Demand,
    catalogue: Catalogue,
    settings: PlannerSettings | None = None,
) -> Recommendation:
    """The cheapest single configuration meeting ``demand`` (module doc); UserError if none."""
    settings = settings or PlannerSettings()
    client = demand  # the line speaks of what the client sees: the path's overhead included
    overhead = settings.path.overhead_s(demand.target)
    demand = replace(demand, target=settings.path.budget(demand.target, demand.model))
    options = model_options(service, demand, catalogue, settings)
    rate = demand.rate * (1 + settings.headroom)
    scored: list[tuple[tuple[float, float], Option, int, int]] = []
    for o in options:
        t = o.node_type
        replicas = math.ceil(rate / o.capacity - 1e-9)
        per_node = t.cores // o.cores
        memory = catalogue.usable_memory_bytes(t)
        if math.isfinite(memory):
            per_node = min(per_node, int(memory // o.memory_bytes))
        if per_node < 1:
            continue
        nodes = math.ceil(replicas / per_node)
        if t.max_nodes is not None and nodes > t.max_nodes:
            continue
        cost = _cost_per_hour(t, nodes, replicas, o.cores)
        first = cost if cost is not None else float(nodes)
        scored.append(((first, float(replicas * o.cores)), o, replicas, nodes))
    if not scored:
        limits = ", ".join(
            f"{t.name} <= {t.max_nodes}" for t in catalogue.node_types if t.max_nodes is not None
        )
        raise UserError(
            f"model {demand.model}: {demand.rate:g} req/s needs more nodes than the limits "
            f"allow ({limits or 'none'})"
        )
    cheapest = min(s[0][0] for s in scored)
    tied = sorted((s for s in scored if s[0][0] <= cheapest * (1 + 1e-9)), key=lambda s: s[0])
    best: tuple[float, float, Recommendation] | None = None
    for _, o, replicas, nodes in tied[:_LATENCY_CANDIDATES]:
        latency = replica_latency(service, o, demand.rate / replicas, demand, settings.search)
        cost = _cost_per_hour(o.node_type, nodes, replicas, o.cores)
        rec = Recommendation(client, o, replicas, nodes, cost, latency + overhead)
        key = (latency, float(replicas * o.cores))
        if best is None or key < best[:2]:
            best = (*key, rec)
    assert best is not None  # tied holds at least the cheapest option
    return best[2]


def _cost_per_hour(t: NodeType, nodes: int, replicas: int, cores: int) -> float | None:
    """Rent for the nodes, plus each replica's cores where the type bills per core-second."""
    if t.node_price_per_hour is None:
        return None
    return nodes * t.rent_per_hour() + replicas * t.replica_per_hour(cores)


def profiled_catalogue(service: ModelService, price_per_hour: float | None) -> Catalogue:
    """The node the profile was taken on as the only node type (no --nodes given)."""
    return Catalogue((profiled_node_type(service.node, price_per_hour),), reserved_memory_gib=0.0)
