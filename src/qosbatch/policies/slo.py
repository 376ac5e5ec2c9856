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
   shed, the rest go in efficient batches.
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

import numpy as np

from qosbatch.core.errors import UserError
from qosbatch.policies.base import (
    CompletedBatch,
    Decision,
    Dispatch,
    QueueView,
    Reject,
    Wait,
)
from qosbatch.policies.latency_table import LatencyTable
from qosbatch.policies.slo_plan import (
    Outcome,
    Pool,
    efficient_batch,
    fit,
    plan,
    serial_ok,
    target_batch,
)

_HORIZON = 64  # waiting requests a decision looks at (EDF head)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128)  # alternative first-batch sizes in a lookahead


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
        self.ratio = 1.0  # observed / predicted batch time, exponentially weighted
        self._table: LatencyTable | None = None
        self._safe: list[list[float]] = []
        self._eff: list[int] = []
        self._safe_ratio = math.nan
        self._cap = 0

    # ---- feedback -------------------------------------------------------------------

    def observe(self, done: CompletedBatch) -> None:
        table = self._table
        if table is None or not self.correction:
            return
        predicted = table.service_s[done.cores][done.size]
        self.ratio += self.correction * (done.service_s / predicted - self.ratio)

    def _sync(self, table: LatencyTable) -> list[list[float]]:
        """Safe service times s(b, c) * ratio * (1 + k cv) * margin, rebuilt on change."""
        if table is not self._table or abs(self.ratio - self._safe_ratio) > 0.01:
            self._table = table
            self._safe_ratio = self.ratio
            f = self.ratio * self.margin
            k = self.spread_k
            self._safe = [
                [s * f * (1.0 + k * v) for s, v in zip(srow, vrow, strict=True)]
                for srow, vrow in zip(table.service_s, table.cv, strict=True)
            ]
            cap = min(self.max_batch_size or table.max_batch, table.max_batch)
            self._cap = cap
            self._eff = [0] + [
                efficient_batch(row, cap, self.efficiency_tol) for row in table.service_s[1:]
            ]
        return self._safe

    # ---- decisions ------------------------------------------------------------------

    def decide(self, view: QueueView) -> list[Decision]:
        n = len(view)
        if n == 0:
            return []
        safe = self._sync(view.latency)
        now = view.now_s
        free = view.free_cores
        if not free or not view.idle_workers:
            return self._shed_head(view, safe, now) if self.shed else []
        worker = view.idle_worker()
        if worker is None:  # a driver's idle count out of step; act as if all were busy
            return self._shed_head(view, safe, now) if self.shed else []
        out: list[Decision] = []
        ids = view.edf(min(n, _HORIZON))
        deadlines = [view.deadline_s(r) for r in ids]
        ids, deadlines, late = self._split_hopeless(view, safe, now, ids, deadlines, out)
        if not ids:
            if late:  # serve-late mode and nothing can still be on time: serve the late ones
                out.append(Dispatch(late[: self._eff[free]], worker.id, free))
            return out
        ctx = _Context(self, view, safe, now, deadlines, free)
        k, b, cores, whole = ctx.choose()
        if b == 0:
            return out  # the head needs more cores than are free: they free up soon
        if (
            self.wait
            and whole
            and b == len(ids) == n
            and not view.draining
            and (until := ctx.wait_until(b)) > now
        ):
            out.append(Wait(until))
            return out
        out.append(Dispatch(ids[k : k + b], worker.id, cores))
        return out

    def _shed_head(self, view: QueueView, safe: list[list[float]], now: float) -> list[Decision]:
        """No worker or core free: only a hopeless EDF head can be acted on now."""
        alone = safe[view.max_cores][1]
        head = view.earliest_deadline_s()
        if head >= now + alone:
            start = min(w.busy_until_s for w in view.workers)
            if head >= start + alone:
                return []
        start = max(now, min(w.busy_until_s for w in view.workers))
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
        safe: list[list[float]],
        now: float,
        ids: list[int],
        deadlines: list[float],
        out: list[Decision],
    ) -> tuple[list[int], list[float], list[int]]:
        """Reject (or, serving late, set apart) requests that cannot finish even alone."""
        alone = safe[view.max_cores][1]
        limit = now + alone
        if min(deadlines) >= limit:
            return ids, deadlines, []
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
        left = (view.deadline_s(r) - start) * 1e3
        return (
            f"deadline cannot be met: predicted {alone * 1e3:.1f} ms alone on "
            f"{view.max_cores} core(s) > {left:.1f} ms left (budget "
            f"{(view.deadline_s(r) - view.arrival_s(r)) * 1e3:.1f} ms)"
        )


