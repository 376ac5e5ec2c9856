"""The discrete-event simulator: policies driven in virtual time, one record per request.

Events are batch completions and policy wake-ups on a heap ordered by
``(time, kind, seq)``; arrivals are not pushed at all but merged from the sorted
trace, between completions (first) and wake-ups (last) at equal times, so ties
resolve the same way every run. Nothing sleeps: the clock jumps from event to
event. After every event the model's policy is asked to decide (see
``qosbatch.policies.base`` for the contract, which is checked here as it runs).

Speed is designed in, because capacity sweeps run hundreds of simulations:
arrivals stay in numpy/list columns, per-request state is a few list slots
(which batch, or which rejection), a batch is one heap entry and a few appends,
and the records are assembled with numpy at the end. Nothing is O(queue) per event.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from functools import partial
from heapq import heappop, heappush

import numpy as np

from qosbatch.core.errors import UserError
from qosbatch.core.requests import RecordTable
from qosbatch.engine.queue import ModelQueue, apply_decisions
from qosbatch.policies.base import (
    Dispatch,
    Policy,
    PolicyContractError,
    PolicyFactory,
    Reject,
)
from qosbatch.sim.deployment import Deployment, SimResult
from qosbatch.sim.frontend import FrontEnd, FrontEndLoad
from qosbatch.sim.ledger import Rejections, build_records
from qosbatch.sim.service import ServiceSampler
from qosbatch.workloads.trace import Trace

_COMPLETE, _WAKE = 0, 2  # heap kinds; an arrival sorts between them (kind 1)
_INF = math.inf
_MAX_IDLE_WAKES = 10_000  # wake-ups in a row that change nothing after the last arrival
LEFT_WAITING = "left waiting by the policy when the workload ended"
__all__ = ["LEFT_WAITING", "Deployment", "SimResult", "Simulation", "simulate"]


def simulate(
    trace: Trace,
    deployments: Sequence[Deployment],
    policy_factory: PolicyFactory,
    *,
    seed: int = 0,
    deterministic: bool = False,
    strict: bool = True,
    rate_window_s: float = 1.0,
    node_cores: int | None = None,
    frontend: FrontEnd | None = None,
) -> SimResult:
    """Run ``trace`` through one policy per model (built by ``policy_factory``).

    Deterministic for a seed. ``strict``: a broken policy contract raises
    ``PolicyContractError``; otherwise requests a policy left waiting at the end are
    recorded as rejected with ``LEFT_WAITING`` as the reason. ``node_cores``: every
    model draws its batches' cores from one pool of that many (``serve --share-cores``;
    each model still holds at most its deployment's ``cores`` at once); None: each
    model owns its deployment's cores.

    ``frontend``: the server's HTTP front end as CPU work on the same cores, which
    stretches each batch (``qosbatch.sim.frontend.FrontEndLoad`` says how); None: free.
    """
    sim = Simulation(
        trace,
        deployments,
        policy_factory,
        seed=seed,
        deterministic=deterministic,
        strict=strict,
        rate_window_s=rate_window_s,
        node_cores=node_cores,
        frontend=frontend,
    )
    sim.run()
    return sim.result()


class Simulation:
    """One simulation that can be run in pieces, as SimPy's ``Environment`` is.

    ``run(until)`` processes every event up to virtual time ``until`` (all of them by
    default) and can be called again to go on; ``step()`` processes the events of the
    next instant; ``result()`` ends the run (the requests a policy left waiting are a
    broken contract, or rejected when not ``strict``) and assembles the records. Run in
    one piece or in many, the records are the same. The arguments are ``simulate``'s.
    """

    def __init__(
        self,
        trace: Trace,
        deployments: Sequence[Deployment],
        factory: PolicyFactory,
        *,
        seed: int = 0,
        deterministic: bool = False,
        strict: bool = True,
        rate_window_s: float = 1.0,
        node_cores: int | None = None,
        frontend: FrontEnd | None = None,
    ) -> None:
        by_name = {d.model: d for d in deployments}
        if len(by_name) != len(deployments):
            raise UserError("two deployments of the same model")
        unknown = [m for m in trace.models if m not in by_name]
        if unknown:
            raise UserError(
                f"the workload has requests for model {unknown[0]!r}, which has no profile "
                f"(loaded: {', '.join(by_name) or 'none'})"
            )
        self.trace = trace
        self.strict = strict
        n_models = len(trace.models)
        seeds = np.random.SeedSequence(seed).spawn(2 * n_models)
        self.deps = [by_name[m] for m in trace.models]
        self.queues = [
            ModelQueue(d.model, d.worker_cores(), d.cores, d.latency, rate_window_s)
            for d in self.deps
        ]
        self.policies: list[Policy] = [
            factory(np.random.default_rng(seeds[2 * i])) for i in range(n_models)
        ]
        self.samplers = [
            ServiceSampler(
                d.actual or d.latency, np.random.default_rng(seeds[2 * i + 1]), deterministic
            )
            for i, d in enumerate(self.deps)
        ]
        n = len(trace)
        self.deadline = trace.deadline_s.tolist()
        self.batch_of = [-1] * n
        # One entry per batch: (dispatch, completion, size, cores, worker).
        self.batches: list[tuple[float, float, int, int, int]] = []
        # One entry per Reject: (reason, time), and its requests with the entry's index.
        self.reasons: list[str] = []
        self.reason_s: list[float] = []
        self.rejected: list[int] = []
        self.rejected_code: list[int] = []
        self.heap: list[tuple[float, int, int, int, int]] = []
        self.seq = 0
        self.wake_at = [math.inf] * n_models
        self.idle_only = [bool(getattr(p, "idle_only", False)) for p in self.policies]
        # Bound once: a policy's methods are looked up per event otherwise.
        self.decides = [p.decide for p in self.policies]
        self.observes = [p.observe for p in self.policies]
        # A policy's optional admission test, asked before an arrival is queued (as live).
        self.admits: list[Callable[[ModelQueue, float, int], str] | None] = [
            getattr(p, "admit", None) for p in self.policies
        ]
        self.appliers = [
            (partial(self._dispatch, m, q), partial(self._reject, q))
            for m, q in enumerate(self.queues)
        ]
        self.idle_wakes = [0] * n_models
        self.events = 0
        # A node-wide pool (None: each model owns its cores): free cores, cores held per model.
        self.node_free = node_cores
        self.held = [0] * n_models
        if node_cores is not None:
            if node_cores < 1:
                raise UserError(f"node cores must be >= 1, got {node_cores}")
            self._share()
        self.times: list[float] = trace.time_s.tolist()
        # The front end's load on the cores (None: free).
        self.frontend = frontend
        self.fe_load = FrontEndLoad(
            frontend or FrontEnd(0.0),
            self.times,
            node_cores if node_cores is not None else sum(d.cores for d in deployments),
        )
        # Where the run stands between calls of run(): the next arrival, heap entries popped.
        self.codes: list[int] = trace.model.tolist()
        self.prios: list[int] | None = (
            trace.priority.tolist() if trace.priority is not None else None
        )
        self.last = [-1] * n_models  # each model's last arrival: then it drains
        for i, m in enumerate(self.codes):
            self.last[m] = i
        for m, q in enumerate(self.queues):
            q.draining = self.last[m] < 0
        self.next_arrival = 0
        self.popped = 0
        self.now = 0.0
        self.wall_s = 0.0
        self._result: SimResult | None = None

    def step(self) -> bool:
        """Process the events of the next instant; False when none was left."""
        when = self.peek()
        if when == _INF:
            return False
        self.run(until=when)
        return True

    def peek(self) -> float:
        """The time of the next event (inf: none left)."""
        i, heap = self.next_arrival, self.heap
        t = self.times[i] if i < len(self.times) else _INF
        return heap[0][0] if heap and heap[0][0] < t else t

    def run(self, until: float = _INF) -> bool:
        """Process every event at or before ``until``; True while events remain after it."""
        if self._result is not None:
            raise RuntimeError("the simulation has ended: result() was called")
        start = time.perf_counter()
        heap, queues = self.heap, self.queues
        times = self.times
        codes, prios, last = self.codes, self.prios, self.last
        deadline = self.deadline
        # The hot loop: an arrival or a batch completion, then the model's policy decides.
        # What _complete and _decide do is inlined here (a call and a few attribute loads
        # per event show at a million requests); wake-ups are rare and stay a method.
        wake, apply = self._wake, self._apply
        idle_only, decides, observes = self.idle_only, self.decides, self.observes
        admits = self.admits
        wake_at = self.wake_at
        shared = self.node_free is not None
        fe = self.frontend is not None
        inf = math.inf
        n, i, popped = len(times), self.next_arrival, self.popped  # (events: arrivals, pops)
        more = True
        while True:
            if i < n:
                t = times[i]
                # Arrivals go after completions and before wake-ups at the same time.
                arrival = not heap or (h := heap[0])[0] > t or (h[0] == t and h[1] != _COMPLETE)
                if (t if arrival else h[0]) > until:
                    break
            elif heap:
                arrival = False
                if heap[0][0] > until:
                    break
            else:
                more = False
                break
            if arrival:
                m = codes[i]
                q = queues[m]
                admit = admits[m]
                prio = prios[i] if prios else 0
                q.now_s = t
                if admit is not None and (reason := admit(q, deadline[i], prio)):
                    self._refuse(i, t, reason)  # shed at admission: never queued
                    if i != last[m]:
                        i += 1
                        continue  # (the queue did not change: nothing to decide)
                else:
                    q.push(i, t, deadline[i], prio)
                if i == last[m]:
                    q.draining = True
                i += 1
                # An idle-only policy would answer [] with no worker or core free.
                if idle_only[m] and not (q.idle_workers and q.free_cores) and not q.draining:
                    continue
                now = q.now_s = t
            else:
                popped += 1
                ev = heappop(heap)
                if ev[1] != _COMPLETE:
                    wake(ev)
                    continue
                if shared:
                    self._complete_shared(ev)
                    continue
                # A batch completes: its worker and cores are free again.
                now, _, _, m, w = ev
                q = queues[m]
                done = q.finish_batch(w, now)
                if fe:
                    self.fe_load.answered(now, len(done.requests))
                observes[m](done)
            # The policy decides (as in _decide; q.now_s is set above).
            decisions = decides[m](q)
            if decisions.__class__ is list and not decisions:
                # The common answer: nothing to do and nothing to wait for, so a pending
                # wake-up is dropped (wait = inf, in _decide's terms; nan stays: wakes off).
                if wake_at[m] < inf:
                    wake_at[m] = inf
                continue
            wait = apply(m, q, decisions, now)
            when = wake_at[m]
            if wait != when and when == when:  # (nan: this model's wake-ups are off)
                wake_at[m] = wait
                if wait < inf:
                    self.seq += 1
                    heappush(heap, (wait, _WAKE, self.seq, m, -1))
        self.next_arrival, self.popped = i, popped
        self.events = i + popped
        if until < _INF:
            self.now = max(self.now, until)  # (as SimPy: the clock stands at until)
        else:  # the last arrival or completion
            last_done = max((b[1] for b in self.batches), default=0.0)
            self.now = max(self.now, times[-1] if times else 0.0, last_done)
        self.wall_s += time.perf_counter() - start
        return more

    def result(self) -> SimResult:
        """End the run (what is still waiting is settled) and assemble the records."""
        if self._result is None:
            if self.peek() < _INF:
                self.run()
            start = time.perf_counter()
            self._finish_waiting()
            policy = self.policies[0] if self.policies else None
            self._result = SimResult(
                policy=getattr(policy, "name", type(policy).__name__) if policy else "",
                records=self._records(),
                batches=len(self.batches),
                events=self.events,
                wall_s=self.wall_s + time.perf_counter() - start,
            )
        return self._result

    # ---- events ---------------------------------------------------------------------

    def _wake(self, ev: tuple[float, int, int, int, int]) -> None:
        now, _, _, m, _ = ev
        if now != self.wake_at[m]:
            return  # superseded by a later decision
        self.wake_at[m] = math.inf
        q = self.queues[m]
        before = len(q)
        self._decide(m, now)
        if not (q.draining and len(q) == before and q.idle_workers == len(q.workers)):
            self.idle_wakes[m] = 0
            return
        # Nothing left to arrive or finish, and the wake-up changed nothing.
        self.idle_wakes[m] += 1
        if self.idle_wakes[m] > _MAX_IDLE_WAKES:
            if self.strict:
                raise PolicyContractError(
                    f"{q.model}: the policy keeps waiting with {len(q)} request(s) queued, "
                    "no batch running and no arrival to come"
                )
            self.wake_at[m] = math.nan  # never equal to an event time: further wakes are dropped

    def _complete_shared(self, ev: tuple[float, int, int, int, int]) -> None:
        """A batch completes on a shared pool: every model with requests waiting may go.

        The hot loop's completion, then the completing model decides first (as there),
        then the others in model order, since the cores it gave back are theirs too.
        """
        now, _, _, m, w = ev
        q = self.queues[m]
        done = q.finish_batch(w, now)
        self.node_free += done.cores  # type: ignore[operator]
        self.held[m] -= done.cores
        self._share()  # (the pool's share replaces the free cores finish_batch gave back)
        if self.frontend is not None:
            self.fe_load.answered(now, len(done.requests))
        self.observes[m](done)
        self._decide(m, now)
        for j, other in enumerate(self.queues):
            if j != m and len(other) and other.idle_workers and other.free_cores:
                self._decide(j, now)

    def _share(self) -> None:
        """Each model's free cores: the pool's, up to what it may still hold."""
        free = self.node_free
        assert free is not None
        for q, held in zip(self.queues, self.held, strict=True):
            room = q.max_cores - held
            q.free_cores = room if room < free else free

    # ---- decisions ------------------------------------------------------------------

    def _decide(self, m: int, now: float) -> None:
        q = self.queues[m]
        q.now_s = now
        decisions = self.decides[m](q)
        if decisions.__class__ is list and not decisions:
            # The common answer, nothing to do, changes nothing and waits for nothing.
            wait = math.inf
        else:
            wait = self._apply(m, q, decisions, now)
        wake_at = self.wake_at[m]
        if wait != wake_at and wake_at == wake_at:  # (nan: this model's wake-ups are off)
            self.wake_at[m] = wait
            if wait < math.inf:
                self.seq += 1
                heappush(self.heap, (wait, _WAKE, self.seq, m, -1))

    def _apply(self, m: int, q: ModelQueue, decisions: object, now: float) -> float:
        """Apply ``decisions``, calling decide again while they change anything; the wait."""
        dispatch, reject = self.appliers[m]  # (bound once: they read now from q.now_s)
        return apply_decisions(
            q, decisions, now, self.decides[m], dispatch, reject, self.idle_only[m]
        )

    def _dispatch(self, m: int, q: ModelQueue, d: Dispatch) -> None:
        now = q.now_s
        ids = d.requests
        w, c = d.worker, d.cores
        q.start_batch(ids, w, c, now)
        b = len(ids)
        if self.frontend is None:
            done = now + self.samplers[m].sample(b, c)
        else:
            done = now + self.samplers[m].sample(b, c) * self.fe_load.stretch(now)
        if self.node_free is not None:
            self.node_free -= c
            self.held[m] += c
            self._share()
        batches = self.batches
        bid = len(batches)
        batches.append((now, done, b, c, w))
        if b == 1:
            self.batch_of[ids[0]] = bid
        else:
            batch_of = self.batch_of
            for r in ids:
                batch_of[r] = bid
        self.seq = seq = self.seq + 1
        heappush(self.heap, (done, _COMPLETE, seq, m, w))

    def _reject(self, q: ModelQueue, d: Reject) -> None:
        self._record_rejection(q.reject(d), q.now_s, str(d.reason) or "rejected")

    def _refuse(self, i: int, now: float, reason: str) -> None:
        """Request ``i`` shed at admission: never queued, rejected as it arrives."""
        self._record_rejection((i,), now, reason)

    def _record_rejection(self, ids: Sequence[int], now: float, reason: str) -> None:
        code = len(self.reasons)
        self.reasons.append(reason)
        self.reason_s.append(now)
        self.rejected.extend(ids)
        self.rejected_code.extend([code] * len(ids))

    # ---- the end --------------------------------------------------------------------

    def _finish_waiting(self) -> None:
        for q in self.queues:
            if not len(q):
                continue
            left = q.fifo(len(q))
            if self.strict:
                raise PolicyContractError(
                    f"{q.model}: {len(left)} request(s) neither dispatched nor rejected when the "
                    f"simulation ended (first: request {left[0]})"
                )
            q.now_s = max(q.now_s, self.trace.duration_s)
            self._reject(q, Reject(left, LEFT_WAITING))

    def _records(self) -> RecordTable:
        return build_records(
            self.trace,
            self.batches,
            self.batch_of,
            Rejections(self.rejected, self.rejected_code, self.reasons, self.reason_s),
        )
