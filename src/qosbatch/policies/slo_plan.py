"""``slo``'s plan: deadline fits, efficient batch sizes, a greedy EDF plan, and a Planner.

The functions work on plain lists of floats (deadlines in EDF order; ``safe_s[c][b]``
the safe service time of a batch of b on c cores), because they run inside
decisions and a Python object per request or per plan would show: one plan per
candidate is built on every decision, and a Pool and an Outcome per plan did. A
plan's pool of workers is two lists in step: the busy workers' ``ends``, ascending,
and the cores each ``held``. Kept sorted, the soonest end is ``ends[0]``, the
makespan ``ends[-1]``, and the batches that end by ``t`` are a prefix (a plan's
result never depends on the order of batches ending at the same time). ``Planner``
holds one decision's inputs and scores a candidate first batch by the plan of
everything else waiting (``evaluate``); the steps that choose among candidates
(slo_choose, slo_cores) read it.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from typing import TYPE_CHECKING, Final

from qosbatch.policies.base import QueueView

if TYPE_CHECKING:
    from qosbatch.policies.slo import SloPolicy

HORIZON: Final = 64  # waiting requests a decision looks at (the EDF head)
DEEP: Final = 4 * HORIZON  # ...and, in overload, how deep it may look for a feasible batch

Score = tuple[int, float, float]  # a plan's (on time, makespan, total completion time)
Candidate = tuple[int, int, int]  # a first batch: (EDF index of its head, size, cores)

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
    max_cores: int,
    nominal: int,
    safe_s: list[list[float]],
    efficient: list[int],
    max_lost: int = NO_LIMIT,
) -> tuple[int, float, float, tuple[int, int, int] | None] | None:
    """Greedy EDF: each free worker takes the largest on-time prefix, up to the efficient size.

    The head of the EDF order goes first, on the ``nominal`` cores, or on more when
    its deadline needs them and they are free; if they are not free yet the plan holds
    the cores for it until they are (rather than letting a looser request take them).
    A request that cannot finish in time even on every core is lost. Future arrivals
    are not modelled: the plan answers "what happens to those waiting". The pool is
    the busy workers' ``ends`` and the cores they ``held``, both consumed (see above).

    Returns ``(on_time, makespan, total, first)``, ``first`` the (EDF index, batch,
    cores) dispatched at once if any, or None as soon as more than ``max_lost``
    requests are lost (a lookahead's candidate that can no longer tie the best one).
    """
    t, alone = now, safe_s[max_cores][1]
    lost = on_time = 0
    total = 0.0
    first: tuple[int, int, int] | None = None
    soonest = ends[0] if ends else _INF
    i, n = 0, len(deadlines)
    while i < n:
        while soonest <= t:  # batches ended: their workers and cores are free again
            del ends[0]
            idle += 1
            free += held.pop(0)
            soonest = ends[0] if ends else _INF
        d = deadlines[i]
        hopeless = t + alone > d  # even alone on every core
        if not hopeless and idle and free:
            # The fewest cores from the nominal up that finish the head in time, if any.
            cores = nominal if nominal < free else free
            while t + safe_s[cores][1] > d:
                cores += 1
                if cores > free:
                    break
            else:
                row = safe_s[cores]
                most = efficient[cores]
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
        if not hopeless and ends:
            t = soonest  # no worker or too few cores free for the head: wait for the next
            continue
        i += 1  # lost (no running batch to wait for cannot happen with a consistent pool)
        lost += 1
        if lost > max_lost:
            return None
    return on_time, ends[-1] if ends else t, total, first


class Planner:
    """One decision's inputs, and the score of a candidate first batch by the plan of the rest.

    Built once per decision with requests waiting and a worker idle. Slotted, and the
    steps reading it copy its attributes to locals: a few candidates are scored per
    decision, and attribute loads show at that rate.
    """

    __slots__ = (
        "_pool",
        "_started",
        "all_idle",
        "deadlines",
        "efficient",
        "free_cores",
        "ids",
        "max_cores",
        "n_workers",
        "nominal_cores",
        "now",
        "overload_batch",
        "policy",
        "safe_s",
        "view",
    )

    def __init__(
        self,
        policy: SloPolicy,
        view: QueueView,
        safe_s: list[list[float]],
        now: float,
        deadlines: list[float],
        free_cores: int,
        ids: list[int],
    ) -> None:
        self.policy = policy  # its knobs
        self.view = view
        self.safe_s = safe_s  # safe_s[c][b]: the safe service time of b on c cores
        self.now = now
        self.deadlines = deadlines  # of the EDF head, ascending within a priority level
        self.ids = ids  # in step with ``deadlines``; the overload rule may read deeper
        self.free_cores = free_cores
        self.efficient = policy._efficient  # efficient[c]: the efficient batch on c cores
        self.overload_batch = policy._overload_batch  # ...and the largest in overload
        self.n_workers = n_workers = len(view.workers)
        self.max_cores = max_cores = view.max_cores
        self.nominal_cores = max_cores // n_workers or 1  # (max(1, max_cores // n_workers))
        self.all_idle = view.idle_workers == n_workers
        self._pool: tuple[list[float], list[int], int] | None = None
        # (b, cores) -> the pool's ends and cores with that batch started now, and its end
        self._started: dict[tuple[int, int], tuple[list[float], list[int], float]] = {}

    def pool(self) -> tuple[list[float], list[int], int]:
        """The workers now as (ends ascending, cores held, idle count), built on first use.

        Callers copy the lists before planning on them (plans consume their pool).
        """
        if self._pool is None:
            # A batch running past its prediction still holds its cores: it ends "just after".
            soon = self.now + 1e-6
            ends: list[float] = []
            held: list[int] = []
            for w in self.view.workers:
                if not w.idle:
                    end = w.busy_until_s
                    if end < soon:
                        end = soon
                    j = bisect_right(ends, end)
                    ends.insert(j, end)
                    held.insert(j, w.running_cores)
            self._pool = (ends, held, self.n_workers - len(ends))
        return self._pool

    def evaluate(self, k: int, b: int, cores: int, max_lost: int = NO_LIMIT) -> Score | None:
        """(on time, makespan, total) if ``deadlines[k:k+b]`` start now on ``cores``, then the rest.

        None: the plan of the rest lost more than ``max_lost`` requests and was cut short.
        """
        now = self.now
        started = self._started.get((b, cores))
        if started is None:
            ends, held, _ = self._pool or self.pool()
            done = now + self.safe_s[cores][b]
            j = bisect_right(ends, done)
            ends = ends[:]
            ends.insert(j, done)
            held = held[:]
            held.insert(j, cores)
            started = self._started[b, cores] = (ends, held, done)
        ends, held, done = started
        deadlines = self.deadlines
        out = plan_lists(
            deadlines[:k] + deadlines[k + b :] if k else deadlines[b:],
            now,
            ends[:],
            held[:],
            self.n_workers - len(ends),
            self.free_cores - cores,
            self.max_cores,
            self.nominal_cores,
            self.safe_s,
            self.efficient,
            max_lost,
        )
        if out is None:
            return None
        on_time, makespan, total, _ = out
        if done > makespan:
            makespan = done
        return on_time + b, makespan, total + b * done