class _Context:
    """One decision's arithmetic: candidate batches scored by a greedy plan."""

    def __init__(
        self,
        policy: SloPolicy,
        view: QueueView,
        safe: list[list[float]],
        now: float,
        deadlines: list[float],
        free: int,
    ) -> None:
        self.p = policy
        self.view = view
        self.safe = safe
        self.now = now
        self.dl = deadlines
        self.free = free
        workers = view.workers
        self.n_workers = len(workers)
        self.nominal = max(1, view.max_cores // self.n_workers)
        self.all_idle = view.idle_workers == self.n_workers
        self._pool: Pool | None = None

    @property
    def pool(self) -> Pool:
        """The workers now, built on first use (the common path never needs it)."""
        if self._pool is None:
            # A batch running past its prediction still holds its cores: it ends "just after".
            soon = self.now + 1e-6
            workers = self.view.workers
            running = [(max(soon, w.busy_until_s), w.running_cores) for w in workers if not w.idle]
            idle = self.n_workers - len(running)
            self._pool = Pool(self.now, running, idle, self.free, self.view.max_cores, self.nominal)
        return self._pool

    def evaluate(self, k: int, b: int, cores: int) -> Outcome:
        """The plan if ``dl[k:k+b]`` runs now on ``cores`` (b == 0: nothing runs now)."""
        pool = self.pool.copy()
        if b:
            pool.start(self.now + self.safe[cores][b], cores)
        elif pool.running:
            pool.now = min(pool.running)[0]
        rest = self.dl[:k] + self.dl[k + b :] if k else self.dl[b:]
        out = plan(rest, pool, self.safe, self.p._eff)
        if b:
            done = self.now + self.safe[cores][b]
            out.on_time += b
            out.total += b * done
            out.makespan = max(out.makespan, done)
        return out

    def _score(self, out: Outcome, cores: int) -> tuple[int, int, float, int]:
        quantum = self.safe[self.nominal][1] * 0.01  # makespans this close count as equal
        return (out.on_time, -round((out.makespan - self.now) / quantum), -out.total, -cores)

    def choose(self) -> tuple[int, int, int, bool]:
        """(skip, batch, cores, plan keeps everyone on time); batch 0: dispatch nothing."""
        dl, safe, now, free = self.dl, self.safe, self.now, self.free
        head = 0
        for c in range(min(self.nominal, free), free + 1):
            if now + safe[c][1] <= dl[0]:
                head = c
                break
        if head and serial_ok(safe[head], now, dl, self.p._eff[head]):
            # This worker alone keeps everyone on time: no need to plan (the common case).
            b = min(len(dl), self.p._eff[head])
            return 0, b, self._cores(b, head), True
        if len(dl) == 1:
            return 0, 0, 0, True  # it needs cores that are busy: hold them for it
        greedy = plan(self.dl, self.pool.copy(), self.safe, self.p._eff)
        if greedy.on_time == len(self.dl):
            if greedy.first is None:
                return 0, 0, 0, True  # the plan holds the free cores for a tight head
            k, b, cores = greedy.first
            if k == 0:
                return 0, b, self._cores(b, cores), True
        return (*self._lookahead(), False)

    def _cores(self, b: int, cores: int) -> int:
        """Fewest cores keeping the plan whole; all free ones when nothing else needs them.

        "Whole" counts the requests expected to arrive while this batch runs (at the
        measured rate, with the budgets of those waiting), so that scaling down does
        not starve the next arrivals of the cores it saved.
        """
        p, free, now = self.p, self.free, self.now
        if p.boost and b == len(self.dl) and self.all_idle and cores < free:
            expected = self.view.arrival_rate_per_s * self.safe[free][b]
            if expected < p.boost_load:
                return free
        if not p.scale_down:
            return cores
        rate = self.view.arrival_rate_per_s
        for c in range(1, cores):
            eff = p._eff[c]
            if rate * self.safe[c][eff] / eff / self.n_workers > p.scale_down_load:
                continue  # busy enough that the saved cores would be missed
            if fit(self.safe[c], now, self.dl, b) < b:
                continue
            deadlines = sorted(self.dl[b:] + self._expected(self.safe[c][b]))
            pool = self.pool.copy()
            pool.start(now + self.safe[c][b], c)
            if plan(deadlines, pool, self.safe, p._eff).on_time == len(deadlines):
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

    def _lookahead(self) -> tuple[int, int, int]:
        dl, free, safe, now, eff = self.dl, self.free, self.safe, self.now, self.p._eff
        core_options = sorted({free, min(free, self.nominal)})
        best: tuple[int, int, float, int] | None = None
        choice = (0, 0, free)
        if self.pool.running:
            best = self._score(self.evaluate(0, 0, 0), 0)
        for k in range(min(self.p.lookahead, len(dl) - 1) + 1):
            for cores in core_options:
                most = fit(safe[cores], now, dl, min(len(dl) - k, eff[cores]), k)
                if most == 0:
                    continue
                for b in {most} | {s for s in _SIZES if s < most}:
                    score = self._score(self.evaluate(k, b, cores), cores)
                    if best is None or score > best:
                        best, choice = score, (k, b, cores)
        return choice

    def wait_until(self, b: int) -> float:
        """When to stop waiting for a fuller batch (<= now: go now)."""
        rate = self.view.arrival_rate_per_s * self.p.headroom * self.p.ratio
        if rate <= 0:
            return self.now
        nominal = self.nominal
        row = self.view.latency.service_s[nominal]
        target = min(target_batch(row, self.n_workers, rate, self.p._cap), self.p._eff[nominal])
        if b >= target:
            return self.now
        latest = min(self.dl) - self.safe[self.free][target]
        return min(latest, self.now + (target - b) / rate)


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
