"""``slo``'s steps 3 and 4: which batch goes first, sized to its deadlines and checked by a plan.

``choose`` takes the EDF head's largest on-time batch, up to the efficient size,
when a plan of everything waiting keeps every request on time with it (most
often a cheap serial check proves so). When none does (a burst), ``lookahead``
compares candidate first batches by their plans, and under sustained overload
``overload_choice`` may prefer the batch with the most on-time completions per
second of worker time. docs/policies.md tells why each rule is there.
"""

from __future__ import annotations

from bisect import bisect_left

from qosbatch.policies.slo_cores import fewest_cores
from qosbatch.policies.slo_plan import (
    DEEP,
    HORIZON,
    Candidate,
    Planner,
    Score,
    fit,
    plan_lists,
    serial_ok,
)

_SIZES = (1, 2, 4, 8, 16, 32, 64, 128)  # alternative first-batch sizes in a lookahead
_PlanKey = tuple[int, int, float, int]  # (on time, -makespan quanta, -total, -cores): max wins


def choose(plan: Planner) -> tuple[int, int, int, bool]:
    """(skip, batch, cores, plan keeps everyone on time); batch 0: dispatch nothing."""
    deadlines, safe_s, now, free = plan.deadlines, plan.safe_s, plan.now, plan.free_cores
    efficient = plan.efficient
    # The fewest cores from the nominal up that finish the head in time (0: none free).
    head = plan.nominal_cores if plan.nominal_cores < free else free
    while now + safe_s[head][1] > deadlines[0]:
        head += 1
        if head > free:
            head = 0
            break
    if head and serial_ok(safe_s[head], now, deadlines, efficient[head]):
        # This worker alone keeps everyone on time: no need to plan (the common case).
        b = min(len(deadlines), efficient[head])
        return 0, b, fewest_cores(plan, b, head), True
    if len(deadlines) == 1:
        return 0, 0, 0, True  # it needs cores that are busy: hold them for it
    ends, held, idle = plan.pool()
    if head and (not ends or ends[0] > now):
        # The greedy plan of everyone starts with the head's largest fitting batch on
        # ``head`` cores, now (no running batch has ended by now; the head is not
        # hopeless; a worker and ``head`` cores are free), then plans the rest from
        # that state: which is evaluate(0, b, head), one of the lookahead's candidates.
        want = min(len(deadlines), efficient[head])
        b = fit(safe_s[head], now, deadlines, want) if want > 1 else 1
        greedy = plan.evaluate(0, b, head)
        assert greedy is not None
        if greedy[0] == len(deadlines):
            return 0, b, fewest_cores(plan, b, head), True
        return (*overload_choice(plan, (0, b, head), greedy), False)
    out = plan_lists(
        deadlines,
        now,
        ends[:],
        held[:],
        idle,
        free,
        plan.max_cores,
        plan.nominal_cores,
        safe_s,
        efficient,
    )
    assert out is not None
    on_time, _, _, first = out
    if on_time == len(deadlines):
        if first is None:
            return 0, 0, 0, True  # the plan holds the free cores for a tight head
        k, b, cores = first
        if k == 0:
            return 0, b, fewest_cores(plan, b, cores), True
    return (*overload_choice(plan), False)


def overload_choice(
    plan: Planner, known: Candidate | None = None, known_score: Score | None = None
) -> Candidate:
    """Not everyone can be on time: prefer the most on-time completions per second.

    Why: the lookahead's plan counts only the requests waiting now, so it serves the
    tightest of them first, in the small batches their deadlines allow. Under
    sustained overload that is the EDF trap: small batches waste worker time, the
    queue falls further behind, the next heads are tight too, and goodput falls as
    the load rises. Clockwork (OSDI'20) and Shepherd (NSDI'23) run instead the batch
    that finishes the most requests on time per second of worker time, which is large.

    The rule: for each core option c and size b up to the efficient one, the
    candidate is the b earliest-deadline requests that can still finish if the batch
    starts now (deadline >= now + safe_s[c][b]); its on-time throughput is
    b / safe_s[c][b], per core while another worker is idle (it could use the cores
    left). The best candidate replaces the lookahead's choice if it is not worse:
    its throughput beats that of the lookahead's first batch by more than twice
    ``efficiency_tol`` (a decisive gain, the trap), or it beats it at all and the
    plan of the requests waiting keeps as many on time as the lookahead's. Else the
    lookahead's choice stands (a burst it can absorb, a model with little batching
    gain). The tighter requests skipped stay waiting: another worker serves them
    if it can, else they are shed once hopeless. Priority levels set the order when
    present (deadlines then are not sorted), so the lookahead's choice stands.

    Under deep overload the feasible requests can lie past the first ``HORIZON`` in
    EDF order, so this reads up to ``DEEP`` deep (``plan.ids`` grows; the returned
    skip indexes it): O(DEEP) once per overloaded dispatch.
    """
    choice, planned = lookahead(plan, known, known_score)
    view, ids = plan.view, plan.ids
    if not plan.policy.overload or view.priority(ids[0]) != view.priority(ids[-1]):
        return choice
    safe_s, now, efficient, free = plan.safe_s, plan.now, plan.efficient, plan.free_cores
    largest = plan.overload_batch
    nominal = plan.nominal_cores
    core_options = (free,) if free <= nominal else (nominal, free)
    waiting = plan.deadlines  # (the lookahead's window; ``deep`` may extend it)
    deep = waiting
    n = len(view)
    c = core_options[0]
    if n > HORIZON:
        skipped = bisect_left(waiting, now + safe_s[c][efficient[c]])  # too tight for it
        if skipped + efficient[c] > len(waiting):  # no efficient batch left in the window
            deeper = view.edf(n if n < DEEP else DEEP)[HORIZON:]
            if deeper and view.priority(deeper[-1]) == view.priority(ids[0]):
                plan.ids = ids + deeper
                deep = waiting + list(map(view.deadline_s, deeper))
    per_core = view.idle_workers > 1
    k, b, cores = choice
    chosen = b / (safe_s[cores][b] * (cores if per_core else 1)) if b else 0.0
    best = chosen
    candidate = choice
    for cores in core_options:
        row = safe_s[cores]
        scale = cores if per_core else 1
        for b in range(1, largest[cores] + 1):
            k = bisect_left(deep, now + row[b])
            if k + b > len(deep):
                break  # (a larger b skips at least as many: none fits either)
            rate = b / (row[b] * scale)
            if rate > best:
                best, candidate = rate, (k, b, cores)
    if candidate == choice or best > chosen * (1.0 + 2.0 * plan.policy.efficiency_tol):
        return candidate
    k, b, cores = candidate
    if k + b <= len(waiting):
        score = plan.evaluate(k, b, cores, len(waiting) - planned)
        if score is not None and score[0] >= planned:
            return candidate
    return choice


