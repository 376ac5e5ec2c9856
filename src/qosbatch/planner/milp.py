"""The integer program: how many replicas of which option, on how many nodes of which type.

Variables: x_o >= 0 integer (replicas of option o), y_t >= 0 integer (nodes of type t).

    minimise   sum_t price_t y_t + sum_o price_o x_o
    subject to sum_{o of m} capacity_o x_o >= rate_m        every model m
               sum_{o on t} cores_o x_o    <= cores_t y_t   every node type t
               sum_{o on t} memory_o x_o   <= memory_t y_t
               y_t <= max_nodes_t

(scipy.optimize.milp, HiGHS). price_t is a node-hour's rent; price_o is zero except on
a pay-per-use type (billed per core-second), where the node is free and each replica
pays for its cores for the hour. Per type, the totals are a relaxation of packing
whole replicas onto whole nodes: a 3-core replica does not share a 4-core node
with another. So the replicas are then packed node by node (first fit,
largest first). Where that needs no more nodes than y, the plan is optimal:
nothing cheaper satisfies even the relaxation. Where it needs more (odd core
counts, or memory and cores both tight), a second program with one variable per
(option, node) packs exactly; its size grows with the node count, so past
``EXACT_MAX_VARIABLES`` the first-fit plan is kept and reported with its gap to
the relaxation's bound. With core counts that are powers of two on nodes of 2^n
cores and memory to spare, first fit always succeeds and no second program runs.

A tie-breaker of 1e-6 times the share of a node each replica occupies picks, among
plans of equal cost, the one with the fewest cores in replicas.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_array

from qosbatch.core.errors import UserError
from qosbatch.planner.catalogue import NodeType
from qosbatch.planner.options import Demand, Option

TIE_BREAK = 1e-6
EXACT_MAX_VARIABLES = 20_000
# Many plans cost the same, so proving optimality can take HiGHS far longer than finding
# a good plan: on benchmarks/planner_speed.py (16-48-core nodes, odd replica sizes) ~7 s
# to prove what it holds within 5% after 2 s; with node sizes and replica sizes powers of
# two it proves optimality in 0.4 s. Past this limit it stops, and the plan reports the
# best found and the proven lower bound (``Allocation.optimal`` says which).
TIME_LIMIT_S = 2.0
BOUND_TIME_S = 0.5  # for the lower bound alone (the plain-totals program)
PROVE_MAX_VARIABLES = 2_000  # run the exact program to prove a packed plan only this small


@dataclass(frozen=True)
class PlacedNode:
    """One rented node and the options of the replicas placed on it (one index each)."""

    node_type: NodeType
    replicas: tuple[int, ...]  # indices into the options, one per replica


@dataclass(frozen=True)
class Allocation:
    """The program's answer: replicas per option, and nodes with their replicas."""

    replicas: tuple[int, ...]  # per option
    nodes: tuple[PlacedNode, ...]
    cost_per_hour: float
    lower_bound: float  # the relaxation's optimum: no plan of these options costs less
    method: str  # how the packing was done (for the report)

    @property
    def optimal(self) -> bool:
        return self.cost_per_hour <= self.lower_bound * (1 + 1e-9) + 1e-12


MemoryOf = Callable[[NodeType], float]


