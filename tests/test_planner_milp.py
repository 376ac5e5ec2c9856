"""The integer program against brute force: same least cost on small instances."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from qosbatch.core.errors import UserError
from qosbatch.planner.catalogue import NodeType
from qosbatch.planner.milp import allocate, first_fit
from qosbatch.planner.options import BatchSetting, Demand, Option, prune_dominated
from qosbatch.planner.targets import Target

GIB = 2**30


def option(model, node_type, cores, capacity, memory_gib=0.5, b=4):
    return Option(
        model=model,
        node_type=node_type,
        cores=cores,
        setting=BatchSetting(1, b),
        queue_capacity=64,
        capacity=capacity,
        memory_bytes=memory_gib * GIB,
        speed_factor=1.0,
        predicted=True,
    )


def min_bins(items, cores, memory):
    """Fewest nodes holding ``items`` [(cores, memory)], by trying every placement."""
    items = sorted(items, reverse=True)
    best = [len(items)]

    def place(i, bins):
        if len(bins) >= best[0]:
            return
        if i == len(items):
            best[0] = len(bins)
            return
        c, m = items[i]
        for b in bins:
            if b[0] + c <= cores and b[1] + m <= memory + 1e-9:
                b[0] += c
                b[1] += m
                place(i + 1, bins)
                b[0] -= c
                b[1] -= m
        bins.append([c, m])
        place(i + 1, bins)
        bins.pop()

    place(0, [])
    return best[0] if items else 0


def brute_force(options, demands, memory_of):
    bounds = []
    for o in options:
        rate = next(d.rate for d in demands if d.model == o.model)
        bounds.append(range(math.ceil(rate / o.capacity - 1e-12) + 1))
    best = math.inf
    for x in itertools.product(*bounds):
        carried = {d.model: 0.0 for d in demands}
        for o, n in zip(options, x, strict=True):
            carried[o.model] += n * o.capacity
        if any(carried[d.model] < d.rate - 1e-9 for d in demands):
            continue
        cost = 0.0
        types = {o.node_type.name: o.node_type for o in options}
        for t in types.values():
            items = [
                (o.cores, o.memory_bytes / GIB)
                for o, n in zip(options, x, strict=True)
                if o.node_type.name == t.name
                for _ in range(n)
            ]
            bins = min_bins(items, t.cores, memory_of(t) / GIB)
            if t.max_nodes is not None and bins > t.max_nodes:
                cost = math.inf
            cost += bins * t.rent_per_hour()
        cost += sum(
            n * o.node_type.replica_per_hour(o.cores) for o, n in zip(options, x, strict=True)
        )
        best = min(best, cost)
    return best


def memory_of(t):
    return t.memory_gib * GIB


def random_instance(rng, odd_cores, pay_per_use=False):
    small = NodeType("small", 4, 4.0, 0.17)
    big = NodeType("big", 8, 16.0, 0.30)
    if pay_per_use:  # each replica pays its cores by the hour; a dearer core, no whole node
        small = NodeType("serverless", 4, 4.0, 0.0, price_per_core_hour=0.05)
    sizes = (1, 2, 3, 4) if odd_cores else (1, 2, 4)
    options = []
    for model in ("m0", "m1"):
        for t in (small, big):
            for _ in range(2):
                k = int(rng.choice([s for s in sizes if s <= t.cores]))
                capacity = float(rng.uniform(5, 12) * k ** rng.uniform(0.7, 1.0))
                options.append(option(model, t, k, capacity, float(rng.uniform(0.3, 1.8))))
    demands = [
        Demand("m0", float(rng.uniform(10, 30)), Target(0.1)),
        Demand("m1", float(rng.uniform(10, 30)), Target(0.1)),
    ]
    return options, demands


@pytest.mark.parametrize("seed", range(10))
def test_program_equals_brute_force_on_small_instances(seed):
    rng = np.random.default_rng(seed)
    options, demands = random_instance(rng, odd_cores=seed % 2 == 1, pay_per_use=seed >= 8)
    alloc = allocate(options, demands, memory_of)
    assert alloc.cost_per_hour == pytest.approx(brute_force(options, demands, memory_of))
    # The allocation is what it claims: capacity covers every rate, nodes hold their replicas.
    for d in demands:
        carried = sum(
            options[i].capacity
            for n in alloc.nodes
            for i in n.replicas
            if options[i].model == d.model
        )
        assert carried >= d.rate - 1e-9
    for n in alloc.nodes:
        assert sum(options[i].cores for i in n.replicas) <= n.node_type.cores
        assert sum(options[i].memory_bytes for i in n.replicas) <= memory_of(n.node_type) + 1
    assert alloc.cost_per_hour >= alloc.lower_bound - 1e-9


def test_odd_core_counts_that_first_fit_cannot_pack_go_to_the_per_node_program():
    node = NodeType("n4", 4, 64.0, 1.0)
    # Three-core replicas never share a 4-core node: the relaxation says 3 nodes hold
    # four of them (12 cores), whole nodes need 4. Two-core replicas pair up.
    options = [option("m", node, 3, 10.0), option("m", node, 2, 6.0)]
    demands = [Demand("m", 40.0, Target(0.1))]
    alloc = allocate(options, demands, memory_of)
    assert alloc.cost_per_hour == pytest.approx(brute_force(options, demands, memory_of))
    assert alloc.cost_per_hour == pytest.approx(4.0) and alloc.optimal  # proven by per-node


def test_memory_is_packed_as_well_as_cores():
    node = NodeType("n", 8, 4.5, 1.0)
    options = [option("m", node, 1, 10.0, memory_gib=2.0)]  # 2 fit per node by memory
    alloc = allocate(options, [Demand("m", 35.0, Target(0.1))], memory_of)
    assert len(alloc.nodes) == 2 and alloc.cost_per_hour == pytest.approx(2.0)


def test_node_limit_that_cannot_hold_a_model_names_it():
    node = NodeType("n", 4, 16.0, 1.0, max_nodes=1)
    options = [option("small", node, 1, 10.0), option("huge", node, 4, 10.0)]
    demands = [Demand("small", 5.0, Target(0.1)), Demand("huge", 100.0, Target(0.1))]
    with pytest.raises(UserError, match=r"model huge: .*node limits"):
        allocate(options, demands, memory_of)


def test_a_model_without_options_is_named():
    node = NodeType("n", 4, 16.0, 1.0)
    with pytest.raises(UserError, match="model b: no option"):
        allocate(
            [option("a", node, 1, 10.0)],
            [Demand("a", 1, Target(0.1)), Demand("b", 1, Target(0.1))],
            memory_of,
        )


def test_pruning_dominated_options_keeps_the_optimum():
    rng = np.random.default_rng(42)
    options, demands = random_instance(rng, odd_cores=False)
    options += [option(o.model, o.node_type, o.cores, o.capacity * 0.9) for o in options[:4]]
    kept = prune_dominated(options)
    assert len(kept) < len(options)
    full = allocate(options, demands, memory_of).cost_per_hour
    assert allocate(kept, demands, memory_of).cost_per_hour == pytest.approx(full)


def test_first_fit_places_largest_first():
    node = NodeType("n", 4, 64.0, 1.0)
    options = [option("m", node, 1, 1.0), option("m", node, 3, 1.0)]
    nodes = first_fit([0, 1, 0, 1], options, node, 64 * GIB)
    # 3-core replicas go first, each 1-core one fills the hole beside one: 2 nodes, not 3.
    assert sorted(sorted(options[i].cores for i in n) for n in nodes) == [[1, 3], [1, 3]]
