"""The waiting queue of one model: the concrete QueueView that drivers own and mutate.

Both drivers (simulator, live server) keep one ``ModelQueue`` per model, push
arrivals into it, take dispatched and rejected requests out of it, update its
workers, and hand it to the policy as its read-only ``QueueView``. It keeps two
orders of the same requests:

- arrival order (a deque), which FIFO policies read;
- EDF order, (priority level, deadline, id) in a sorted list, built the first time
  a policy asks for it, so FIFO policies never pay for it.

Removal is lazy: a taken request leaves the id->info dict at once and is skipped
(then dropped) when a reader reaches it; when more than half of an order is dead it
is compacted. Every operation a policy calls per decision costs O(k) for the k
requests it reads, never a scan of the whole queue.
"""

from __future__ import annotations

import math
from bisect import insort
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from math import exp

from qosbatch.core.requests import Request
from qosbatch.latency.table import LatencyTable
from qosbatch.policies.base import (
    LOWEST_RANK,
    CompletedBatch,
    Decision,
    Dispatch,
    PolicyContractError,
    Reject,
    Wait,
    priority_rank,
)


@dataclass(slots=True)
class WorkerState:
    """A worker as the driver tracks it (a WorkerView to the policy)."""

    id: int
    cores: int  # nominal cores
    idle: bool = True
    busy_until_s: float = 0.0  # predicted completion of the running batch
    running_cores: int = 0
    # The running batch, as the driver core needs it at completion (empty when idle).
    batch: Sequence[int] = ()
    entries: list[tuple[float, float, int]] = field(default_factory=list)  # as queued
    dispatch_s: float = 0.0


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` cores as ``parts`` near-equal shares, the first ones taking the remainder.

    How every driver gives workers (and the CLI gives models) their nominal cores.
    """
    base, extra = divmod(total, parts)
    return [base + (i < extra) for i in range(parts)]


class ModelQueue:
    """Waiting requests, workers and free cores of one model; see the module docstring."""

    def __init__(
        self,
        model: str,
        worker_cores: Sequence[int],
        max_cores: int,
        latency: LatencyTable,
        rate_window_s: float = 1.0,
    ) -> None:
        if not worker_cores:
            raise ValueError("a model needs at least one worker")
        if max_cores < max(worker_cores):
            raise ValueError(f"max_cores {max_cores} is below a worker's cores {max(worker_cores)}")
        self.model = model
        self.now_s = 0.0
        self.draining = False
        self.max_cores = max_cores
        self.free_cores = max_cores
        self.workers = [WorkerState(i, c) for i, c in enumerate(worker_cores)]
        self.idle_workers = len(self.workers)  # drivers keep it equal to the idle count
        self.latency = latency
        self._info: dict[int, tuple[float, float, int]] = {}  # id -> (arrival, deadline, prio)
        self._fifo: deque[int] = deque()
        self._fifo_dead = 0
        self._edf: list[tuple[int, float, int]] | None = None  # (rank, deadline, id)
        self._edf_dead = 0
        self._rate = 0.0
        self._rate_t = 0.0
        self._tau = rate_window_s

    # ---- the QueueView, read by policies -------------------------------------------

    def __len__(self) -> int:
        return len(self._info)

    @property
    def arrival_rate_per_s(self) -> float:
        return self._rate * exp((self._rate_t - self.now_s) / self._tau)

    def idle_worker(self) -> WorkerState | None:
        if not self.idle_workers:
            return None
        for w in self.workers:
            if w.idle:
                return w
        return None

    def oldest_arrival_s(self) -> float:
        info, fifo = self._info, self._fifo
        while fifo and fifo[0] not in info:
            fifo.popleft()
            self._fifo_dead -= 1
        return info[fifo[0]][0] if fifo else math.inf

    def earliest_deadline_s(self) -> float:
        order = self._edf if self._edf is not None else self._edf_order()
        info = self._info
        if order and order[0][2] not in info:
            self._drop_taken_head(order)
        return order[0][1] if order else math.inf  # (the entry holds the head's deadline)

    def fifo(self, k: int) -> list[int]:
        info, fifo = self._info, self._fifo
        while fifo and fifo[0] not in info:
            fifo.popleft()
            self._fifo_dead -= 1
        out: list[int] = []
        if k <= 0:
            return out
        for rid in fifo:
            if rid in info:
                out.append(rid)
                if len(out) == k:
                    break
        return out

    def edf(self, k: int) -> list[int]:
        order = self._edf if self._edf is not None else self._edf_order()
        info = self._info
        if order and order[0][2] not in info:
            self._drop_taken_head(order)
        if k == 1:  # the common ask
            return [order[0][2]] if order else []
        out: list[int] = []
        if k <= 0:
            return out
        for entry in order:
            rid = entry[2]
            if rid in info:
                out.append(rid)
                if len(out) == k:
                    break
        return out

    def arrival_s(self, request_id: int) -> float:
        return self._info[request_id][0]

    def deadline_s(self, request_id: int) -> float:
        return self._info[request_id][1]

    def priority(self, request_id: int) -> int:
        return self._info[request_id][2]

    def requests(self) -> list[Request]:
        return [Request(rid, self.model, *self._info[rid]) for rid in self.fifo(len(self._info))]

    # ---- driver side ----------------------------------------------------------------

    def push(self, request_id: int, arrival_s: float, deadline_s: float, priority: int = 0) -> None:
        """A request arrives (at ``arrival_s``, which drivers keep non-decreasing)."""
        info = self._info
        if request_id in info:
            raise ValueError(f"request {request_id} is already waiting")
        info[request_id] = (arrival_s, deadline_s, priority)
        self._fifo.append(request_id)
        if self._edf is not None:
            rank = priority if priority > 0 else LOWEST_RANK  # (priority_rank, inlined)
            insort(self._edf, (rank, deadline_s, request_id))
        tau = self._tau
        self._rate = self._rate * exp((self._rate_t - arrival_s) / tau) + 1 / tau
        self._rate_t = arrival_s

    def take(self, request_ids: Sequence[int]) -> list[tuple[float, float, int]]:
        """Remove requests a decision named; their (arrival, deadline, priority) entries.

        A missing one breaks the contract.

        All are found before any is removed, so a decision that names a request twice or
        one not waiting leaves the queue as it was, and the driver can still answer every
        request in it (a broken policy must never strand one).
        """
        info = self._info
        pop = info.pop
        taken: list[tuple[float, float, int]] = []
        try:
            for rid in request_ids:
                taken.append(pop(rid))
        except KeyError:
            for rid, entry in zip(request_ids, taken, strict=False):  # put them back
                info[rid] = entry
            bad = request_ids[len(taken)]
            raise PolicyContractError(
                f"{self.model}: a decision names request {bad}, which is not waiting "
                "(dispatched or rejected twice, or never arrived)"
            ) from None
        n = len(taken)
        order = self._edf
        dropped = 0
        if order:
            for rid in request_ids:  # the EDF head (the usual) leaves that order now
                if order and order[0][2] == rid:
                    del order[0]
                    dropped += 1
        self._fifo_dead += n
        if self._fifo_dead > 64 and self._fifo_dead > len(info):
            self._fifo = deque(r for r in self._fifo if r in info)
            self._fifo_dead = 0
        if order is not None:
            self._edf_dead += n - dropped
            if self._edf_dead > 64 and self._edf_dead > len(info):
                self._edf = [e for e in order if e[2] in info]
                self._edf_dead = 0
        return taken

    def start_batch(self, ids: Sequence[int], worker: int, cores: int, now: float) -> None:
        """A dispatched batch leaves the queue and holds its worker and cores.

        The one place either driver turns a ``Dispatch`` into state: the contract's
        checks, the requests taken, the worker busy until the table's prediction.
        """
        b = len(ids)
        workers = self.workers
        # check_dispatch's tests, inline (once per batch); it is called to raise the reason.
        if not (
            0 <= worker < len(workers)
            and workers[worker].idle
            and 1 <= cores <= self.free_cores
            and 1 <= b <= self.latency.max_batch
        ):
            self.check_dispatch(worker, cores, b)
        entries = self.take(ids)
        w = workers[worker]
        w.idle = False
        w.busy_until_s = now + self.latency.service_s[cores][b]
        w.running_cores = cores
        w.batch = ids
        w.entries = entries
        w.dispatch_s = now
        self.free_cores -= cores
        self.idle_workers -= 1

    def finish_batch(self, worker: int, now: float, back: bool = True) -> CompletedBatch:
        """The worker's batch ended at ``now``: its cores are free; what the policy observes.

        ``back``: the worker takes batches again (False when it died with the batch: the
        driver marks it idle once it has restarted).
        """
        w = self.workers[worker]
        cores = w.running_cores
        late = 0
        for entry in w.entries:
            if entry[1] < now:  # (arrival, deadline, priority)
                late += 1
        done = CompletedBatch(self.model, worker, cores, w.batch, w.dispatch_s, now, late)
        w.running_cores = 0
        w.busy_until_s = now
        w.batch = ()
        w.entries = []
        self.free_cores += cores
        if back:
            w.idle = True
            self.idle_workers += 1
        self.now_s = now
        return done

    def reject(self, d: Reject) -> list[int]:
        """A ``Reject``'s requests leave the queue; the ids the driver answers."""
        ids = list(d.requests)
        if not ids:
            raise PolicyContractError(f"{self.model}: a Reject naming no request")
        self.take(ids)
        return ids

    def check_dispatch(self, worker: int, cores: int, batch: int) -> None:
        """Raise PolicyContractError unless this batch on this worker and cores is legal."""
        workers = self.workers
        if not 0 <= worker < len(workers):
            raise PolicyContractError(
                f"{self.model}: dispatch to worker {worker}, which does not exist"
            )
        if not workers[worker].idle:
            raise PolicyContractError(f"{self.model}: dispatch to worker {worker}, which is busy")
        if not 1 <= cores <= self.free_cores:
            raise PolicyContractError(
                f"{self.model}: dispatch on {cores} cores with {self.free_cores} free "
                f"(of {self.max_cores})"
            )
        if not 1 <= batch <= self.latency.max_batch:
            raise PolicyContractError(
                f"{self.model}: a batch of {batch}; batches hold 1 to {self.latency.max_batch} "
                "requests"
            )

    def _drop_taken_head(self, order: list[tuple[int, float, int]]) -> None:
        """Drop the taken requests ahead of the first waiting one in EDF order."""
        info = self._info
        if len(order) > 1 and order[1][2] in info:  # one (the usual)
            del order[0]
            self._edf_dead -= 1
            return
        dead = 0
        for entry in order:
            if entry[2] in info:
                break
            dead += 1
        del order[:dead]
        self._edf_dead -= dead

    def _edf_order(self) -> list[tuple[int, float, int]]:
        if self._edf is None:
            self._edf = sorted((priority_rank(p), d, rid) for rid, (_, d, p) in self._info.items())
            self._edf_dead = 0
        return self._edf


def apply_decisions(
    q: ModelQueue,
    decisions: object,
    now: float,
    decide: Callable[[ModelQueue], list[Decision]],
    dispatch: Callable[[Dispatch], None],
    reject: Callable[[Reject], None],
    idle_only: bool = False,
) -> float:
    """Apply a policy's decisions the way every driver must; return when to call it again.

    Dispatches and rejections go to the driver's ``dispatch`` and ``reject`` in
    order; while they change anything, the policy is asked again with the updated
    queue (the contract in ``qosbatch.policies.base``). The earliest ``Wait`` of the
    last answer stands (``inf``: wait for the next event). Both drivers, the
    simulator and the live batcher, call this, so a policy meets one set of rules.
    """
    _inf = math.inf
    while True:
        if decisions.__class__ is not list and not isinstance(decisions, list | tuple):
            raise PolicyContractError(
                f"{q.model}: decide() must return a list of decisions, got {decisions!r}"
            )
        wait = _inf
        changed = False
        for d in decisions:  # type: ignore[attr-defined]
            cls = d.__class__
            if cls is Dispatch or (cls is not Wait and isinstance(d, Dispatch)):
                dispatch(d)
                changed = True
            elif cls is Wait or isinstance(d, Wait):
                until = d.until_s
                if not until > now:
                    raise PolicyContractError(
                        f"{q.model}: Wait({until!r}) at now={now!r} is not in the future"
                    )
                if until < wait:
                    wait = until
            elif isinstance(d, Reject):
                reject(d)
                changed = True
            else:
                raise PolicyContractError(f"{q.model}: {d!r} is not a Dispatch, Reject or Wait")
        if not changed or not len(q):
            return wait
        if idle_only and not (q.idle_workers and q.free_cores):
            return _inf  # what the call would return: nothing to do, nothing to wait for
        decisions = decide(q)