def lookahead(
    plan: Planner, known: Candidate | None = None, known_score: Score | None = None
) -> tuple[Candidate, int]:
    """The first batch whose plan scores best: most on time, then soonest done, ...

    Candidates: nothing now (when a worker runs), and each of the first ``lookahead``
    + 1 requests in EDF order (the tighter ones left behind) with the largest batch
    that fits and the smaller standard sizes, on the nominal or all free cores. A
    candidate's plan is that batch started now and the greedy plan of the rest;
    ``known``, a candidate already evaluated, scores ``known_score``. Only a candidate
    with the most on time can be chosen (the first key), so the plan of one that loses
    more requests than the best so far allows stops short: it is neither chosen nor,
    scoring lower, the first of the best. Returns the choice and how many its plan
    keeps on time.
    """
    deadlines, free, safe_s, now = plan.deadlines, plan.free_cores, plan.safe_s, plan.now
    efficient, nominal = plan.efficient, plan.nominal_cores
    core_options = (free,) if free <= nominal else (nominal, free)  # ascending
    quantum = safe_s[nominal][1] * 0.01  # makespans this close count as equal
    n = len(deadlines)
    if known is not None and known[2] not in core_options:
        known = None  # (not one of these candidates: its score says nothing here)
    most_on_time = known_score[0] if known is not None and known_score is not None else 0
    choice = (0, 0, free)
    best = _score_of_waiting(plan, quantum, n - most_on_time)
    if best is not None and best[0] > most_on_time:
        most_on_time = best[0]
    for k in range(min(plan.policy.lookahead, n - 1) + 1):
        for cores in core_options:
            row = safe_s[cores]
            want = efficient[cores]
            if n - k < want:
                want = n - k
            most = fit(row, now, deadlines, want, k)
            if most == 0:
                continue
            for b in sizes_to_try(most):
                if known == (k, b, cores) and known_score is not None:
                    ev: Score | None = known_score
                else:
                    ev = plan.evaluate(k, b, cores, n - most_on_time)
                if ev is None:
                    continue  # fewer on time than another candidate: never chosen
                on_time, makespan, total = ev
                score = (on_time, -round((makespan - now) / quantum), -total, -cores)
                if best is None or score > best:
                    best, choice = score, (k, b, cores)
                    if on_time > most_on_time:
                        most_on_time = on_time
    return choice, (best[0] if best is not None else 0)


def _score_of_waiting(plan: Planner, quantum: float, max_lost: int) -> _PlanKey | None:
    """The lookahead's key for dispatching nothing now (None: no worker runs, or cut short).

    Its plan starts when the first running batch ends, with everyone still waiting.
    """
    ends, held, idle = plan.pool()
    if not ends:
        return None
    out = plan_lists(
        plan.deadlines,
        ends[0],
        ends[:],
        held[:],
        idle,
        plan.free_cores,
        plan.max_cores,
        plan.nominal_cores,
        plan.safe_s,
        plan.efficient,
        max_lost,
    )
    if out is None:
        return None
    on_time, makespan, total, _ = out
    return on_time, -round((makespan - plan.now) / quantum), -total, 0


_ORDERS: dict[int, tuple[int, ...]] = {}


def sizes_to_try(most: int) -> tuple[int, ...]:
    """Batch sizes a lookahead tries when ``most`` fit: ``most`` and the smaller of _SIZES.

    In the iteration order of the set ``{most} | {s for s in _SIZES if s < most}``
    (deterministic for ints), which is the order they have always been tried in:
    ties keep the first candidate seen, so the order is part of the behaviour.
    """
    order = _ORDERS.get(most)
    if order is None:
        order = _ORDERS[most] = tuple({most} | {s for s in _SIZES if s < most})
    return order
