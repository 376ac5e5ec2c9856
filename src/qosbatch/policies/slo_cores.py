"""``slo``'s step 5: how many cores a chosen batch runs on (in-place vertical scaling).

As Sponge does, the batch runs on the fewest cores that keep the plan whole: on
fewer cores a batch uses each one better and leaves the rest to another worker.
When nothing else could use them (everything idle, little arriving), it takes all
the free cores instead and finishes sooner.
"""

from __future__ import annotations

import math
from bisect import bisect_right

from qosbatch.policies.slo_plan import Planner, fit, plan_lists


def fewest_cores(plan: Planner, b: int, cores: int) -> int:
    """Fewest cores keeping the plan whole; all free ones when nothing else needs them.

    ``b`` is the batch (the first ``b`` of the EDF head) and ``cores`` the count that
    keeps everyone on time as planned. "Whole" counts the requests expected to arrive
    while this batch runs (at the measured rate, with the budgets of those waiting), so
    that scaling down does not starve the next arrivals of the cores it saved.
    """
    policy, free, now, safe_s = plan.policy, plan.free_cores, plan.now, plan.safe_s
    if policy.boost and b == len(plan.deadlines) and plan.all_idle and cores < free:
        expected = plan.view.arrival_rate_per_s * safe_s[free][b]
        if expected < policy.boost_load:
            return free
    if not policy.scale_down or cores <= 1:
        return cores
    rate = plan.view.arrival_rate_per_s
    efficient = plan.efficient
    for c in range(1, cores):
        eff = efficient[c]
        if rate * safe_s[c][eff] / eff / plan.n_workers > policy.scale_down_load:
            continue  # busy enough that the saved cores would be missed
        if fit(safe_s[c], now, plan.deadlines, b) < b:
            continue
        deadlines = sorted(plan.deadlines[b:] + expected_deadlines(plan, safe_s[c][b]))
        ends, held, idle = plan.pool()
        end = now + safe_s[c][b]
        j = bisect_right(ends, end)
        ends, held = ends[:], held[:]
        ends.insert(j, end)
        held.insert(j, c)
        out = plan_lists(
            deadlines,
            now,
            ends,
            held,
            idle - 1,
            free - c,
            plan.max_cores,
            plan.nominal_cores,
            safe_s,
            efficient,
        )
        assert out is not None
        if out[0] == len(deadlines):
            return c
    return cores


def expected_deadlines(plan: Planner, span: float) -> list[float]:
    """Deadlines of the requests expected to arrive within ``span`` (measured rate).

    Their budget is the median of the EDF head's (up to 8): a guess at the next
    arrivals' that one very tight or very loose request does not swing.
    """
    view, now = plan.view, plan.now
    rate = view.arrival_rate_per_s
    if rate <= 0:
        return []
    ids = view.edf(min(len(view), 8))
    budget = sorted(view.deadline_s(r) - view.arrival_s(r) for r in ids)[len(ids) // 2]
    count = math.ceil(rate * span)
    return [now + (j + 1) / rate + budget for j in range(count)]
