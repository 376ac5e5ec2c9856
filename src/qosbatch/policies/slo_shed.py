"""``slo``'s step 1 and its admission: who cannot make it, rejected early with the numbers.

A request that cannot finish by its deadline even alone, on every core of the
model, started at the earliest moment a worker is free, is hopeless: served, it
would take a worker's time and make the requests behind it late too. ``decide``
rejects it as soon as it is seen (``shed_head``, ``split_hopeless``); ``admit``,
asked before a request is queued, also sheds one that a backlog ahead of it would
make late (``backlog_reason``). Every reason says what was predicted against what
was left, so a client can tell an overloaded node from a budget it set too tight.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right

from qosbatch.policies.base import Decision, QueueView, Reject, priority_rank


def first_free(view: QueueView, now: float) -> float:
    """When the first worker frees up: the earliest predicted end, or now if that passed."""
    workers = view.workers
    start = workers[0].busy_until_s
    for w in workers:
        if w.busy_until_s < start:
            start = w.busy_until_s
    return start if start > now else now


def hopeless(left_s: float, budget_s: float, alone_s: float, cores: int) -> str:
    """The reason a hopeless request is shed: predicted time alone vs time left."""
    return (
        f"deadline cannot be met: predicted {alone_s * 1e3:.1f} ms alone on "
        f"{cores} core(s) > {left_s * 1e3:.1f} ms left (budget {budget_s * 1e3:.1f} ms)"
    )


def hopeless_reason(view: QueueView, r: int, start: float, alone: float) -> str:
    """``hopeless`` for waiting request ``r`` if it started at ``start``."""
    d = view.deadline_s(r)
    return hopeless(d - start, d - view.arrival_s(r), alone, view.max_cores)


def shed_head(view: QueueView, safe_s: list[list[float]], now: float) -> list[Decision]:
    """No worker or core free: only a hopeless EDF head can be acted on now.

    The usual answer, while every worker is busy, is the first test: nothing.
    """
    alone = safe_s[view.max_cores][1]
    start = first_free(view, now)
    if view.earliest_deadline_s() >= start + alone:
        return []
    k = 1
    while True:  # read twice as far while every request read is hopeless
        ids = view.edf(k)
        doomed = [r for r in ids if view.deadline_s(r) < start + alone]
        if len(doomed) < len(ids) or len(ids) < k:
            break
        k *= 2
    return [Reject([r], hopeless_reason(view, r, start, alone)) for r in doomed]


def split_hopeless(
    view: QueueView,
    now: float,
    alone: float,
    ids: list[int],
    deadlines: list[float],
    shed: bool,
    out: list[Decision],
) -> tuple[list[int], list[float], list[int]]:
    """Reject (or, serving late, set apart) requests that cannot finish even alone.

    Returns the ids and deadlines kept, in step, and those set apart; the rejections
    are appended to ``out``.
    """
    limit = now + alone
    keep_ids, keep_deadlines, late = [], [], []
    for r, d in zip(ids, deadlines, strict=True):
        if d >= limit:
            keep_ids.append(r)
            keep_deadlines.append(d)
        elif shed:
            out.append(Reject([r], hopeless_reason(view, r, now, alone)))
        else:
            late.append(r)
    return keep_ids, keep_deadlines, late


def backlog_reason(
    view: QueueView,
    start: float,
    deadline_s: float,
    priority: int,
    rate: float,
    room: float,
    soonest: float,
) -> str:
    """Why a new request is shed at admission for the backlog ahead of it ('' if it is not).

    Ahead of it: the waiting requests EDF serves first, less those due before
    ``soonest`` (too soon for an efficient batch), which the overload rule passes
    over and which are shed later. It is shed when they number ``room`` (the
    requests the node finishes by its deadline at its best ``rate``) or more.
    """
    ahead = _count_ahead(view, soonest, deadline_s, priority, math.ceil(room))
    if ahead < room:
        return ""
    return (
        f"shed at admission: {ahead}+ requests ahead of it need "
        f"{ahead / rate * 1e3:.0f} ms at best > {(deadline_s - start) * 1e3:.0f} ms left "
        f"(budget {(deadline_s - view.now_s) * 1e3:.1f} ms)"
    )


def _count_ahead(
    view: QueueView, soonest: float, deadline_s: float, priority: int, enough: int
) -> int:
    """Waiting requests EDF serves before a new one (deadline, priority), those due before
    ``soonest`` left out; counting stops at ``enough``.

    Asked on arrivals under overload, with a long queue: one level of priority (the
    usual) is two bisections of the EDF head's deadlines, not a Python loop over it.
    """
    n = len(view)
    k = min(n, 2 * enough + 16)
    ids = view.edf(k)
    if view.priority(ids[0]) == view.priority(ids[-1]) == priority:
        deadlines = list(map(view.deadline_s, ids))
        ahead = bisect_right(deadlines, deadline_s) - bisect_left(deadlines, soonest)
        if ahead >= enough or k == n or deadlines[-1] > deadline_s:
            return min(max(ahead, 0), enough)
    new_rank = priority_rank(priority)
    ahead = 0
    for r in view.edf(n):  # (levels differ, or the head was too short: the whole order)
        rank = priority_rank(view.priority(r))
        d = view.deadline_s(r)
        if rank > new_rank or (rank == new_rank and d > deadline_s):
            break
        if d >= soonest:
            ahead += 1
            if ahead >= enough:
                break
    return ahead
