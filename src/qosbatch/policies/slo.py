"""``slo``: deadline-driven batching with early shedding and in-place core scaling (ours).

Every request carries its own deadline. On each call:

1. Shed (slo_shed): a request that cannot finish by its deadline even alone, on
   every core of the model, started at the earliest moment a worker is free, is
   rejected at once with the numbers (predicted vs left), instead of taking a
   worker's time and making the requests behind it late too.
2. Order: earliest deadline first (Triton ``priority`` levels first when set).
3. Size (slo_choose, slo_plan): batches of the earliest-deadline requests, as large
   as their deadlines allow (``now + s(b, c) * safety <= min deadline``) but no
   larger than the *efficient* size, past which a bigger batch buys no throughput
   and only adds latency (1 for a model whose batch time is linear in b).
4. Plan (slo_choose, slo_plan): the batch is checked by a greedy EDF plan of
   everything waiting, on all workers. If the plan keeps every request on time,
   that batch goes. If not (a burst), a one-step lookahead tries leaving the
   tightest requests behind and other sizes and core counts, and keeps the choice
   whose plan finishes the most requests on time (ties: the one that frees the
   workers soonest). This is what keeps a burst from dragging everyone late: the
   few that cannot make it are shed, the rest go in efficient batches. Under
   sustained overload the batch with the most on-time completions per second of
   worker time goes instead, when it is not worse (``overload_choice``): large,
   of the requests that can still make it.
5. Cores (slo_cores): the fewest cores that keep the plan whole (Sponge's in-place
   vertical scaling: a batch on fewer cores uses them better and leaves the rest
   to another worker), all free cores when it is tight.
6. Wait or go (``SloPolicy._wait_until``): with everything on time and a batch
   smaller than the arrival rate needs, wait for more, never past the moment the
   earliest deadline would slip.
7. Learn (``SloPolicy.observe``): an exponentially weighted ratio of observed to
   predicted batch time corrects s(b, c) online, so a slower node (drift) does not
   break deadlines.

Admission (``SloPolicy.admit``, slo_shed) sheds at arrival what step 1 would, and
what a backlog ahead would make late. Safety: ``s(b, c) * ratio * (1 + spread_k *
cv(b, c)) * margin``, from the profile's measured spread. docs/policies.md explains
why this beats the peers.
"""

from __future__ import annotations

import math
from itertools import repeat
from operator import mul

import numpy as np

from qosbatch.core.errors import UserError
from qosbatch.latency.table import LatencyTable
from qosbatch.policies.base import CompletedBatch, Decision, Dispatch, QueueView, Reject, Wait
from qosbatch.policies.slo_choose import choose
from qosbatch.policies.slo_cores import fewest_cores
from qosbatch.policies.slo_plan import HORIZON, Planner, best_rate, efficient_batch, target_batch
from qosbatch.policies.slo_shed import (
    backlog_reason,
    first_free,
    hopeless,
    hopeless_reason,
    shed_head,
    split_hopeless,
)

MAX_CORRECTION = 4.0  # observed/predicted service time is clamped to [1/4, 4] per batch
_MIN_CORRECTION = 1 / MAX_CORRECTION


