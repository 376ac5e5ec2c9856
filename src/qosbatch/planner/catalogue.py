"""Node types a plan can rent: cores, memory, price per hour and compute power.

The planner compares node types by what one replica of a model does on k of
their cores. Only the node a profile was taken on has measured latencies; every
other node type's latency is carried over by the flops*p/c representation: a
batch costs ``flops * b * p(b, k) / c(k)``, where the density p belongs to the
model (the same on every node, to first order) and c(k) to the node. The
density at (b, k) is what the profile shows on its own node,
``p = s_ref(b, k) * c_ref(k) / (flops * b)``, so on node type t

    s_t(b, k) = flops * b * p / c_t(k) = s_ref(b, k) * c_ref(k) / c_t(k).

The FLOPs cancel: a profile whose FLOPs were not counted still carries over.
``speed_factor`` returns that multiplier c_ref(k) / c_t(k). A node type whose
compute power was never measured is assumed as fast per core as the profiled
node (its cores times the profiled node's per-core GFLOP/s at its largest
measured core count, the all-core figure), which makes its per-core latency
the profiled one and leaves price, size and memory to decide.

Pure: parses mappings that ``qosbatch.planner.files`` read from YAML.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from qosbatch.core.errors import UserError
from qosbatch.core.pricing import parse_price
from qosbatch.core.profile import NodeInfo
from qosbatch.planner.fields import Fields

CATALOGUE_SCHEMA = "qosbatch.catalogue"
DEFAULT_RESERVED_MEMORY_GIB = 0.5


@dataclass(frozen=True)
class NodeType:
    """One kind of machine that can be rented by the hour."""

    name: str
    cores: int  # vCPUs a replica may be pinned to
    memory_gib: float  # math.inf where unknown (the profiled node): memory is not checked
    price_per_hour: float | None  # None: unpriced (the profiled node without --nodes)
    gflops_per_core: float | None = None  # measured c / cores; None: estimated (see module doc)
    max_nodes: int | None = None  # how many may be rented; None: no limit
    cpu_model: str | None = None  # equal to a profile's node: that node, measured, not predicted
    # Pay-per-use (serverless CPU): each replica pays for its own cores by the second,
    # the node itself costs nothing; None: billed per node-hour (price_per_hour).
    price_per_core_hour: float | None = None

    @property
    def billing(self) -> str:
        return "node-hour" if self.price_per_core_hour is None else "core-second"

    @property
    def node_price_per_hour(self) -> float | None:
        """What the node costs held for an hour: its price, or all its cores' (pay-per-use)."""
        if self.price_per_core_hour is not None:
            return self.price_per_core_hour * self.cores
        return self.price_per_hour

    def rent_per_hour(self) -> float:
        """What renting one node costs per hour before any replica runs on it (0: pay-per-use)."""
        return 0.0 if self.price_per_core_hour is not None else float(self.price_per_hour or 0.0)

    def replica_per_hour(self, cores: int) -> float:
        """What one replica on ``cores`` of this type adds per hour (pay-per-use only)."""
        return 0.0 if self.price_per_core_hour is None else self.price_per_core_hour * cores

    def is_profiled_node(self, node: NodeInfo) -> bool:
        return self.cpu_model is not None and self.cpu_model == node.cpu_model

    def speed_factor(self, node: NodeInfo, cores: int) -> float:
        """s on k cores of this type over s on k cores of the profiled ``node``: c_ref/c_t."""
        if self.is_profiled_node(node) and self.gflops_per_core is None:
            return 1.0
        if not node.compute_gflops:
            if self.gflops_per_core is None:
                return 1.0  # estimated from a node of unknown power: as fast per core
            raise UserError(
                f"node type {self.name} gives its compute power, but the profile's node "
                f"({node.cpu_model}) has none measured, so latency cannot be carried over "
                "(profile again after `qosbatch node`)"
            )
        return node.gflops(cores) / (cores * self.per_core_gflops(node))

    def per_core_gflops(self, node: NodeInfo) -> float:
        """This type's GFLOP/s per core: given, or the profiled node's all-core figure."""
        if self.gflops_per_core is not None:
            return self.gflops_per_core
        top = max(node.compute_gflops)
        return node.compute_gflops[top] / top

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "cores": self.cores,
            "memory_gib": None if math.isinf(self.memory_gib) else self.memory_gib,
            "price_per_hour": self.price_per_hour,
            "billing": self.billing,
            "compute": "estimated" if self.gflops_per_core is None else "given",
        }
        if self.gflops_per_core is not None:
            out["gflops_per_core"] = self.gflops_per_core
        if self.price_per_core_hour is not None:
            out["price_per_core_hour"] = self.price_per_core_hour
        return out


