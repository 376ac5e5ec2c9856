"""The arithmetic behind ``slo``: deadline fits, efficient batch sizes, a greedy EDF plan.

Kept apart from the policy so it can be read and tested on its own. Everything
works on plain lists of floats (deadlines in EDF order; ``safe[c][b]`` the safe
service time of a batch of b on c cores), because it runs inside decisions.
"""

from __future__ import annotations

import math
from bisect import bisect_right

_INF = math.inf


def fit(row: list[float], now: float, deadlines: list[float], want: int, start: int = 0) -> int:
    """Largest b <= want with ``now + row[b] <= min(deadlines[start : start + b])``."""
    earliest = math.inf
    for b in range(1, want + 1):
        d = deadlines[start + b - 1]
        if d < earliest:
            earliest = d
        if now + row[b] > earliest:
            return b - 1
    return want


def serial_ok(row: list[float], now: float, deadlines: list[float], batch: int) -> bool:
    """Would one worker alone, in EDF batches of ``batch``, finish every request in time?

    A cheap sufficient condition for the plan below keeping everyone on time
    (more workers only help), checked first because it usually holds.
    """
    t = now
    i, n = 0, len(deadlines)
    while i < n:
        b = min(batch, n - i)
        t += row[b]
        if t > (deadlines[i] if b == 1 else min(deadlines[i : i + b])):
            return False
        i += b
    return True


def efficient_batch(row: list[float], cap: int, tol: float) -> int:
    """Smallest batch whose time per request is within ``tol`` of the best up to ``cap``.

    Past it a larger batch buys (almost) no throughput and costs every member
    latency, so neither the plan nor the policy goes beyond it: for a model
    whose batch time grows linearly in b (no batching gain) it is 1.
    """
    best = min(row[b] / b for b in range(1, cap + 1))
    for b in range(1, cap + 1):
        if row[b] / b <= best * (1.0 + tol):
            return b
    return cap


def best_rate(row: list[float], cap: int) -> float:
    """Requests per second one worker finishes at its best batch up to ``cap``."""
    return max(b / row[b] for b in range(1, cap + 1))


def target_batch(row: list[float], workers: int, rate: float, cap: int) -> int:
    """Smallest batch whose throughput on ``workers`` workers keeps up with ``rate``."""
    for b in range(1, cap + 1):
        if workers * b / row[b] >= rate:
            return b
    return cap


NO_LIMIT = 1 << 62  # plan_lists' max_lost when a plan must run to the end


def plan_lists(
    deadlines: list[float],
    now: float,
    ends: list[float],
    held: list[int],
    idle: int,
    free: int,
    top: int,
    nominal: int,
    safe: list[list[float]],
    eff: list[int],
    max_lost: int = NO_LIMIT,
) -> tuple[int, float, float, tuple[int, int, int] | None] | None:
    """Greedy EDF: each free worker takes the largest on-time prefix, up to the efficient size.

    The head of the EDF order goes first, on the ``nominal`` cores, or on more when
    its deadline needs them and they are free; if they are not free yet the plan holds
    the cores for it until they are (rather than letting a looser request take them).
    A request that cannot finish in time even on every core is lost. Future arrivals
    are not modelled: the plan answers "what happens to those waiting".

    The pool is given as lists (the busy workers' ``ends`` ascending, the cores they
    ``held`` in step; both consumed), not as objects: one plan per candidate is built
    on every decision, and a Pool and an Outcome per plan showed. Returns ``(on_time,
    makespan, total, first)``, ``first`` the (EDF index, batch, cores) dispatched at
    once if any, or None as soon as more than ``max_lost`` requests are lost (a
    lookahead's candidate that can no longer tie the best one). Kept sorted, the soonest
    end is ``ends[0]``, the makespan ``ends[-1]``, and the batches that end by ``t`` are
    a prefix (a plan's result never depends on the order of batches ending at the same
    time).
    """
    t = now
    alone = safe[top][1]
    lost = 0
    on_time = 0
    total = 0.0
    first: tuple[int, int, int] | None = None
    soonest = ends[0] if ends else _INF
    i, n = 0, len(deadlines)
    while i < n:
        if soonest <= t:  # batches ended: their workers and cores are free again
            while True:  # (a prefix of the sorted ends, usually one)
                del ends[0]
                idle += 1
                free += held.pop(0)
                if not ends:
                    soonest = _INF
                    break
                soonest = ends[0]
                if soonest > t:
                    break
        d = deadlines[i]
        if t + alone > d:
            i += 1  # hopeless even alone on every core
            lost += 1
            if lost > max_lost:
                return None
            continue
        if idle and free:
            # The fewest cores from the nominal up that finish the head in time, if any.
            cores = nominal if nominal < free else free
            while t + safe[cores][1] > d:
                cores += 1
                if cores > free:
                    break
            else:
                row = safe[cores]
                most = eff[cores]
                if n - i < most:
                    most = n - i
                # A batch of one fits: ``cores`` was picked so that t + row[1] <= d.
                b = fit(row, t, deadlines, most, i) if most > 1 else 1
                done = t + row[b]
                if first is None and t == now:
                    first = (i, b, cores)
                j = bisect_right(ends, done)
                ends.insert(j, done)
                held.insert(j, cores)
                if not j:
                    soonest = done
                idle -= 1
                free -= cores
                on_time += b
                total += b * done
                i += b
                continue
        # No worker or not enough cores free for the head: wait for the next to free up.
        if not ends:
            i += 1  # cannot happen with a consistent pool; count it lost
            lost += 1
            if lost > max_lost:
                return None
            continue
        t = soonest
    return on_time, ends[-1] if ends else t, total, first