def allocate(
    options: Sequence[Option],
    demands: Sequence[Demand],
    memory_of: MemoryOf,
    *,
    exact_max_variables: int = EXACT_MAX_VARIABLES,
    time_limit_s: float = TIME_LIMIT_S,
) -> Allocation:
    """The cheapest replicas and nodes carrying every demand (module doc).

    Within ``time_limit_s`` per program: past it, the best plan found is returned and
    ``lower_bound`` is the solver's proven bound, so ``optimal`` says which it was.
    """
    for d in demands:
        if not any(o.model == d.model for o in options):
            raise UserError(f"model {d.model}: no option meets its {d.target.label} target")
    for o in options:
        if o.node_type.node_price_per_hour is None:
            raise UserError(f"node type {o.node_type.name} has no price: cannot minimise cost")
    types = _types(options)
    # The plan: each replica is charged its packing share of a node's cores (a 3-core
    # replica on a 16-core node holds 16/5 = 3.2: five fit, not 5.33), so first fit meets
    # the program's node count far more often and HiGHS does not search packings that
    # the totals cannot see. That program bounds nothing, so the bound comes from the
    # plain totals (a relaxation of packing), given a short time: its proven dual bound.
    x, y, _ = _aggregate(options, demands, types, memory_of, time_limit_s, share=True)
    if x is None or y is None:  # shares can be too strict under max_nodes: plain totals
        x, y, bound = _aggregate(options, demands, types, memory_of, time_limit_s)
    else:
        bound = _aggregate(options, demands, types, memory_of, BOUND_TIME_S)[2]
        if not math.isfinite(bound):  # no answer in that time: the linear relaxation's
            bound = _aggregate(options, demands, types, memory_of, BOUND_TIME_S, relax=True)[2]
    if x is None or y is None:
        if bound == -math.inf:
            raise UserError(
                f"the integer program found no plan within its {time_limit_s:g} s limit "
                "(raise --time-limit)"
            )
        raise UserError(_why_infeasible(options, demands, types, memory_of))
    nodes = []
    overflow = False
    for t, count in zip(types, y, strict=True):
        items = [
            i for i, n in enumerate(x) if options[i].node_type.name == t.name for _ in range(n)
        ]
        packed = first_fit(items, options, t, memory_of(t))
        overflow |= len(packed) > count
        nodes.extend(PlacedNode(t, tuple(p)) for p in packed)
    cost = plan_cost(nodes, options)
    method = "aggregate program; first-fit packing met its node count"
    unproven = cost > bound * (1 + 1e-9) + 1e-12
    if overflow or unproven:  # the exact program: to pack, or (when small) to prove
        limit = exact_max_variables if overflow else min(exact_max_variables, PROVE_MAX_VARIABLES)
        exact_result = _per_node(options, demands, types, memory_of, cost, limit, time_limit_s)
        exact, proven = exact_result if exact_result is not None else (None, False)
        exact_cost = math.inf if exact is None else plan_cost(exact, options)
        if proven:  # the per-node program is the exact problem: its optimum bounds every plan
            bound = max(bound, exact_cost)
        if exact is not None and exact_cost <= cost + 1e-9:
            nodes, method = exact, "per-node program (first fit needed more nodes)"
            x = [0] * len(options)
            for n in nodes:
                for i in n.replicas:
                    x[i] += 1
            cost = exact_cost
        elif overflow:
            method = "aggregate program; first-fit packing (needed more nodes than the program)"
    return Allocation(tuple(int(v) for v in x), tuple(nodes), cost, bound, method)


def _types(options: Sequence[Option]) -> list[NodeType]:
    seen: dict[str, NodeType] = {}
    for o in options:
        seen.setdefault(o.node_type.name, o.node_type)
    return list(seen.values())


def _price(t: NodeType) -> float:
    return t.rent_per_hour()


def _replica_price(o: Option) -> float:
    return o.node_type.replica_per_hour(o.cores)


def plan_cost(nodes: Sequence[PlacedNode], options: Sequence[Option]) -> float:
    """Per hour: every node's rent, and every pay-per-use replica's cores."""
    return sum(
        _price(n.node_type) + sum(_replica_price(options[i]) for i in n.replicas) for n in nodes
    )


def _replica_bound(o: Option, demands: Sequence[Demand]) -> int:
    """More replicas of one option than carry its model alone are never needed."""
    rate = next(d.rate for d in demands if d.model == o.model)
    return max(1, math.ceil(rate / o.capacity - 1e-12))


def _tie(o: Option) -> float:
    return TIE_BREAK * _price(o.node_type) * o.cores / o.node_type.cores


