"""Options that run ``slo``: each replica's capacity found by simulating the policy it runs.

The queueing model prices the (a, b) batching rules (``options``); it cannot
describe ``slo``, which reads deadlines, orders by them, sheds what cannot make
it and picks a batch size and core count per call. So the capacity of an
``slo`` replica (k cores of a node type, batches of at most B) is searched in
the simulator, with the policy object that ``serve`` will run:

- Poisson arrivals at a trial rate, every request with the model's SLO as its
  deadline (``SloSearch.requests`` of them, drawn from one seed at every rate, so
  that trials differ by the load, not by luck);
- the profile's latency table times the node type's speed factor (flops*p/c),
  drawn with the profile's measured spread;
- the server's front end as CPU work on the same cores, when one is given
  (``qosbatch.sim.frontend``), since under load it slows every batch;
- the same test as ``plan --verify`` (``checks.check_target``): a capacity the
  planner accepts is one the verification accepts.

The rate is bisected in log space between a pass and a fail
(``sim.capacity.bisect_load``), starting at 0.9 of the replica's saturation
rate ``max_j j / s(j, k)``, which is taken as a fail. B is the largest of the
planner's batch sizes whose memory fits the node type: ``slo`` never batches
past what its deadlines and efficiency allow, so a larger cap costs memory
only. Replicas of the same (k, B, speed) share one search.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from qosbatch.planner.catalogue import NodeType
from qosbatch.planner.checks import ModelCheck, check_target, record_outcomes
from qosbatch.planner.options import BatchSetting, CoreCounts, Demand, Option, prune_dominated
from qosbatch.planner.service import ModelService
from qosbatch.planner.targets import Target
from qosbatch.policies.registry import parse_policy
from qosbatch.sim.capacity import bisect_load
from qosbatch.sim.frontend import FrontEnd
from qosbatch.sim.kernel import Deployment, simulate
from qosbatch.workloads import arrivals
from qosbatch.workloads.trace import Trace

FLOOR = 0.1  # an option that cannot carry this share of its saturation rate is dropped
START = 0.9  # first trial rate, as a share of the saturation rate (most land in 0.7-0.95)


@dataclass(frozen=True)
class SloSearch:
    """How an ``slo`` replica's capacity is searched (module doc)."""

    requests: int = 10_000  # per trial: 100 misses allowed at 99%, enough to read it
    rel_tol: float = 0.02  # the bracket's relative width when the search stops
    seed: int = 0
    frontend: FrontEnd | None = None  # the server's front end on the replica's cores
    max_runs: int = 16  # trials per search


def slo_spec(max_batch: int) -> str:
    """The policy spec an ``slo`` replica is planned and served with."""
    return f"slo:max_batch_size={max_batch}"


def simulate_replica(
    service: ModelService,
    cores: int,
    max_batch: int,
    speed_factor: float,
    rate: float,
    target: Target,
    search: SloSearch,
) -> ModelCheck:
    """One replica of ``slo`` fed Poisson ``rate``: its outcome against ``target``."""
    n = search.requests
    rng = np.random.default_rng(search.seed)
    trace = Trace(
        arrivals.poisson_count(rng, rate, n),
        np.zeros(n, dtype=np.int64),
        (service.name,),
        np.full(n, target.slo_s * 1e3),
    )
    table = service.table if speed_factor == 1.0 else service.table.scaled(speed_factor)
    result = simulate(
        trace,
        [Deployment(service.name, table, cores, 1)],
        parse_policy(slo_spec(max_batch)).factory(),
        seed=search.seed,
        frontend=search.frontend,
    )
    ids, served_s, served_on_time = record_outcomes(result.records)
    latency = np.full(n, np.inf)
    latency[ids] = served_s
    on_time = np.zeros(n, dtype=bool)
    on_time[ids] = served_on_time
    return check_target(service.name, target, latency, on_time)


def saturation(service: ModelService, cores: int, max_batch: int, speed_factor: float) -> float:
    """The most requests/s the replica can serve at all: its best j / s(j), j <= B."""
    means = service.means(cores, max_batch)
    return max(j / (means[j] * speed_factor) for j in range(1, max_batch + 1))


def slo_capacity(
    service: ModelService,
    cores: int,
    max_batch: int,
    speed_factor: float,
    target: Target,
    search: SloSearch,
) -> float:
    """The highest Poisson rate (requests/s) at which one ``slo`` replica meets ``target``."""
    if service.means(cores, 1)[1] * speed_factor > target.slo_s:
        return 0.0  # a request alone misses the SLO
    top = saturation(service, cores, max_batch, speed_factor)

    def passes(share: float) -> bool:
        check = simulate_replica(
            service, cores, max_batch, speed_factor, share * top, target, search
        )
        return check.met

    if not passes(FLOOR):
        return 0.0  # not worth a replica, and halving down to nothing costs many trials
    # No replica keeps 99% on time at its saturation rate, where the queue grows without
    # bound: 1.0 is a known fail, which spares the search its slowest (overloaded) trials.
    share = bisect_load(
        passes, start=START, fails_at=1.0, rel_tol=search.rel_tol, max_runs=search.max_runs
    )
    return top * max(share, FLOOR)


def largest_fitting_batch(
    service: ModelService, max_batches: Sequence[int], memory_bytes: float
) -> int | None:
    """B: the largest batch cap within the profile's range whose replica fits in memory."""
    fits = [
        b
        for b in max_batches
        if b <= service.table.max_batch and service.memory_bytes(b) <= memory_bytes
    ]
    return max(fits) if fits else None


def enumerate_slo_options(
    service: ModelService,
    demand: Demand,
    node_types: Sequence[NodeType],
    core_counts: CoreCounts,
    max_batches: Sequence[int],
    usable_memory_bytes: Callable[[NodeType], float],
    search: SloSearch,
) -> list[Option]:
    """Every non-dominated ``slo`` option of one model (capacity > 0)."""
    capacities: dict[tuple[int, int, float], float] = {}
    options: list[Option] = []
    for t in node_types:
        b = largest_fitting_batch(service, max_batches, usable_memory_bytes(t))
        if b is None:
            continue
        for k in core_counts(t):
            if k > t.cores or k > service.table.max_cores:
                continue
            f = t.speed_factor(service.node, k)
            key = (k, b, round(f, 12))
            if key not in capacities:
                capacities[key] = slo_capacity(service, k, b, f, demand.target, search)
            if capacities[key] <= 0 or not math.isfinite(capacities[key]):
                continue
            options.append(
                Option(
                    model=demand.model,
                    node_type=t,
                    cores=k,
                    setting=BatchSetting(1, b),
                    queue_capacity=0,  # slo bounds its queue by deadlines, not by N
                    capacity=capacities[key],
                    memory_bytes=service.memory_bytes(b),
                    speed_factor=f,
                    predicted=not (t.is_profiled_node(service.node) and service.is_profiled(k)),
                    spec=slo_spec(b),
                )
            )
    return prune_dominated(options)


def slo_latency(
    service: ModelService, option: Option, rate: float, target: Target, search: SloSearch
) -> float:
    """The target's statistic (seconds) of one ``slo`` replica fed ``rate``, simulated."""
    check = simulate_replica(
        service, option.cores, option.setting.b, option.speed_factor, rate, target, search
    )
    return check.statistic_ms / 1e3
