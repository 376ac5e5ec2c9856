"""Where a simulation stands between events, and the events the hot loop hands off.

``qosbatch.sim.kernel.Simulation`` runs the loop over arrivals and batch completions;
everything rarer than one per request lives here, in its base class: wake-ups, a
completion on a node-wide pool of cores (every model may go), a batch's dispatch
and a rejection's bookkeeping, and the end of the run. Compiled with the kernel
(setup.py's HOT_PATH): ``_dispatch`` runs once per batch.

A policy may pause the run by answering ``PAUSE`` (the RL environment's policy does,
to hand the decision to the agent): the event's own work is done, its decision is
not. What is left of the event is kept as a callable (``_resume``) and done first by
the next ``run()``, which asks the policy again, so a paused run decides exactly
what an unpaused one would once the policy answers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from heapq import heappush

import numpy as np

from qosbatch.core.errors import UserError
from qosbatch.core.requests import RecordTable
from qosbatch.engine.queue import ModelQueue, apply_decisions
from qosbatch.policies.base import (
    Decision,
    Dispatch,
    Policy,
    PolicyContractError,
    PolicyFactory,
    Reject,
    Wait,
)
from qosbatch.sim.deployment import Deployment
from qosbatch.sim.frontend import FrontEnd, FrontEndLoad
from qosbatch.sim.ledger import Rejections, build_records
from qosbatch.sim.service import ServiceSampler
from qosbatch.workloads.trace import Trace

# Heap kinds: an arrival sorts between a completion and a wake-up (kind 1); the end of
# a run(until) last of all at its time.
_COMPLETE, _WAKE, _STOP = 0, 2, 3
_MAX_IDLE_WAKES = 10_000  # wake-ups in a row that change nothing after the last arrival
LEFT_WAITING = "left waiting by the policy when the workload ended"
# Recognised by identity. A driver that does not know it (the live batcher, or the
# simulator asking again within one decision) reads "nothing to do until an event".
PAUSE: list[Decision] = [Wait(math.inf)]


class SimState:
    """A simulation's state and its rarer events; see the module docstring.

    The arguments are ``qosbatch.sim.kernel.simulate``'s. Keep the attributes under 30
    (the trace's columns are one, the rejections one): from the 30th CPython 3.11 no
    longer keeps them inline, and every attribute read in the loop gets slower.
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
        self.trace = trace
        self.strict = strict
        deps = _in_trace_order(trace, deployments)
        n_models = len(deps)
        seeds = np.random.SeedSequence(seed).spawn(2 * n_models)
        self.queues = [
            ModelQueue(d.model, d.worker_cores(), d.cores, d.latency, rate_window_s) for d in deps
        ]
        self.policies: list[Policy] = [
            factory(np.random.default_rng(seeds[2 * i])) for i in range(n_models)
        ]
        self.samplers = [
            ServiceSampler(
                d.actual or d.latency, np.random.default_rng(seeds[2 * i + 1]), deterministic
            )
            for i, d in enumerate(deps)
        ]
        self._bind_policies()
        self.batch_of = [-1] * len(trace)
        # One entry per batch: (dispatch, completion, size, cores, worker).
        self.batches: list[tuple[float, float, int, int, int]] = []
        # One entry per Reject: (reason, time), and its requests with the entry's index.
        self.rejections = Rejections([], [], [], [])
        self.heap: list[tuple[float, int, int, int, int]] = []
        self.seq = 0
        self.wake_at = [math.inf] * n_models
        self.idle_wakes = [0] * n_models
        # A node-wide pool (None: each model owns its cores): free cores, cores held per model.
        self.node_free = node_cores
        self.held = [0] * n_models
        if node_cores is not None:
            if node_cores < 1:
                raise UserError(f"node cores must be >= 1, got {node_cores}")
            self._share()
        self.arrivals = _arrivals(trace)
        for m, q in enumerate(self.queues):
            q.draining = self.arrivals.last[m] < 0
        # The front end's load on the cores (None: free).
        self.fe_load = (
            None
            if frontend is None
            else FrontEndLoad(
                frontend,
                self.arrivals.times,
                node_cores if node_cores is not None else sum(d.cores for d in deployments),
            )
        )
        # Where the run stands between calls of run(): the next arrival, heap entries popped.
        self.next_arrival = 0
        self.popped = 0
        self.now = 0.0  # (paused: the paused event's time)
        self.wall_s = 0.0
        self._resume: Callable[[], None] | None = None  # a paused event's rest

    def _bind_policies(self) -> None:
        """A policy's methods, bound once: the hot loop would look them up per event."""
        policies = self.policies
        self.idle_only = [bool(getattr(p, "idle_only", False)) for p in policies]
        self.decides = [p.decide for p in policies]
        self.observes = [p.observe for p in policies]
        # A policy's optional admission test, asked before an arrival is queued (as live).
        self.admits: list[Callable[[ModelQueue, float, int], str] | None] = [
            getattr(p, "admit", None) for p in policies
        ]
        self.appliers = [
            (partial(self._dispatch, m, q), partial(self._reject, q))
            for m, q in enumerate(self.queues)
        ]

    @property
    def paused(self) -> bool:
        """Whether a policy paused the run (the next ``run()`` asks it again first)."""
        return self._resume is not None

    @property
    def events(self) -> int:
        """The events processed so far: arrivals, and heap entries popped."""
        return self.next_arrival + self.popped

    def _pause(self, rest: Callable[[], None], now: float) -> None:
        self._resume = rest
        self.now = now

    # ---- events ---------------------------------------------------------------------

    def _wake(self, ev: tuple[float, int, int, int, int]) -> None:
        now, _, _, m, _ = ev
        if now != self.wake_at[m]:
            return  # superseded by a later decision
        self.wake_at[m] = math.inf
        self._woken(m, now, len(self.queues[m]))

    def _woken(self, m: int, now: float, before: int) -> None:
        """A wake-up's decision, and the count of wake-ups that change nothing."""
        if self._decide(m, now):
            self._pause(partial(self._woken, m, now, before), now)
            return
        q = self.queues[m]
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
        if self.fe_load is not None:
            self.fe_load.answered(now, len(done.requests))
        self.observes[m](done)
        self._shared_decide(m, now, -1)

    def _shared_decide(self, m: int, now: float, first: int) -> None:
        """Model ``m`` decides (``first`` < 0), then the others from model ``first`` on."""
        if first < 0:
            if self._decide(m, now):
                self._pause(partial(self._shared_decide, m, now, -1), now)
                return
            first = 0
        for j in range(first, len(self.queues)):
            other = self.queues[j]
            ready = j != m and len(other) and other.idle_workers and other.free_cores
            if ready and self._decide(j, now):
                self._pause(partial(self._shared_decide, m, now, j), now)
                return

    def _share(self) -> None:
        """Each model's free cores: the pool's, up to what it may still hold."""
        free = self.node_free
        assert free is not None
        for q, held in zip(self.queues, self.held, strict=True):
            room = q.max_cores - held
            q.free_cores = room if room < free else free

    # ---- decisions ------------------------------------------------------------------

    def _decide(self, m: int, now: float) -> bool:
        """Model ``m``'s policy decides at ``now``; True: it paused the run instead."""
        q = self.queues[m]
        q.now_s = now
        decisions = self.decides[m](q)
        if decisions.__class__ is list and not decisions:
            # The common answer, nothing to do, changes nothing and waits for nothing.
            wait = math.inf
        elif decisions is PAUSE:
            return True
        else:
            wait = self._apply(m, q, decisions, now)
        wake_at = self.wake_at[m]
        if wait != wake_at and wake_at == wake_at:  # (nan: this model's wake-ups are off)
            self.wake_at[m] = wait
            if wait < math.inf:
                self.seq += 1
                heappush(self.heap, (wait, _WAKE, self.seq, m, -1))
        return False

    def _decide_later(self, m: int, now: float) -> None:
        """The rest of an arrival or completion whose decision paused: the decision."""
        if self._decide(m, now):
            self._pause(partial(self._decide_later, m, now), now)

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
        fe_load = self.fe_load
        if fe_load is None:
            done = now + self.samplers[m].sample(b, c)
        else:
            done = now + self.samplers[m].sample(b, c) * fe_load.stretch(now)
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
        rej = self.rejections
        code = len(rej.reasons)
        rej.reasons.append(reason)
        rej.times_s.append(now)
        rej.ids.extend(ids)
        rej.codes.extend([code] * len(ids))

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
        return build_records(self.trace, self.batches, self.batch_of, self.rejections)


def _in_trace_order(trace: Trace, deployments: Sequence[Deployment]) -> list[Deployment]:
    """The deployment of each of the trace's models, in its order (model codes index it)."""
    by_name = {d.model: d for d in deployments}
    if len(by_name) != len(deployments):
        raise UserError("two deployments of the same model")
    unknown = [m for m in trace.models if m not in by_name]
    if unknown:
        raise UserError(
            f"the workload has requests for model {unknown[0]!r}, which has no profile "
            f"(loaded: {', '.join(by_name) or 'none'})"
        )
    return [by_name[m] for m in trace.models]


@dataclass(frozen=True)
class Arrivals:
    """The trace's columns as lists (indexing a list is cheaper than a numpy array)."""

    times: list[float]
    codes: list[int]  # each request's model
    prios: list[int] | None
    deadline: list[float]
    last: list[int]  # each model's last request (-1: none): after it the model drains


def _arrivals(trace: Trace) -> Arrivals:
    codes: list[int] = trace.model.tolist()
    last = [-1] * len(trace.models)
    for i, m in enumerate(codes):
        last[m] = i
    prios = trace.priority.tolist() if trace.priority is not None else None
    return Arrivals(trace.time_s.tolist(), codes, prios, trace.deadline_s.tolist(), last)
