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
raises or breaks its contract fails only the requests its faulty decision named
(500, with the cause), never the server: the model goes on under ``dynamic``, the
fallback, and ``qosbatch_policy_faults_total`` counts the fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
from collections.abc import Callable
from functools import partial

import numpy as np

from qosbatch.engine.queue import ModelQueue, apply_decisions, split_evenly
from qosbatch.latency.table import LatencyTable
from qosbatch.policies.base import Decision, Dispatch, Policy, Reject
from qosbatch.policies.dynamic import DynamicPolicy
from qosbatch.serve.answer import Answer, Waiting
from qosbatch.serve.core_pool import CorePool
from qosbatch.serve.records import RecordWriter
from qosbatch.serve.telemetry import Telemetry
from qosbatch.serve.worker import BatchOutput
from qosbatch.serve.worker_protocol import Worker

log = logging.getLogger("qosbatch.serve")

RESTART_ATTEMPTS = 3


class Batcher:
    """Drives ``policy`` for one model over ``workers`` sharing the CPUs ``cpus``."""

    def __init__(
        self,
        model: str,
        policy: Policy,
        latency: LatencyTable,
        workers: list[Worker],
        cpus: tuple[int, ...],
        telemetry: Telemetry,
        *,
        max_queue: int = 10_000,
        clock: Callable[[], float] | None = None,
        pool: CorePool | None = None,
        records: RecordWriter | None = None,
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
        self.records = records  # one line per answered request (None: not kept)
        self._admit: Callable[[ModelQueue, float, int], str] | None = getattr(policy, "admit", None)
        self._ids = itertools.count()
        self._waiting: dict[int, Waiting] = {}
        self._dead: set[int] = set()
        self._wake = asyncio.Event()
        self.pool.listen(self._wake.set)
        self._applying: Decision | None = None  # the decision being applied, for a fault
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
        now = self.now()
        member = Waiting(tensor, future, now, now + budget_s, priority)
        if self.draining or self._closed:
            self._answer(member, Answer(503, "rejected", reason="the server is shutting down"), now)
        elif self.broken:
            self._answer(member, Answer(503, "rejected", reason=self.broken), now)
        elif len(self.queue) >= self.max_queue:
            reason = f"queue full: {len(self.queue)} requests waiting"
            self._answer(member, Answer(503, "rejected", reason=reason), now)
        else:
            rid = next(self._ids)
            self._waiting[rid] = member
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
            if self.records is not None:
                self.records.write(
                    self.model, now, budget_s, priority, "rejected", 429, now, reason
                )
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
        policy = self.policy
        try:
            decisions = policy.decide(q)
            if decisions.__class__ is list and not decisions:
                return math.inf
            return apply_decisions(
                q,
                decisions,
                now,
                policy.decide,
                partial(self._dispatch, now=now),
                self._reject,
                bool(getattr(policy, "idle_only", False)),
            )
        except Exception as exc:  # a broken policy fails its requests, not the server
            self._policy_fault(exc)
            return now  # decide again at once, with the fallback
        finally:
            self._applying = None
            self.series.queue_depth.set(len(q))

    def _dispatch(self, d: Dispatch, now: float) -> None:
        self._applying = d
        q = self.queue
        ids = d.requests
        q.start_batch(ids, d.worker, d.cores, now)  # (checks the contract before any change)
        self._applying = None
        members = [self._waiting.pop(rid) for rid in ids]
        cpus = self.pool.take((self.model, d.worker), d.cores)
        self.series.batch_size.observe(len(ids))
        self.series.worker_cores[d.worker].set(d.cores)
        try:
            future = self.workers[d.worker].run([m.tensor for m in members], cpus)
        except Exception as exc:  # (the segment could not grow, the pipe broke): fail the batch
            future = asyncio.get_running_loop().create_future()
            future.set_exception(exc)
        future.add_done_callback(partial(self._completed, d.worker, members))

    def _reject(self, d: Reject) -> None:
        self._applying = d
        ids = self.queue.reject(d)
        self._applying = None
        for rid in ids:
            self._finish(rid, Answer(429, "rejected", reason=str(d.reason) or "rejected"))

    def _completed(
        self, w: int, members: list[Waiting], future: asyncio.Future[BatchOutput]
    ) -> None:
        now = self.now()
        q = self.queue
        # A dead worker turns idle when it is back (_restart), not now.
        done = q.finish_batch(w, now, back=w not in self._dead)
        self.series.core_seconds.inc(done.cores * (now - done.dispatch_s))
        self.pool.give((self.model, w))  # (wakes this batcher and any sharing the pool)
        self._sync_free_cores()
        self.series.worker_cores[w].set(q.workers[w].cores)
        error = future.exception() if not future.cancelled() else RuntimeError("cancelled")
        if error is not None:
            for m in members:
                self._answer(m, Answer(500, "error", reason=str(error)), now, done.cores, w)
        else:
            output = future.result().output
            offset = 0
            for m in members:
                k = m.tensor.shape[0]
                answer = Answer(
                    200,
                    "on_time" if now <= m.deadline_s else "late",
                    output[offset : offset + k],
                    queued_s=done.dispatch_s - m.arrival_s,
                    latency_s=now - m.arrival_s,
                    batch_size=len(members),
                )
                self._answer(m, answer, now, done.cores, w)
                offset += k
            try:
                self.policy.observe(done)
            except Exception as exc:
                self._policy_fault(exc)
        self._wake.set()

    def _policy_fault(self, exc: Exception) -> None:
        """The policy raised or broke its contract: answer what it named, then fall back.

        The requests the faulty decision named (still waiting: the queue's checks run
        before any change) are answered 500 with the cause; the rest wait on, served by
        ``dynamic`` from now on, so that one bad policy never strands a request or stops
        the model.
        """
        policy = self.policy
        log.error(
            "%s: policy %s failed; falling back to dynamic", self.model, policy.name, exc_info=exc
        )
        self.series.policy_faults.labels(self.model, policy.name).inc()
        reason = f"policy {policy.name} failed: {exc}"
        d = self._applying  # (cleared by _decide once the fault is handled)
        q = self.queue
        waiting = self._waiting  # (requests the decision named that are still queued)
        named = [] if d is None else [r for r in dict.fromkeys(d.requests) if r in waiting]
        if named:
            q.take(named)
            for rid in named:
                self._finish(rid, Answer(500, "error", reason=reason))
        self.policy = DynamicPolicy()
        self._admit = None
        self._wake.set()

    # ---- faults ---------------------------------------------------------------------

    def _worker_died(self, w: int, handle: Worker, cause: str) -> None:
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

    async def _restart(self, w: int, handle: Worker) -> None:
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
        self._answer(self._waiting.pop(rid), answer, self.now())

    def _fail_all(self, status: int, outcome: str, reason: str) -> None:
        q = self.queue
        ids = q.fifo(len(q))
        q.take(ids)
        for rid in ids:
            self._finish(rid, Answer(status, outcome, reason=reason))

    def _answer(
        self, m: Waiting, answer: Answer, now: float, cores: int = 0, worker: int = -1
    ) -> None:
        self.series.outcome[answer.outcome].inc()
        if answer.status == 200:
            self.series.latency.observe(now - m.arrival_s)
        if self.records is not None:
            ran = answer.batch_size > 0 or cores > 0
            self.records.write(
                self.model,
                m.arrival_s,
                m.deadline_s - m.arrival_s,
                m.priority,
                answer.outcome,
                answer.status,
                now,
                answer.reason,
                m.arrival_s + answer.queued_s if answer.batch_size else math.nan,
                answer.batch_size,
                cores if ran else 0,
                worker if ran else -1,
            )
        if not m.future.done():  # (a client that hung up cancelled it)
            m.future.set_result(answer)
