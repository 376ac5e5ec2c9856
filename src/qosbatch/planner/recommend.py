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
from dataclasses import dataclass

from qosbatch.core.errors import UserError
from qosbatch.planner.catalogue import Catalogue, profiled_node_type
from qosbatch.planner.options import Demand, Option
from qosbatch.planner.plan import PlannerSettings, model_options, predicted_latency
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

    def line(self, currency: str = "USD") -> str:
        o, d = self.option, self.demand
        node = o.node_type.name
        cost = (
            f"{_money(self.cost_per_hour, currency)}/h"
            if self.cost_per_hour is not None
            else "cost n/a (no price: pass --nodes or --price)"
        )
        source = "predicted via flops*p/c" if o.predicted else "from the profile"
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
        price = t.price_per_hour
        first = nodes * price if price is not None else float(nodes)
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
        latency = predicted_latency(service, o, demand.rate / replicas, demand)
        price = o.node_type.price_per_hour
        rec = Recommendation(
            demand, o, replicas, nodes, None if price is None else nodes * price, latency
        )
        key = (latency, float(replicas * o.cores))
        if best is None or key < best[:2]:
            best = (*key, rec)
    assert best is not None  # tied holds at least the cheapest option
    return best[2]


def profiled_catalogue(service: ModelService, price_per_hour: float | None) -> Catalogue:
    """The node the profile was taken on as the only node type (no --nodes given)."""
    return Catalogue((profiled_node_type(service.node, price_per_hour),), reserved_memory_gib=0.0)