@dataclass(frozen=True)
class Catalogue:
    """The node types on offer and how much of each node's memory the server keeps."""

    node_types: tuple[NodeType, ...]
    reserved_memory_gib: float = DEFAULT_RESERVED_MEMORY_GIB
    currency: str = "USD"
    as_of: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        names = [t.name for t in self.node_types]
        if not names:
            raise UserError("the node catalogue lists no node types")
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise UserError(f"the node catalogue lists node type {dup!r} twice")

    def usable_memory_bytes(self, node_type: NodeType) -> float:
        return (node_type.memory_gib - self.reserved_memory_gib) * 2**30

    def by_name(self, name: str) -> NodeType:
        for t in self.node_types:
            if t.name == name:
                return t
        raise UserError(f"no node type {name!r} in the catalogue")


_NODE_FIELDS = (
    "name",
    "cores",
    "memory_gib",
    "price_per_hour",
    "price",
    "gflops_per_core",
    "gflops",
    "max_nodes",
    "cpu_model",
)
_TOP_FIELDS = (
    "schema",
    "version",
    "as_of",
    "source",
    "currency",
    "reserved_memory_gib",
    "node_types",
)


def parse_catalogue(data: Any, where: str) -> Catalogue:
    """A catalogue from a parsed YAML document; errors name ``where`` and the field."""
    top = Fields(data, where)
    top.check_known(_TOP_FIELDS)
    schema = top.text("schema", CATALOGUE_SCHEMA)
    if schema != CATALOGUE_SCHEMA:
        raise UserError(f"{top.at('schema')}: expected {CATALOGUE_SCHEMA}, got {schema!r}")
    version = top.integer("version", 1)
    if version != 1:
        raise UserError(f"{top.at('version')}: version {version} is not supported (want 1)")
    reserved = top.number("reserved_memory_gib", DEFAULT_RESERVED_MEMORY_GIB, minimum=0.0)
    types = tuple(_node_type(f) for f in top.items("node_types"))
    for f, t in zip(top.items("node_types"), types, strict=True):
        if reserved is not None and t.memory_gib <= reserved:
            raise UserError(
                f"{f.at('memory_gib')}: {t.memory_gib:g} GiB leaves nothing beside the "
                f"{reserved:g} GiB reserved per node (reserved_memory_gib)"
            )
    return Catalogue(
        types,
        reserved_memory_gib=float(reserved or 0.0),
        currency=top.text("currency", "USD") or "USD",
        as_of=top.text("as_of", "") or "",
        source=top.text("source", "") or "",
    )


def _node_type(f: Fields) -> NodeType:
    f.check_known(_NODE_FIELDS)
    name = f.text("name")
    if not name:
        raise UserError(f"{f.at('name')}: missing (required)")
    cores = f.integer("cores", required=True)
    assert cores is not None  # required=True raised otherwise
    per_core = f.number("gflops_per_core", positive=True)
    total = f.number("gflops", positive=True)
    if per_core is not None and total is not None:
        raise UserError(f"{f.where}: give gflops_per_core or gflops (whole node), not both")
    if total is not None:
        per_core = total / cores
    per_hour, per_core_hour = _prices(f)
    return NodeType(
        name=name,
        cores=cores,
        memory_gib=float(f.number("memory_gib", positive=True, required=True) or 0.0),
        price_per_hour=per_hour,
        price_per_core_hour=per_core_hour,
        gflops_per_core=per_core,
        max_nodes=f.integer("max_nodes", minimum=0),
        cpu_model=f.text("cpu_model"),
    )


def _prices(f: Fields) -> tuple[float | None, float | None]:
    """(price per node-hour, price per core-hour): one of ``price_per_hour`` (a rented
    node) or ``price: AMOUNT/UNIT`` (``0.085/node-hour``, ``0.0494/core-hour``,
    ``0.0000137/core-second``; per core: pay-per-use, each replica pays for its cores)."""
    if f.has("price_per_hour") and f.has("price"):
        raise UserError(f"{f.where}: give price_per_hour or price (AMOUNT/UNIT), not both")
    if f.has("price"):
        price = parse_price(f.text("price") or "", f"{f.at('price')}:")
        if price.billing == "node-hour":
            return price.per_second * 3600, None
        return 0.0, price.per_second * 3600
    return f.number("price_per_hour", minimum=0.0, required=True), None


def profiled_node_type(node: NodeInfo, price_per_hour: float | None = None) -> NodeType:
    """The node a profile was taken on, as the only node type (``recommend`` without --nodes)."""
    return NodeType(
        name=node.cpu_model or "profiled node",
        cores=node.logical_cores,
        memory_gib=math.inf,
        price_per_hour=price_per_hour,
        cpu_model=node.cpu_model,
    )