class SloPolicy:
    """EDF batches of an efficient size on the fewest cores; sheds the hopeless early."""

    name = "slo"

    def __init__(
        self,
        margin: float = 1.0,
        spread_k: float = 2.0,
        max_batch_size: int = 0,
        shed: bool = True,
        correction: float = 0.1,
        wait: bool = True,
        headroom: float = 1.2,
        lookahead: int = 8,
        efficiency_tol: float = 0.05,
        overload_tol: float = 0.03,
        scale_down: bool = True,
        boost: bool = True,
        boost_load: float = 0.5,
        scale_down_load: float = 0.5,
        overload: bool = True,
        admission: float = 1.0,
        rng: np.random.Generator | None = None,
    ) -> None:
        del rng
        _check_knobs(margin, spread_k, max_batch_size, correction, headroom, lookahead)
        if efficiency_tol < 0:
            raise UserError(f"slo: efficiency_tol must be >= 0, got {efficiency_tol}")
        if overload_tol < 0:
            raise UserError(f"slo: overload_tol must be >= 0, got {overload_tol}")
        self.margin = margin
        self.spread_k = spread_k
        self.max_batch_size = max_batch_size
        self.shed = shed
        self.correction = correction
        self.wait = wait
        self.headroom = headroom
        self.lookahead = lookahead
        self.efficiency_tol = efficiency_tol
        self.overload_tol = overload_tol
        self.scale_down = scale_down
        self.boost = boost
        self.boost_load = boost_load
        self.scale_down_load = scale_down_load
        self.overload = overload
        if not admission >= 0:
            raise UserError(f"slo: admission must be >= 0 (0: off), got {admission}")
        self.admission = admission
        self.ratio = 1.0  # observed / predicted batch time, exponentially weighted
        self._table: LatencyTable | None = None
        self._safe_s: list[list[float]] = []  # safe service times, [cores][batch]
        self._efficient: list[int] = []  # the efficient batch size, [cores]
        self._overload_batch: list[int] = []  # the largest batch in overload, [cores]
        self._safe_ratio = math.nan  # the ratio _safe_s was built with
        self._max_batch = 0
        self._spread: list[list[float]] = []  # 1 + spread_k * cv(b, c)
        self._fixed_key: tuple[object, ...] = ()
        self._rate = 0.0  # the node's best throughput (admission), 0 until needed

    # ---- 7. learn -------------------------------------------------------------------

    def observe(self, done: CompletedBatch) -> None:
        table = self._table
        if table is None or not self.correction:
            return
        # (done.size and done.service_s, without the property calls)
        predicted = table.service_s[done.cores][len(done.requests)]
        sample = (done.completion_s - done.dispatch_s) / predicted
        # Bounded: live, one batch slowed by a cold start or a neighbour once read 30x and
        # pushed the ratio so high that every request looked hopeless; shedding them all,
        # the policy never ran another batch to learn it was wrong.
        # (min(max(sample, 1 / MAX_CORRECTION), MAX_CORRECTION) as two tests: once per batch)
        if sample < _MIN_CORRECTION:
            sample = _MIN_CORRECTION
        elif sample > MAX_CORRECTION:
            sample = MAX_CORRECTION
        self.ratio += self.correction * (sample - self.ratio)

    def _rebuild(self, table: LatencyTable) -> None:
        """Safe service times s(b, c) * ratio * (1 + k cv) * margin (decide: when stale)."""
        self._safe_ratio = self.ratio
        f = self.ratio * self.margin
        # What does not depend on the ratio is kept while the table and knobs stay.
        key = (table, self.spread_k, self.max_batch_size, self.efficiency_tol, self.overload_tol)
        if table is not self._table or key != self._fixed_key:
            self._table = table
            self._fixed_key = key
            k = self.spread_k
            self._spread = [[1.0 + k * v for v in vrow] for vrow in table.cv]
            cap = min(self.max_batch_size or table.max_batch, table.max_batch)
            self._max_batch = cap
            self._efficient = [0] + [
                efficient_batch(row, cap, self.efficiency_tol) for row in table.service_s[1:]
            ]
            self._overload_batch = [0] + [
                max(e, efficient_batch(row, cap, self.overload_tol))
                for e, row in zip(self._efficient[1:], table.service_s[1:], strict=True)
            ]
        # s * f * (1.0 + k * v), as ever, (s * f) first: the bracket is the one kept above.
        # (map and operator.mul: the same float products, without a Python loop.)
        self._safe_s = [
            list(map(mul, map(mul, srow, repeat(f)), grow))
            for srow, grow in zip(table.service_s, self._spread, strict=True)
        ]
        self._rate = 0.0  # the node's best throughput, built by admit when it needs it

    # ---- decisions: the steps in order ----------------------------------------------

    def decide(self, view: QueueView) -> list[Decision]:
        n = len(view)
        if n == 0:
            return []
        # On a new table, or once the ratio has moved by over 0.01, the safe times are
        # rebuilt: checked on every call with requests waiting, as it always was (the
        # ratio a rebuild captures depends on when it happens).
        table = view.latency
        if table is not self._table or abs(self.ratio - self._safe_ratio) > 0.01:
            self._rebuild(table)
        safe_s = self._safe_s
        now = view.now_s
        free = view.free_cores
        # (idle_worker() None with workers idle: a driver's count out of step, as if busy)
        worker = view.idle_worker() if free and view.idle_workers else None
        if worker is None:  # 1. shed: all we can do while every worker is busy
            return shed_head(view, safe_s, now) if self.shed else []
        if n == 1:  # (the usual call below saturation: the steps below, unrolled for one)
            return self._decide_one(view, safe_s, now, free, worker.id)
        out: list[Decision] = []
        ids = view.edf(n if n < HORIZON else HORIZON)  # 2. order
        deadlines = list(map(view.deadline_s, ids))
        alone = safe_s[view.max_cores][1]
        if min(deadlines) < now + alone:  # 1. shed
            ids, deadlines, late = split_hopeless(view, now, alone, ids, deadlines, self.shed, out)
            if not ids:
                if late:  # serve-late mode and nothing can still be on time: serve the late ones
                    out.append(Dispatch(late[: self._efficient[free]], worker.id, free))
                return out
        plan = Planner(self, view, safe_s, now, deadlines, free, ids)
        k, b, cores, whole = choose(plan)  # 3. size, 4. plan, 5. cores
        if b == 0:
            return out  # the head needs more cores than are free: they free up soon
        if (  # 6. wait or go
            self.wait
            and whole
            and b == len(ids) == n
            and not view.draining
            and b < self._efficient[plan.nominal_cores]  # (else _wait_until says go now)
            and (until := self._wait_until(view, b, min(deadlines), free, plan.nominal_cores)) > now
        ):
            out.append(Wait(until))
            return out
        out.append(Dispatch(plan.ids[k : k + b], worker.id, cores))
        return out

    def _decide_one(
        self, view: QueueView, safe_s: list[list[float]], now: float, free: int, worker: int
    ) -> list[Decision]:
        """``decide`` with one request waiting and a worker idle: the same steps, unrolled.

        Kept for speed, the one copy of the steps left: one request waiting is the most
        frequent call below saturation (at sim_throughput's default 0.7 load, 38% of the
        calls, five times those with more waiting and a worker idle), and this copy makes
        slo 20% faster in the source build and 9% compiled than the general path does
        (simulated requests per CPU second, side by side, 300,000 requests).

        Each step is what the general path computes for a single deadline ``d``: the
        hopeless test of ``split_hopeless``; ``choose``'s head core count, after which
        ``serial_ok`` holds by construction (one batch of one, finishing at the very
        ``now + safe_s[head][1] <= d`` that picked ``head``) and the batch is 1;
        ``fewest_cores(plan, 1, head)``; then the wait test (``b == len(ids) == n == 1``).
        """
        r = view.edf(1)[0]
        d = view.deadline_s(r)
        max_cores = view.max_cores
        alone = safe_s[max_cores][1]
        if not d >= now + alone:  # 1. hopeless even alone on every core
            if self.shed:
                return [Reject([r], hopeless_reason(view, r, now, alone))]
            return [Dispatch([r], worker, free)]  # serve-late: late[: efficient[free] >= 1]
        n_workers = len(view.workers)
        nominal = max_cores // n_workers or 1
        head = nominal if nominal < free else free  # 3. the head's cores, as choose's
        while now + safe_s[head][1] > d:
            head += 1
            if head > free:
                return []  # it needs cores that are busy: hold them for it
        if self.scale_down and head > 1:  # 5. the scale-down search may plan: the general code
            cores = fewest_cores(Planner(self, view, safe_s, now, [d], free, [r]), 1, head)
        else:  # fewest_cores(plan, 1, head) when its scale-down loop is empty or off
            cores = head
            if (
                self.boost
                and head < free
                and view.idle_workers == n_workers
                and view.arrival_rate_per_s * safe_s[free][1] < self.boost_load
            ):
                cores = free
        if (  # 6. wait or go
            self.wait
            and self._efficient[nominal] > 1  # (else _wait_until says go now)
            and not view.draining
            and (until := self._wait_until(view, 1, d, free, nominal)) > now
        ):
            return [Wait(until)]
        return [Dispatch([r], worker, cores)]

    def _wait_until(
        self, view: QueueView, b: int, earliest: float, free: int, nominal: int
    ) -> float:
        """When to stop waiting for a fuller batch (<= now: go now)."""
        now = view.now_s
        eff = self._efficient[nominal]
        if b >= eff:  # the target below is at most eff: go now, whatever the rate
            return now
        rate = view.arrival_rate_per_s * self.headroom * self.ratio
        if rate <= 0:
            return now
        row = view.latency.service_s[nominal]
        target = min(target_batch(row, len(view.workers), rate, self._max_batch), eff)
        if b >= target:
            return now
        latest = earliest - self._safe_s[free][target]
        return min(latest, now + (target - b) / rate)

    # ---- admission ------------------------------------------------------------------

    def admit(self, view: QueueView, deadline_s: float, priority: int = 0) -> str:
        """'' to queue a request arriving now with this deadline, or why it is shed at once.

        Asked before the request is queued (live: before its tensor is even read), so
        a request that cannot make it costs the front end a header's parse, not a
        body's, and never a place in the queue. Two tests, both on safe times:
        - hopeless: it cannot finish alone on every core from the first free worker;
        - backlog (Clockwork's admission): more requests are ahead of it in EDF order
          than the node finishes by its deadline at its best throughput, times
          ``admission``. A driver without ``admit`` (or ``admission=0``) sheds in
          ``decide`` instead, later and at a full request's cost.
        """
        # Asked on every arrival, so the usual answer comes first and cheap: the safe times
        # are those the last decision built (rebuilt here only for a new table).
        if view.latency is not self._table:
            self._rebuild(view.latency)
        safe_s = self._safe_s
        now = view.now_s
        alone = safe_s[view.max_cores][1]
        if view.idle_workers:
            if not len(view) and deadline_s >= now + alone:
                return ""  # nothing waits and a worker is free: only a hopeless one is shed
            start = now
        else:
            start = first_free(view, now)
        if not self.shed:
            return ""
        if deadline_s < start + alone:
            return hopeless(deadline_s - start, deadline_s - now, alone, view.max_cores)
        rate = self._rate  # the node's best throughput (all workers), once per rebuild
        if not rate:
            if not self.admission:
                return ""
            n_workers = len(view.workers)
            top = view.max_cores // n_workers or 1
            rate = self._rate = best_rate(safe_s[top], self._max_batch) * n_workers
        room = (deadline_s - start) * rate * self.admission  # requests done by the deadline
        if len(view) < room:
            return ""  # (the usual answer: fewer wait in all than could finish before it)
        nominal = view.max_cores // len(view.workers) or 1
        soonest = start + safe_s[nominal][self._overload_batch[nominal]]
        return backlog_reason(view, start, deadline_s, priority, rate, room, soonest)


def _check_knobs(
    margin: float,
    spread_k: float,
    max_batch_size: int,
    correction: float,
    headroom: float,
    lookahead: int,
) -> None:
    if margin <= 0:
        raise UserError(f"slo: margin must be > 0, got {margin}")
    if spread_k < 0:
        raise UserError(f"slo: spread_k must be >= 0, got {spread_k}")
    if max_batch_size < 0:
        raise UserError(f"slo: max_batch_size must be >= 0 (0: the table's), got {max_batch_size}")
    if not 0 <= correction <= 1:
        raise UserError(f"slo: correction (EWMA weight) must be in [0, 1], got {correction}")
    if headroom < 1:
        raise UserError(f"slo: headroom must be >= 1, got {headroom}")
    if lookahead < 0:
        raise UserError(f"slo: lookahead must be >= 0, got {lookahead}")
