"""The arithmetic behind ``slo``: deadline fits, efficient batch sizes, a greedy EDF plan.

Kept apart from the policy so it can be read and tested on its own. Everything
works on plain lists of floats (deadlines in EDF order; ``safe[c][b]`` the safe
service time of a batch of b on c cores), because it runs inside decisions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


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


def target_batch(row: list[float], workers: int, rate: float, cap: int) -> int:
    """Smallest batch whose throughput on ``workers`` workers keeps up with ``rate``."""
    for b in range(1, cap + 1):
        if workers * b / row[b] >= rate:
            return b
    return cap


@dataclass
class Pool:
    """The workers of one model at an instant: who runs until when, on how many cores."""

    now: float
    running: list[tuple[float, int]]  # (end, cores) of each busy worker
    idle: int  # idle workers
    free: int  # free cores
    max_cores: int
    nominal: int  # cores a worker uses unless a deadline needs more

    def copy(self) -> Pool:
        running = list(self.running)
        return Pool(self.now, running, self.idle, self.free, self.max_cores, self.nominal)

    def start(self, end: float, cores: int) -> None:
        self.running.append((end, cores))
        self.idle -= 1
        self.free -= cores


@dataclass
class Outcome:
    """What a plan predicts for the requests waiting now."""

    on_time: int
    makespan: float  # when the last worker is free again
    total: float  # sum of completion times of the on-time requests
    first: tuple[int, int, int] | None  # (EDF index, batch, cores) dispatched at once, if any


def plan(deadlines: list[float], pool: Pool, safe: list[list[float]], eff: list[int]) -> Outcome:
    """Greedy EDF: each free worker takes the largest on-time prefix, up to the efficient size.

    The head of the EDF order goes first, on the nominal cores, or on more when its
    deadline needs them and they are free; if they are not free yet the plan holds
    the cores for it until they are (rather than letting a looser request take
    them). A request that cannot finish in time even on every core is lost. Future
    arrivals are not modelled: the plan answers "what happens to those waiting".
    ``pool`` is consumed.
    """
    now = t = pool.now
    ends = [e for e, _ in pool.running]  # one entry per busy worker
    held = [c for _, c in pool.running]
    idle, free = pool.idle, pool.free
    top, nominal = pool.max_cores, pool.nominal
    alone = safe[top][1]
    on_time = 0
    total = 0.0
    first: tuple[int, int, int] | None = None
    i, n = 0, len(deadlines)
    while i < n:
        if ends and min(ends) <= t:
            for j in range(len(ends) - 1, -1, -1):
                if ends[j] <= t:
                    idle += 1
                    free += held[j]
                    del ends[j], held[j]
        d = deadlines[i]
        if t + alone > d:
            i += 1  # hopeless even alone on every core
            continue
        cores = 0
        if idle and free:
            for c in range(min(nominal, free), free + 1):
                if t + safe[c][1] <= d:
                    cores = c
                    break
        if not cores:
            if not ends:
                i += 1  # cannot happen with a consistent pool; count it lost
                continue
            t = min(ends)  # wait for cores (or a worker) to free up
            continue
        row = safe[cores]
        b = fit(row, t, deadlines, min(n - i, eff[cores]), i)
        done = t + row[b]
        if first is None and t == now:
            first = (i, b, cores)
        ends.append(done)
        held.append(cores)
        idle -= 1
        free -= cores
        on_time += b
        total += b * done
        i += b
    return Outcome(on_time, max(ends, default=t), total, first)
