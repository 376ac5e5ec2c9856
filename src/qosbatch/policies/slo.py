"""``slo``: deadline-driven batching with early shedding and in-place core scaling (ours).

Every request carries its own deadline. On each call:

1. Shed: a request that cannot finish by its deadline even alone, on every core
   of the model, started at the earliest moment a worker is free, is rejected at
   once with the numbers (predicted vs left), instead of taking a worker's time
   and making the requests behind it late too.
2. Order: earliest deadline first (Triton ``priority`` levels first when set).
3. Size: batches of the earliest-deadline requests, as large as their deadlines
   allow (``now + s(b, c) * safety <= min deadline``) but no larger than the
   *efficient* size, past which a bigger batch buys no throughput and only adds
   latency (1 for a model whose batch time is linear in b).
4. Plan: the batch is checked by a greedy EDF plan of everything waiting, on all
   workers. If the plan keeps every request on time, that batch goes. If not
   (a burst), a one-step lookahead tries leaving the tightest requests behind and
   other sizes and core counts, and keeps the choice whose plan finishes the most
   requests on time (ties: the one that frees the workers soonest). This is what
   keeps a burst from dragging everyone late: the few that cannot make it are
   shed, the rest go in efficient batches. Under sustained overload the batch with
   the most on-time completions per second of worker time goes instead, when it is
   not worse (``_Context._overload``): large, of the requests that can still make it.
5. Cores: the fewest cores that keep the plan whole (Sponge's in-place vertical
   scaling: a batch on fewer cores uses them better and leaves the rest to
   another worker), all free cores when it is tight.
6. Wait or go: with everything on time and a batch smaller than the arrival rate
   needs, wait for more, never past the moment the earliest deadline would slip.
7. Learn: an exponentially weighted ratio of observed to predicted batch time
   corrects s(b, c) online, so a slower node (drift) does not break deadlines.

Safety: ``s(b, c) * ratio * (1 + spread_k * cv(b, c)) * margin``, from the
profile's measured spread. docs/policies.md explains why this beats the peers.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from itertools import repeat
from operator import mul

import numpy as np

from qosbatch.core.errors import UserError
from qosbatch.latency.table import LatencyTable
from qosbatch.policies.base import (
    CompletedBatch,
    Decision,
    Dispatch,
    QueueView,
    Reject,
    Wait,
    priority_rank,
)
from qosbatch.policies.slo_plan import (
    NO_LIMIT,
    best_rate,
    efficient_batch,
    fit,
    plan_lists,
    serial_ok,
    target_batch,
)

_Score = tuple[int, float, float]  # a plan's (on time, makespan, total completion time)
_HORIZON = 64  # waiting requests a decision looks at (EDF head)
_DEEP = 4 * _HORIZON  # ...and, in overload, how deep it may look for a feasible batch
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128)  # alternative first-batch sizes in a lookahead


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
        self.margin = margin
        self.spread_k = spread_k
        self.max_batch_size = max_batch_size
        self.shed = shed
        self.correction = correction
        self.wait = wait
        self.headroom = headroom
        self.lookahead = lookahead
        self.efficiency_tol = efficiency_tol
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
        self._safe: list[list[float]] = []
        self._eff: list[int] = []
        self._safe_ratio = math.nan
        self._cap = 0
        self._spread: list[list[float]] = []  # 1 + spread_k * cv(b, c)
        self._fixed_key: tuple[object, ...] = ()
        self._rate = 0.0

    # ---- feedback -------------------------------------------------------------------

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
        key = (table, self.spread_k, self.max_batch_size, self.efficiency_tol)
        if table is not self._table or key != self._fixed_key:
            self._table = table
            self._fixed_key = key
            k = self.spread_k
            self._spread = [[1.0 + k * v for v in vrow] for vrow in table.cv]
            cap = min(self.max_batch_size or table.max_batch, table.max_batch)
            self._cap = cap
            self._eff = [0] + [
                efficient_batch(row, cap, self.efficiency_tol) for row in table.service_s[1:]
            ]
        # s * f * (1.0 + k * v), as ever, (s * f) first: the bracket is the one kept above.
        # (map and operator.mul: the same float products, without a Python loop.)
        self._safe = [
            list(map(mul, map(mul, srow, repeat(f)), grow))
            for srow, grow in zip(table.service_s, self._spread, strict=True)
        ]
        self._rate = 0.0  # the node's best throughput, built by admit when it needs it

    # ---- decisions ------------------------------------------------------------------

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
        safe = self._safe
        now = view.now_s
        free = view.free_cores
        if not free or not view.idle_workers:
            if not self.shed:
                return []
            # _shed_head's first test, inlined (the usual answer while all are busy).
            alone = safe[view.max_cores][1]
            head = view.earliest_deadline_s()
            if head >= now + alone:
                workers = view.workers
                start = workers[0].busy_until_s
                for w in workers:
                    if w.busy_until_s < start:
                        start = w.busy_until_s
                if head >= start + alone:
                    return []
            return self._shed_head(view, safe, now)
        worker = view.idle_worker()
        if worker is None:  # a driver's idle count out of step; act as if all were busy
            return self._shed_head(view, safe, now) if self.shed else []
        if n == 1:
            return self._decide_one(view, safe, now, free, worker.id)
        out: list[Decision] = []
        ids = view.edf(n if n < _HORIZON else _HORIZON)
        deadlines = list(map(view.deadline_s, ids))
        alone = safe[view.max_cores][1]
        if min(deadlines) < now + alone:
            ids, deadlines, late = self._split_hopeless(view, now, alone, ids, deadlines, out)
            if not ids:
                if late:  # serve-late mode and nothing can still be on time: serve the late ones
                    out.append(Dispatch(late[: self._eff[free]], worker.id, free))
                return out
        ctx = _Context(self, view, safe, now, deadlines, free, ids)
        k, b, cores, whole = ctx.choose()
        if b == 0:
            return out  # the head needs more cores than are free: they free up soon
        if (
            self.wait
            and whole
            and b == len(ids) == n
            and not view.draining
            and b < self._eff[ctx.nominal]  # (else _wait_until says go now)
            and (until := self._wait_until(view, b, min(deadlines), free, ctx.nominal)) > now
        ):
            out.append(Wait(until))
            return out
        out.append(Dispatch(ctx.ids[k : k + b], worker.id, cores))
        return out

    def _decide_one(
        self, view: QueueView, safe: list[list[float]], now: float, free: int, worker: int
    ) -> list[Decision]:
        """``decide`` with one request waiting and a worker idle: the same steps, unrolled.

        Each step below is what the general path computes for a single deadline ``d``:
        the hopeless check of ``_split_hopeless``; ``choose``'s head core count, after
        which ``serial_ok`` holds by construction (one batch of one, finishing at the
        very ``now + safe[head][1] <= d`` that picked ``head``) and the batch is 1;
        ``_cores(1, head)``; then the wait test (``b == len(ids) == n == 1``).
        """
        r = view.edf(1)[0]
        d = view.deadline_s(r)
        top = view.max_cores
        alone = safe[top][1]
        if not d >= now + alone:  # hopeless even alone on every core
            if self.shed:
                return [Reject([r], self._reason(view, r, now, alone))]
            return [Dispatch([r], worker, free)]  # serve-late: late[: eff[free] >= 1]
        n_workers = len(view.workers)
        nominal = top // n_workers or 1
        head = nominal if nominal < free else free
        while now + safe[head][1] > d:
            head += 1
            if head > free:
                return []  # it needs cores that are busy: hold them for it
        if self.scale_down and head > 1:  # the scale-down search may plan: the general code
            cores = _Context(self, view, safe, now, [d], free, [r])._cores(1, head)
        else:  # _cores(1, head) when its scale-down loop (range(1, head)) is empty or off
            cores = head
            if (
                self.boost
                and head < free
                and view.idle_workers == n_workers
                and view.arrival_rate_per_s * safe[free][1] < self.boost_load
            ):
                cores = free
        if (
            self.wait
            and self._eff[nominal] > 1  # (else _wait_until says go now)
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
        eff = self._eff[nominal]
        if b >= eff:  # the target below is at most eff: go now, whatever the rate
            return now
        rate = view.arrival_rate_per_s * self.headroom * self.ratio
        if rate <= 0:
            return now
        row = view.latency.service_s[nominal]
        target = min(target_batch(row, len(view.workers), rate, self._cap), eff)
        if b >= target:
            return now
        latest = earliest - self._safe[free][target]
        return min(latest, now + (target - b) / rate)

    def _shed_head(self, view: QueueView, safe: list[list[float]], now: float) -> list[Decision]:
        """No worker or core free: only a hopeless EDF head can be acted on now."""
        alone = safe[view.max_cores][1]
        start = _first_free(view, now)
        if view.earliest_deadline_s() >= start + alone:
            return []
        k = 1
        while True:
            ids = view.edf(k)
            doomed = [r for r in ids if view.deadline_s(r) < start + alone]
            if len(doomed) < len(ids) or len(ids) < k:
                break
            k *= 2
        return [Reject([r], self._reason(view, r, start, alone)) for r in doomed]

    def _split_hopeless(
        self,
        view: QueueView,
        now: float,
        alone: float,
        ids: list[int],
        deadlines: list[float],
        out: list[Decision],
    ) -> tuple[list[int], list[float], list[int]]:
        """Reject (or, serving late, set apart) requests that cannot finish even alone."""
        limit = now + alone
        keep_ids, keep_dl, late = [], [], []
        for r, d in zip(ids, deadlines, strict=True):
            if d >= limit:
                keep_ids.append(r)
                keep_dl.append(d)
            elif self.shed:
                out.append(Reject([r], self._reason(view, r, now, alone)))
            else:
                late.append(r)
        return keep_ids, keep_dl, late

    @staticmethod
    def _reason(view: QueueView, r: int, start: float, alone: float) -> str:
        d = view.deadline_s(r)
        return _hopeless(d - start, d - view.arrival_s(r), alone, view.max_cores)

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
        safe = self._safe
        now = view.now_s
        alone = safe[view.max_cores][1]
        if view.idle_workers:
            if not len(view) and deadline_s >= now + alone:
                return ""  # nothing waits and a worker is free: only a hopeless one is shed
            start = now
        else:
            start = _first_free(view, now)
        if not self.shed:
            return ""
        if deadline_s < start + alone:
            return _hopeless(deadline_s - start, deadline_s - now, alone, view.max_cores)
        rate = self._rate  # the node's best throughput (all workers), once per rebuild
        if not rate:
            if not self.admission:
                return ""
            n_workers = len(view.workers)
            top = view.max_cores // n_workers or 1
            rate = self._rate = best_rate(safe[top], self._cap) * n_workers
        room = (deadline_s - start) * rate * self.admission  # requests done by the deadline
        if len(view) < room:
            return ""  # (the usual answer: fewer wait in all than could finish before it)
        # Ahead of it: the waiting requests EDF serves first, less those due too soon for
        # an efficient batch, which the overload step passes over (they are shed later).
        nominal = view.max_cores // len(view.workers) or 1
        soonest = start + safe[nominal][self._eff[nominal]]
        ahead = _count_ahead(view, soonest, deadline_s, priority, math.ceil(room))
        if ahead < room:
            return ""
        return (
            f"shed at admission: {ahead}+ requests ahead of it need "
            f"{ahead / rate * 1e3:.0f} ms at best > {(deadline_s - start) * 1e3:.0f} ms left "
            f"(budget {(deadline_s - now) * 1e3:.1f} ms)"
        )


def _first_free(view: QueueView, now: float) -> float:
    """When the first worker frees up: the earliest predicted end, or now if that passed."""
    workers = view.workers
    start = workers[0].busy_until_s
    for w in workers:
        if w.busy_until_s < start:
            start = w.busy_until_s
    return start if start > now else now


def _hopeless(left_s: float, budget_s: float, alone_s: float, cores: int) -> str:
    return (
        f"deadline cannot be met: predicted {alone_s * 1e3:.1f} ms alone on "
        f"{cores} core(s) > {left_s * 1e3:.1f} ms left (budget {budget_s * 1e3:.1f} ms)"
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


class _Context:
    """One decision's arithmetic: candidate batches scored by a greedy plan.

    Slotted, and its methods copy attributes to locals: a few of these run per
    decision with requests queued, and attribute loads show at that rate.
    """

    __slots__ = (
        "_pool",
        "_started",
        "all_idle",
        "dl",
        "eff",
        "free",
        "ids",
        "n_workers",
        "nominal",
        "now",
        "p",
        "safe",
        "top",
        "view",
    )

    def __init__(
        self,
        policy: SloPolicy,
        view: QueueView,
        safe: list[list[float]],
        now: float,
        deadlines: list[float],
        free: int,
        ids: list[int],
    ) -> None:
        self.p = policy
        self.view = view
        self.safe = safe
        self.now = now
        self.dl = deadlines
        self.ids = ids  # in step with ``dl``; the overload step may read deeper
        self.free = free
        self.eff = policy._eff
        self.n_workers = n_workers = len(view.workers)
        self.top = top = view.max_cores
        self.nominal = top // n_workers or 1  # (max(1, top // n_workers))
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

    def evaluate(self, k: int, b: int, cores: int, max_lost: int = NO_LIMIT) -> _Score | None:
        """(on time, makespan, total) if ``dl[k:k+b]`` runs now on ``cores``, the rest planned.

        None: the plan of the rest lost more than ``max_lost`` requests and was cut short.
        """
        now = self.now
        started = self._started.get((b, cores))
        if started is None:
            ends, held, _ = self._pool or self.pool()
            done = now + self.safe[cores][b]
            j = bisect_right(ends, done)
            ends = ends[:]
            ends.insert(j, done)
            held = held[:]
            held.insert(j, cores)
            started = self._started[b, cores] = (ends, held, done)
        ends, held, done = started
        dl = self.dl
        out = plan_lists(
            dl[:k] + dl[k + b :] if k else dl[b:],
            now,
            ends[:],
            held[:],
            self.n_workers - len(ends),
            self.free - cores,
            self.top,
            self.nominal,
            self.safe,
            self.eff,
            max_lost,
        )
        if out is None:
            return None
        on_time, makespan, total, _ = out
        if done > makespan:
            makespan = done
        return on_time + b, makespan, total + b * done

    def choose(self) -> tuple[int, int, int, bool]:
        """(skip, batch, cores, plan keeps everyone on time); batch 0: dispatch nothing."""
        dl, safe, now, free, eff = self.dl, self.safe, self.now, self.free, self.eff
        # The fewest cores from the nominal up that finish the head in time (0: none free).
        head = self.nominal if self.nominal < free else free
        while now + safe[head][1] > dl[0]:
            head += 1
            if head > free:
                head = 0
                break
        if head and serial_ok(safe[head], now, dl, eff[head]):
            # This worker alone keeps everyone on time: no need to plan (the common case).
            b = min(len(dl), eff[head])
            return 0, b, self._cores(b, head), True
        if len(dl) == 1:
            return 0, 0, 0, True  # it needs cores that are busy: hold them for it
        ends, held, idle = self.pool()
        if head and (not ends or ends[0] > now):
            # The greedy plan of everyone starts with the head's largest fitting batch on
            # ``head`` cores, now (no running batch has ended by now; the head is not
            # hopeless; a worker and ``head`` cores are free), then plans the rest from
            # that state: which is evaluate(0, b, head), one of the lookahead's candidates.
            want = min(len(dl), eff[head])
            b = fit(safe[head], now, dl, want) if want > 1 else 1
            greedy = self.evaluate(0, b, head)
            assert greedy is not None
            if greedy[0] == len(dl):
                return 0, b, self._cores(b, head), True
            return (*self._overload((0, b, head), greedy), False)
        out = plan_lists(dl, now, ends[:], held[:], idle, free, self.top, self.nominal, safe, eff)
        assert out is not None
        on_time, _, _, first = out
        if on_time == len(dl):
            if first is None:
                return 0, 0, 0, True  # the plan holds the free cores for a tight head
            k, b, cores = first
            if k == 0:
                return 0, b, self._cores(b, cores), True
        return (*self._overload(), False)

    def _cores(self, b: int, cores: int) -> int:
        """Fewest cores keeping the plan whole; all free ones when nothing else needs them.

        "Whole" counts the requests expected to arrive while this batch runs (at the
        measured rate, with the budgets of those waiting), so that scaling down does
        not starve the next arrivals of the cores it saved.
        """
        p, free, now, safe = self.p, self.free, self.now, self.safe
        if p.boost and b == len(self.dl) and self.all_idle and cores < free:
            expected = self.view.arrival_rate_per_s * safe[free][b]
            if expected < p.boost_load:
                return free
        if not p.scale_down or cores <= 1:
            return cores
        rate = self.view.arrival_rate_per_s
        for c in range(1, cores):
            eff = p._eff[c]
            if rate * safe[c][eff] / eff / self.n_workers > p.scale_down_load:
                continue  # busy enough that the saved cores would be missed
            if fit(safe[c], now, self.dl, b) < b:
                continue
            deadlines = sorted(self.dl[b:] + self._expected(safe[c][b]))
            ends, held, idle = self.pool()
            end = now + safe[c][b]
            j = bisect_right(ends, end)
            ends, held = ends[:], held[:]
            ends.insert(j, end)
            held.insert(j, c)
            out = plan_lists(
                deadlines, now, ends, held, idle - 1, free - c, self.top, self.nominal, safe, p._eff
            )
            assert out is not None
            if out[0] == len(deadlines):
                return c
        return cores

    def _expected(self, span: float) -> list[float]:
        """Deadlines of the requests expected to arrive within ``span`` (measured rate)."""
        view, now = self.view, self.now
        rate = view.arrival_rate_per_s
        if rate <= 0:
            return []
        ids = view.edf(min(len(view), 8))
        budget = sorted(view.deadline_s(r) - view.arrival_s(r) for r in ids)[len(ids) // 2]
        count = math.ceil(rate * span)
        return [now + (j + 1) / rate + budget for j in range(count)]

    def _overload(
        self, known: tuple[int, int, int] | None = None, known_score: _Score | None = None
    ) -> tuple[int, int, int]:
        """Not everyone can be on time: prefer the most on-time completions per second.

        Why: the lookahead's plan counts only the requests waiting now, so it serves the
        tightest of them first, in the small batches their deadlines allow. Under
        sustained overload that is the EDF trap: small batches waste worker time, the
        queue falls further behind, the next heads are tight too, and goodput falls as
        the load rises. Clockwork (OSDI'20) and Shepherd (NSDI'23) run instead the batch
        that finishes the most requests on time per second of worker time, which is large.

        The rule: for each core option c and size b up to the efficient one, the
        candidate is the b earliest-deadline requests that can still finish if the batch
        starts now (deadline >= now + safe[c][b]); its on-time throughput is
        b / safe[c][b], per core while another worker is idle (it could use the cores
        left). The best candidate replaces the lookahead's choice if it is not worse:
        its throughput beats that of the lookahead's first batch by more than twice
        ``efficiency_tol`` (a decisive gain, the trap), or it beats it at all and the
        plan of the requests waiting keeps as many on time as the lookahead's. Else the
        lookahead's choice stands (a burst it can absorb, a model with little batching
        gain). The tighter requests skipped stay waiting: another worker serves them
        if it can, else they are shed once hopeless. Priority levels set the order when
        present (deadlines then are not sorted), so the lookahead's choice stands.

        Under deep overload the feasible requests can lie past the first ``_HORIZON`` in
        EDF order, so this reads up to ``_DEEP`` deep (``ids`` grows; the returned skip
        indexes it): O(_DEEP) once per overloaded dispatch.
        """
        choice, planned = self._lookahead(known, known_score)
        view, ids = self.view, self.ids
        if not self.p.overload or view.priority(ids[0]) != view.priority(ids[-1]):
            return choice
        safe, now, eff, free = self.safe, self.now, self.eff, self.free
        core_options = (free,) if free <= self.nominal else (self.nominal, free)
        dl = self.dl  # (the lookahead's window; ``deep`` may extend it)
        deep = dl
        n = len(view)
        c = core_options[0]
        if n > _HORIZON and bisect_left(dl, now + safe[c][eff[c]]) + eff[c] > len(dl):
            deeper = view.edf(n if n < _DEEP else _DEEP)[_HORIZON:]
            if deeper and view.priority(deeper[-1]) == view.priority(ids[0]):
                self.ids = ids + deeper
                deep = dl + list(map(view.deadline_s, deeper))
        per_core = view.idle_workers > 1
        k, b, cores = choice
        chosen = b / (safe[cores][b] * (cores if per_core else 1)) if b else 0.0
        best = chosen
        candidate = choice
        for cores in core_options:
            row = safe[cores]
            scale = cores if per_core else 1
            for b in range(1, eff[cores] + 1):
                k = bisect_left(deep, now + row[b])
                if k + b > len(deep):
                    break  # (a larger b skips at least as many: none fits either)
                rate = b / (row[b] * scale)
                if rate > best:
                    best, candidate = rate, (k, b, cores)
        if candidate == choice or best > chosen * (1.0 + 2.0 * self.p.efficiency_tol):
            return candidate
        k, b, cores = candidate
        if k + b <= len(dl):
            score = self.evaluate(k, b, cores, len(dl) - planned)
            if score is not None and score[0] >= planned:
                return candidate
        return choice

    def _lookahead(
        self, known: tuple[int, int, int] | None = None, known_score: _Score | None = None
    ) -> tuple[tuple[int, int, int], int]:
        """The first batch whose plan scores best: most on time, then soonest done, ...

        Candidates: nothing now (when a worker runs), and each of the first ``lookahead``
        + 1 requests in EDF order (the tighter ones left behind) with the largest batch
        that fits and the smaller standard sizes, on the nominal or all free cores. A
        candidate's plan is that batch started now and the greedy plan of the rest;
        ``known``, a candidate (k, b, cores) already evaluated, scores ``known_score``.
        A candidate that loses more requests than the best so far cannot beat it (the
        first key is the count on time), so its plan stops there. Returns the choice and
        how many its plan keeps on time.
        """
        dl, free, safe, now, eff = self.dl, self.free, self.safe, self.now, self.eff
        nominal = self.nominal
        core_options = (free,) if free <= nominal else (nominal, free)  # ascending
        quantum = safe[nominal][1] * 0.01  # makespans this close count as equal
        n = len(dl)
        # Only a candidate with the most on time can be chosen (the first key), so a plan
        # that loses more than the best count seen (or known, if a candidate here) allows
        # stops short: its candidate is neither chosen nor, scoring lower, the first of
        # the best.
        if known is not None and known[2] not in core_options:
            known = None  # (not one of these candidates: its score says nothing here)
        most_on_time = known_score[0] if known is not None and known_score is not None else 0
        best: tuple[int, int, float, int] | None = None
        choice = (0, 0, free)
        ends, held, idle = self._pool or self.pool()
        if ends:  # nothing now: the plan starts when the first running batch ends
            out = plan_lists(
                dl,
                ends[0],
                ends[:],
                held[:],
                idle,
                free,
                self.top,
                nominal,
                safe,
                eff,
                n - most_on_time,
            )
            if out is not None:
                on_time, makespan, total, _ = out
                best = (on_time, -round((makespan - now) / quantum), -total, 0)
                if on_time > most_on_time:
                    most_on_time = on_time
        evaluate = self.evaluate
        lookahead = self.p.lookahead
        for k in range(min(lookahead, n - 1) + 1):
            for cores in core_options:
                row = safe[cores]
                want = eff[cores]
                if n - k < want:
                    want = n - k
                if want == 1:  # fit(row, now, dl, 1, k), inlined; most is 1 or 0
                    if now + row[1] > dl[k]:
                        continue
                    sizes: tuple[int, ...] = (1,)  # (_sizes_to_try(1))
                else:
                    most = fit(row, now, dl, want, k)
                    if most == 0:
                        continue
                    sizes = _ORDERS.get(most) or _sizes_to_try(most)
                for b in sizes:
                    if known == (k, b, cores) and known_score is not None:
                        ev: _Score | None = known_score
                    else:
                        ev = evaluate(k, b, cores, n - most_on_time)
                    if ev is None:
                        continue  # fewer on time than another candidate: never chosen
                    on_time, makespan, total = ev
                    score = (on_time, -round((makespan - now) / quantum), -total, -cores)
                    if best is None or score > best:
                        best, choice = score, (k, b, cores)
                        if on_time > most_on_time:
                            most_on_time = on_time
        return choice, (best[0] if best is not None else 0)


_ORDERS: dict[int, tuple[int, ...]] = {}


def _sizes_to_try(most: int) -> tuple[int, ...]:
    """Batch sizes a lookahead tries when ``most`` fit: ``most`` and the smaller of _SIZES.

    In the iteration order of the set ``{most} | {s for s in _SIZES if s < most}``
    (deterministic for ints), which is the order they have always been tried in:
    ties keep the first candidate seen, so the order is part of the behaviour.
    """
    order = _ORDERS.get(most)
    if order is None:
        order = _ORDERS[most] = tuple({most} | {s for s in _SIZES if s < most})
    return order


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
