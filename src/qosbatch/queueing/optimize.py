"""Choosing batch settings with the queueing model: BatOpt's trade-off, and capacity.

- ``optimize_ab``: for one arrival rate, the (a, b) that minimises mean latency
  plus omega times mean memory, subject to a latency bound and blocking <= eps.
- ``max_rate``: the highest arrival rate one configuration sustains under a
  latency target, what the planner prices configurations by.
Pure numpy/scipy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from qosbatch.queueing.service import ServiceTime, as_service_time
from qosbatch.queueing.solver import KappaTable, QueueResult, check_arguments, solve_many


@dataclass(frozen=True)
class Choice:
    """The chosen (a, b) and how it does; ``feasible`` False when nothing met the bounds."""

    result: QueueResult
    objective: float  # mean latency (s) + omega * mean memory (bytes)
    feasible: bool
    considered: int  # (a, b) pairs solved


def solve_all(
    rate: float,
    service_time: ServiceTime | Callable[[int], float],
    capacity: int,
    max_batch: int,
    memory: Callable[[int], float] | None = None,
) -> Iterator[QueueResult]:
    """The model's answer for every 1 <= a <= b <= max_batch at this rate (b outer)."""
    check_arguments(rate, 1, max_batch, capacity)
    table = KappaTable(float(rate), as_service_time(service_time), capacity, max_batch)
    for b in range(1, max_batch + 1):
        yield from solve_many(table, list(range(1, b + 1)), b, memory)


def optimize_ab(
    rate: float,
    service_time: ServiceTime | Callable[[int], float],
    capacity: int,
    max_batch: int,
    latency_bound_s: float | None = None,
    eps: float = 1e-3,
    omega: float = 0.0,
    memory: Callable[[int], float] | None = None,
    tie_tol: float = 1e-4,
) -> Choice:
    """Search every 1 <= a <= b <= max_batch at this rate.

    Where no pair meets the bounds, the pair with the lowest latency is returned,
    marked infeasible, so the caller can say how far off the best one is.

    Ties: with a = 1 at moderate load, every b above the largest batch that ever
    forms predicts the same latency (to rounding), and a strict minimum would pick
    among them by noise. Pairs within ``tie_tol`` (relative) of the best are equal
    here, and the largest b (then the smallest a) wins: the same in steady state,
    but it drains a burst faster, which the stationary model cannot see.
    """
    if omega and memory is None:
        raise ValueError("omega > 0 weighs memory, so memory (k -> bytes) must be given")
    solved = solve_all(rate, service_time, capacity, max_batch, memory)
    return choose_ab(solved, latency_bound_s, eps, omega, tie_tol)


def choose_ab(
    solved: Iterable[QueueResult],
    latency_bound_s: float | None = None,
    eps: float = 1e-3,
    omega: float = 0.0,
    tie_tol: float = 1e-4,
) -> Choice:
    """``optimize_ab``'s choice among pairs already solved (``solve_all``'s), so that a
    caller who also plots them (``queue --frontier``) solves each pair once."""
    feasible: list[tuple[float, QueueResult]] = []
    fallback: QueueResult | None = None
    considered = 0
    for res in solved:
        considered += 1
        if fallback is None or res.mean_latency < fallback.mean_latency:
            fallback = res
        ok = res.blocking_probability <= eps and (
            latency_bound_s is None or res.mean_latency <= latency_bound_s
        )
        if ok:
            feasible.append((res.mean_latency + omega * (res.mean_memory or 0.0), res))
    if fallback is None:
        raise ValueError("no (a, b) pair was solved")
    if not feasible:
        return Choice(fallback, fallback.mean_latency, False, considered)
    least = min(obj for obj, _ in feasible)
    objective, result = max(
        (pair for pair in feasible if pair[0] <= least * (1 + tie_tol)),
        key=lambda pair: (pair[1].b, -pair[1].a),
    )
    return Choice(result, objective, True, considered)


def max_rate(
    a: int,
    b: int,
    capacity: int,
    service_time: ServiceTime | Callable[[int], float],
    latency_target_s: float,
    eps: float = 1e-3,
    rel_tol: float = 1e-3,
) -> float:
    """The highest arrival rate with mean latency <= target and blocking <= eps (0 if none).

    With a > 1 latency is not monotone in the rate (at a trickle, requests wait
    for a batch to fill), so the feasible rates form an interval; this returns
    its top. Searched from the saturation rate b / s(b) downwards on a
    geometric grid, then refined by bisection between the last infeasible and
    first feasible rates.
    """
    service = as_service_time(service_time)
    check_arguments(1.0, a, b, capacity)
    if latency_target_s <= 0:
        raise ValueError(f"latency target must be > 0 s, got {latency_target_s}")

    def ok(rate: float) -> bool:
        table = KappaTable(rate, service, capacity, b)
        res = solve_many(table, [a], b)[0]
        return res.blocking_probability <= eps and res.mean_latency <= latency_target_s

    saturation = b / float(service.mean_s(b))
    hi = saturation * 1.5  # blocking is far above any sensible eps past saturation
    lo = hi
    while not ok(lo):
        hi = lo
        lo *= 0.7
        if lo < saturation * 1e-6:
            return 0.0
    if lo == hi:  # feasible even at 1.5x saturation: only possible with a loose eps
        return hi
    while hi - lo > rel_tol * lo:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo
