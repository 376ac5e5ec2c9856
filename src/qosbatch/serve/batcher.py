"""The live driver: one model's Policy in real time, over worker processes.

The simulator drives a policy in virtual time; this drives the very same
object with a real clock. Arrivals go into the same ``ModelQueue``; decisions
are applied by the same ``apply_decisions``; batches run on worker processes
and report back through ``observe``. The batcher's task sleeps until the
policy's ``Wait`` or the next arrival or completion, whichever comes first: an
``asyncio.Event`` plus one ``call_at`` timer, never a polling tick.

Every request submitted ends in exactly one ``Answer``: a result (on time or
late), a rejection with a reason (shed by the policy, a full queue, shutdown),
or an error with a reason (the model raised, its worker died). A policy that
breaks its contract fails the requests it held with an error, not the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from qosbatch.engine.queue import ModelQueue, apply_decisions, split_evenly
from qosbatch.latency.table import LatencyTable
from qosbatch.policies.base import CompletedBatch, Dispatch, Policy, Reject
from qosbatch.serve.core_pool import CorePool
from qosbatch.serve.telemetry import Telemetry
from qosbatch.serve.worker import BatchOutput, WorkerHandle

log = logging.getLogger("qosbatch.serve")

RESTART_ATTEMPTS = 3


@dataclass(frozen=True)
class Answer:
    """How one request ended; the HTTP layer turns it into a response."""

    status: int  # 200 result, 429 shed, 503 not accepted now, 500 failed
    outcome: str  # on_time, late, rejected, error
    output: np.ndarray | None = None
    reason: str = ""
    queued_s: float = 0.0  # arrival to dispatch
    latency_s: float = 0.0  # arrival to answer
    batch_size: int = 0


@dataclass
class _Waiting:
    tensor: np.ndarray
    future: asyncio.Future[Answer]
    arrival_s: float
    deadline_s: float


class Batcher:
    """Drives ``policy`` for one model over ``workers`` sharing the CPUs ``cpus``."""

    def __init__(
        self,
        model: str,
        policy: Policy,
        latency: LatencyTable,
        workers: list[WorkerHandle],
        cpus: tuple[int, ...],
        telemetry: Telemetry,
        *,
        max_queue: int = 10_000,
        clock: Callable[[], float] | None = None,
        pool: CorePool | None = None,
    ) -> None:
        if not workers or len(workers) > len(cpus):
            raise ValueError(f"{model}: needs 1 to {len(cpus)} workers, got {len(workers)}")
        self.model = model
        self.policy = policy
        self.workers = workers
        self.cpus = cpus
        self.max_queue = max_queue
        nominal = split_evenly(len(cpus), len(workers))
        # The CPUs its batches draw from: its own, or the node's, shared with other models.
        self.pool = pool if pool is not None else CorePool(cpus)
        if not set(cpus) <= set(self.pool.cpus):
            raise ValueError(f"{model}: CPUs {cpus} are not all in the pool {self.pool.cpus}")
        self.queue = ModelQueue(model, nominal, len(cpus), latency)
        self._clock = clock
        self._admit: Callable[[ModelQueue, float, int], str] | None = getattr(policy, "admit", None)
        self._ids = itertools.count()
        self._waiting: dict[int, _Waiting] = {}
        self._dead: set[int] = set()
        self._wake = asyncio.Event()
        self.pool.listen(self._wake.set)
        self._task: asyncio.Task[None] | None = None
        self._restarts: set[asyncio.Task[None]] = set()
        self._closed = False
        self.draining = False
        self.broken = ""  # why the model can no longer serve, once no worker can start
        for i, w in enumerate(workers):
            w.on_exit = partial(self._worker_died, i)
        self.telemetry = telemetry
        self.series = telemetry.series(model, len(workers))
        for gauge, c in zip(self.series.worker_cores, nominal, strict=True):
            gauge.set(c)

    # ---- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Start the workers not yet started (concurrently), then the batching task."""
        await asyncio.gather(*(w.start() for w in self.workers if w.io is None))
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.model)

    @property
    def ready(self) -> bool:
        return self._task is not None and not self.broken and len(self._dead) < len(self.workers)

    @property
    def idle(self) -> bool:
        """Nothing waiting and nothing running: what a drain waits for."""
        return not self._waiting and not any(self._holds(w) for w in range(len(self.workers)))

    def drain(self) -> None:
        """Stop waiting for arrivals that will not come (the policy sees ``draining``)."""
        self.draining = True
        self._wake.set()

    async def stop(self) -> None:
        self._closed = True
        self._wake.set()
        for task in [self._task, *self._restarts]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._fail_all(503, "rejected", "the server stopped before this request ran")
        await asyncio.gather(*(w.stop() for w in self.workers))

    def now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    # ---- arrivals -------------------------------------------------------------------

    def submit(
        self, tensor: np.ndarray, budget_s: float, priority: int = 0
    ) -> asyncio.Future[Answer]:
        """Queue one request; the future ends with its Answer, whatever happens."""
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        if self.draining or self._closed:
            self._answer(future, Answer(503, "rejected", reason="the server is shutting down"))
        elif self.broken:
            self._answer(future, Answer(503, "rejected", reason=self.broken))
        elif len(self.queue) >= self.max_queue:
            self._answer(
                future,
                Answer(503, "rejected", reason=f"queue full: {len(self.queue)} requests waiting"),
            )
        else:
            now = self.now()
            rid = next(self._ids)
            self._waiting[rid] = _Waiting(tensor, future, now, now + budget_s)
            self.queue.push(rid, now, now + budget_s, priority)
            self.series.queue_depth.set(len(self.queue))
            self._wake.set()
        return future

    def admit(self, budget_s: float, priority: int = 0) -> str:
        """'' to take a request with this budget, or why it is shed before it is even read.

        Asks the policy's optional ``admit`` (``qosbatch.policies.base``) against the
        queue as it is now. A policy without one takes everything here and sheds, if
        at all, in ``decide``. A policy that fails here takes the request.
        """
        admit = self._admit
        if admit is None or self.draining or self._closed or self.broken:
            return ""  # (submit answers those)
        q = self.queue
        now = q.now_s = self.now()
        self._sync_free_cores()
        try:
            reason = admit(q, now + budget_s, priority)
        except Exception:
            log.exception("%s: the policy's admit failed; taking the request", self.model)
            return ""
        if reason:
            self.series.outcome["rejected"].inc()
        return reason

    # ---- the loop -------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closed:
            self._wake.clear()
            wait_s = self._decide()
            timer = None
            if wait_s < math.inf:
                timer = loop.call_at(loop.time() + max(0.0, wait_s - self.now()), self._wake.set)
            await self._wake.wait()
            if timer is not None:
                timer.cancel()

    def _decide(self) -> float:
        q = self.queue
        if not len(q):
            return math.inf
        now = self.now()
        q.now_s = now
        q.draining = self.draining
        self._sync_free_cores()
        try:
            decisions = self.policy.decide(q)
            if decisions.__class__ is list and not decisions:
                return math.inf
            return apply_decisions(
                q,
                decisions,
                now,
                self.policy.decide,
                partial(self._dispatch, now=now),
                self._reject,
                bool(getattr(self.policy, "idle_only", False)),
            )
        except Exception as exc:  # a broken policy fails its requests, not the server
            log.exception("%s: the policy failed", self.model)
            self._fail_all(500, "error", f"policy {self.policy.name} failed: {exc}")
            return math.inf
        finally:
            self.series.queue_depth.set(len(q))

    def _dispatch(self, d: Dispatch, now: float) -> None:
        q = self.queue
        ids = list(d.requests)
        q.check_dispatch(d.worker, d.cores, len(ids))
        if d.worker in self._dead:
            raise RuntimeError(f"worker {d.worker} is restarting")  # (it is never idle then)
        q.take(ids)
        members = [self._waiting.pop(rid) for rid in ids]
        cpus = self.pool.take((self.model, d.worker), d.cores)
        worker = q.workers[d.worker]
        worker.idle = False
        worker.busy_until_s = now + q.latency.s(len(ids), d.cores)
        worker.running_cores = d.cores
        q.free_cores -= d.cores
        q.idle_workers -= 1
        self.series.batch_size.observe(len(ids))
        self.series.worker_cores[d.worker].set(d.cores)
        try:
            future = self.workers[d.worker].run([m.tensor for m in members], cpus)
        except Exception as exc:  # (the segment could not grow, the pipe broke): fail the batch
            future = asyncio.get_running_loop().create_future()
            future.set_exception(exc)
        future.add_done_callback(partial(self._completed, d.worker, ids, members, now))

    def _reject(self, d: Reject) -> None:
        ids = list(d.requests)
        if not ids:
            raise ValueError("a Reject naming no request")
        self.queue.take(ids)
        for rid in ids:
            self._finish(rid, Answer(429, "rejected", reason=str(d.reason) or "rejected"))

    def _completed(
        self,
        w: int,
        ids: list[int],
        members: list[_Waiting],
        dispatch_s: float,
        future: asyncio.Future[BatchOutput],
    ) -> None:
        now = self.now()
        q = self.queue
        worker = q.workers[w]
        cores = worker.running_cores
        self.series.core_seconds.inc(cores * (now - dispatch_s))
        worker.running_cores = 0
        worker.busy_until_s = now
        self.pool.give((self.model, w))  # (wakes this batcher and any sharing the pool)
        self._sync_free_cores()
        if w not in self._dead:  # a dead worker turns idle when it is back
            worker.idle = True
            q.idle_workers += 1
        self.series.worker_cores[w].set(q.workers[w].cores)
        error = future.exception() if not future.cancelled() else RuntimeError("cancelled")
        if error is not None:
            for m in members:
                self._answer(m.future, Answer(500, "error", reason=str(error)), m.arrival_s, now)
        else:
            output = future.result().output
            late = 0
            offset = 0
            for m in members:
                k = m.tensor.shape[0]
                on_time = now <= m.deadline_s
                late += not on_time
                answer = Answer(
                    200,
                    "on_time" if on_time else "late",
                    output[offset : offset + k],
                    queued_s=dispatch_s - m.arrival_s,
                    latency_s=now - m.arrival_s,
                    batch_size=len(members),
                )
                self._answer(m.future, answer, m.arrival_s, now)
                offset += k
            q.now_s = now
            self.policy.observe(CompletedBatch(self.model, w, cores, ids, dispatch_s, now, late))
        self._wake.set()

    # ---- faults ---------------------------------------------------------------------

    def _worker_died(self, w: int, handle: WorkerHandle, cause: str) -> None:
        if self._closed:
            return
        log.warning("%s: %s %s; restarting it", self.model, handle.label, cause)
        worker = self.queue.workers[w]
        if worker.idle:
            worker.idle = False
            self.queue.idle_workers -= 1
        self._dead.add(w)
        self.series.restarts.inc()
        task = asyncio.get_running_loop().create_task(self._restart(w, handle))
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def _restart(self, w: int, handle: WorkerHandle) -> None:
        for attempt in range(1, RESTART_ATTEMPTS + 1):
            try:
                await handle.start()
                break
            except Exception as exc:
                log.error("%s: restart %d of %s failed: %s", self.model, attempt, handle.label, exc)
                await asyncio.sleep(0.5 * attempt)
        else:
            if len(self._dead) == len(self.workers):
                self.broken = f"{self.model}: no worker could be restarted"
                self._fail_all(503, "rejected", self.broken)
            return
        self._dead.discard(w)
        worker = self.queue.workers[w]
        if not self._holds(w):
            worker.idle = True
            self.queue.idle_workers += 1
        log.info("%s: %s is back (pid %s)", self.model, handle.label, handle.pid)
        self._wake.set()

    def _holds(self, w: int) -> bool:
        return self.pool.holds((self.model, w))

    def _running_cores(self) -> int:
        return sum(worker.running_cores for worker in self.queue.workers)

    def _sync_free_cores(self) -> None:
        """The queue's free cores: the pool's, within what this model may hold at once."""
        q = self.queue
        q.free_cores = min(self.pool.free, q.max_cores - self._running_cores())

    # ---- answers --------------------------------------------------------------------

    def _finish(self, rid: int, answer: Answer) -> None:
        m = self._waiting.pop(rid)
        self._answer(m.future, answer, m.arrival_s, self.now())

    def _fail_all(self, status: int, outcome: str, reason: str) -> None:
        q = self.queue
        for rid in q.fifo(len(q)):
            q.take([rid])
            self._finish(rid, Answer(status, outcome, reason=reason))

    def _answer(
        self,
        future: asyncio.Future[Answer],
        answer: Answer,
        arrival_s: float | None = None,
        now: float | None = None,
    ) -> None:
        self.series.outcome[answer.outcome].inc()
        if answer.status == 200 and arrival_s is not None and now is not None:
            self.series.latency.observe(now - arrival_s)
        if not future.done():  # (a client that hung up cancelled it)
            future.set_result(answer)