def _aggregate(
    options: Sequence[Option],
    demands: Sequence[Demand],
    types: Sequence[NodeType],
    memory_of: MemoryOf,
    time_limit_s: float = TIME_LIMIT_S,
    *,
    share: bool = False,
    relax: bool = False,
) -> tuple[list[int] | None, list[int] | None, float]:
    """(replicas per option, nodes per type, lower bound on cost); (None, None, inf) when
    infeasible, (None, None, -inf) when the time ran out before any plan was found.

    ``share``: a replica takes its packing share of a node's cores (see ``allocate``).
    ``relax``: the linear relaxation, for its bound only (its x and y are not whole).
    """
    n_o, n_t = len(options), len(types)
    t_index = {t.name: j for j, t in enumerate(types)}
    m_index = {d.model: i for i, d in enumerate(demands)}
    replica_cost = np.array([_replica_price(o) for o in options])
    cost = np.array([_tie(o) for o in options] + [_price(t) for t in types])
    cost[:n_o] += replica_cost
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    lo: list[float] = []
    hi: list[float] = []
    for i, d in enumerate(demands):  # capacity covers the rate
        lo.append(d.rate)
        hi.append(np.inf)
        for j, o in enumerate(options):
            if m_index[o.model] == i:
                rows.append(i)
                cols.append(j)
                vals.append(o.capacity)
    for j, t in enumerate(types):  # cores, then memory, within the nodes rented
        r_cores, r_mem = len(demands) + 2 * j, len(demands) + 2 * j + 1
        lo += [-np.inf, -np.inf]
        hi += [0.0, 0.0]
        for k, o in enumerate(options):
            if t_index[o.node_type.name] == j:
                rows += [r_cores, r_mem]
                cols += [k, k]
                cores = t.cores / (t.cores // o.cores) if share else float(o.cores)
                vals += [cores, o.memory_bytes / 2**30]
        rows += [r_cores, r_mem]
        cols += [n_o + j, n_o + j]
        vals += [-float(t.cores), -memory_of(t) / 2**30]
    matrix = coo_array((vals, (rows, cols)), shape=(len(lo), n_o + n_t)).tocsr()
    upper = [_replica_bound(o, demands) for o in options] + [
        np.inf if t.max_nodes is None else t.max_nodes for t in types
    ]
    res = milp(
        cost,
        integrality=np.zeros(n_o + n_t) if relax else np.ones(n_o + n_t),
        bounds=Bounds(np.zeros(n_o + n_t), np.array(upper, dtype=float)),
        constraints=LinearConstraint(matrix, np.array(lo), np.array(hi)),
        options={"time_limit": time_limit_s, "mip_rel_gap": 1e-9},
    )
    if res.x is None:
        return None, None, (math.inf if res.status == 2 else -math.inf)
    if relax:  # the node cost of the relaxed optimum: no whole plan costs less
        return None, None, float(np.dot(cost[n_o:], res.x[n_o:]) + replica_cost @ res.x[:n_o])
    sol = np.round(res.x).astype(int)
    bound = float(sum(_price(t) * int(v) for t, v in zip(types, sol[n_o:], strict=True)))
    bound += float(replica_cost @ sol[:n_o])
    if res.status != 0:  # stopped by the time limit: the proven bound, not this plan's cost
        dual = getattr(res, "mip_dual_bound", None)
        bound = min(bound, float(dual)) if dual is not None and math.isfinite(dual) else 0.0
    return [int(v) for v in sol[:n_o]], [int(v) for v in sol[n_o:]], bound


def first_fit(
    items: Sequence[int], options: Sequence[Option], node_type: NodeType, memory: float
) -> list[list[int]]:
    """Pack replicas (option indices) onto nodes, largest first, each into the first with room."""
    order = sorted(items, key=lambda i: (-options[i].cores, -options[i].memory_bytes, i))
    nodes: list[list[int]] = []
    free: list[list[float]] = []  # [cores, memory] left per node
    for i in order:
        o = options[i]
        for n, room in enumerate(free):
            if room[0] >= o.cores and room[1] >= o.memory_bytes - 1e-6:
                room[0] -= o.cores
                room[1] -= o.memory_bytes
                nodes[n].append(i)
                break
        else:
            nodes.append([i])
            free.append([float(node_type.cores - o.cores), memory - o.memory_bytes])
    return nodes


def _per_node(
    options: Sequence[Option],
    demands: Sequence[Demand],
    types: Sequence[NodeType],
    memory_of: MemoryOf,
    known_cost: float,
    max_variables: int,
    time_limit_s: float,
) -> tuple[list[PlacedNode], bool] | None:
    """The exact program: x_{o,j} replicas of o on node j of its type, z_j node j rented.

    Node j of a type exists only up to how many of that type a plan costing
    ``known_cost`` (first fit's) could rent, so the program stays finite; nodes are
    rented in order (z_j >= z_{j+1}) to cut symmetric solutions. Returns the nodes and
    whether the program was solved to optimality (not stopped by the time limit).
    """
    by_type = {
        t.name: [i for i, o in enumerate(options) if o.node_type.name == t.name] for t in types
    }
    slots = _node_slots(options, demands, types, by_type, known_cost)
    var: list[tuple[int, int]] = []  # (option, slot) for each x variable
    for s, (t, _) in enumerate(slots):
        var.extend((i, s) for i in by_type[t.name])
    n_x, n_z = len(var), len(slots)
    if n_x + n_z > max_variables or n_z == 0:
        return None
    m_index = {d.model: i for i, d in enumerate(demands)}
    cost = np.array(
        [_tie(options[i]) + _replica_price(options[i]) for i, _ in var]
        + [_price(t) for t, _ in slots]
    )
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    lo: list[float] = [d.rate for d in demands]
    hi: list[float] = [np.inf] * len(demands)
    for k, (i, _) in enumerate(var):
        rows.append(m_index[options[i].model])
        cols.append(k)
        vals.append(options[i].capacity)
    base = len(demands)
    for k, (i, s) in enumerate(var):
        rows += [base + 2 * s, base + 2 * s + 1]
        cols += [k, k]
        vals += [float(options[i].cores), options[i].memory_bytes / 2**30]
    for s, (t, _) in enumerate(slots):
        rows += [base + 2 * s, base + 2 * s + 1]
        cols += [n_x + s, n_x + s]
        vals += [-float(t.cores), -memory_of(t) / 2**30]
        lo += [-np.inf, -np.inf]
        hi += [0.0, 0.0]
    row = base + 2 * n_z
    for s, (_, j) in enumerate(slots):
        if j > 0:  # z_j <= z_{j-1}
            rows += [row, row]
            cols += [n_x + s, n_x + s - 1]
            vals += [1.0, -1.0]
            lo.append(-np.inf)
            hi.append(0.0)
            row += 1
    matrix = coo_array((vals, (rows, cols)), shape=(row, n_x + n_z)).tocsr()
    upper = [options[i].node_type.cores // options[i].cores for i, _ in var] + [1] * n_z
    res = milp(
        cost,
        integrality=np.ones(n_x + n_z),
        bounds=Bounds(np.zeros(n_x + n_z), np.array(upper, dtype=float)),
        constraints=LinearConstraint(matrix, np.array(lo), np.array(hi)),
        options={"time_limit": time_limit_s, "mip_rel_gap": 1e-9},
    )
    if res.x is None:
        return None
    return _placed(np.round(res.x).astype(int), var, slots), res.status == 0


def _node_slots(
    options: Sequence[Option],
    demands: Sequence[Demand],
    types: Sequence[NodeType],
    by_type: dict[str, list[int]],
    known_cost: float,
) -> list[tuple[NodeType, int]]:
    """(type, j) for every node j the program may rent: no more of a type than could
    hold its options' replicas, than ``known_cost`` buys, or than the type allows."""
    slots: list[tuple[NodeType, int]] = []
    for t in types:
        limit = sum(_replica_bound(options[i], demands) for i in by_type[t.name])
        if _price(t) > 0:
            limit = min(limit, math.floor(known_cost / _price(t) + 1e-9))
        if t.max_nodes is not None:
            limit = min(limit, t.max_nodes)
        slots.extend((t, j) for j in range(limit))
    return slots


def _placed(
    sol: NDArray[np.int_], var: list[tuple[int, int]], slots: list[tuple[NodeType, int]]
) -> list[PlacedNode]:
    """The rented nodes with their replicas, read off the solution (x first, then z)."""
    n_x = len(var)
    placed: dict[int, list[int]] = {s: [] for s in range(len(slots)) if sol[n_x + s] > 0}
    for k, (i, s) in enumerate(var):
        if sol[k] > 0:
            placed.setdefault(s, []).extend([i] * int(sol[k]))
    return [PlacedNode(slots[s][0], tuple(reps)) for s, reps in sorted(placed.items()) if reps]


def _why_infeasible(
    options: Sequence[Option],
    demands: Sequence[Demand],
    types: Sequence[NodeType],
    memory_of: MemoryOf,
) -> str:
    """Name the model that the node limits cannot hold, alone if one cannot be."""
    limits = ", ".join(f"{t.name} <= {t.max_nodes}" for t in types if t.max_nodes is not None)
    for d in demands:
        mine = [o for o in options if o.model == d.model]
        x, _, bound = _aggregate(mine, [d], _types(mine), memory_of)
        if x is None and bound == math.inf:
            best = max(mine, key=lambda o: o.capacity / o.cores)
            return (
                f"model {d.model}: {d.rate:g} req/s does not fit within the node limits "
                f"({limits or 'none'}); its best option carries {best.capacity:.3g} req/s "
                f"per {best.cores}-core replica"
            )
    return f"the models together do not fit within the node limits ({limits or 'none'})"
