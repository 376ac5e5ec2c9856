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
This module holds the loop over arrivals and completions; the state it keeps
between calls and the rarer events are in ``qosbatch.sim.state``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from functools import partial
from heapq import heapify, heappop, heappush

from qosbatch.policies.base import PolicyFactory
from qosbatch.sim.deployment import Deployment, SimResult
from qosbatch.sim.frontend import FrontEnd
from qosbatch.sim.state import _COMPLETE, _STOP, _WAKE, LEFT_WAITING, PAUSE, SimState
from qosbatch.workloads.trace import Trace

_INF = math.inf
__all__ = ["LEFT_WAITING", "PAUSE", "Deployment", "SimResult", "Simulation", "simulate"]


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


class Simulation(SimState):
    """One simulation that can be run in pieces, as SimPy's ``Environment`` is.

    ``run(until)`` processes every event up to virtual time ``until`` (all of them by
    default) and can be called again to go on; ``step()`` processes the events of the
    next instant; ``result()`` ends the run (the requests a policy left waiting are a
    broken contract, or rejected when not ``strict``) and assembles the records. Run in
    one piece or in many, the records are the same. The arguments are ``simulate``'s.

    A policy that answers ``PAUSE`` stops ``run`` (and ``step``) at that event, before
    its decision: ``paused`` is then True and ``now`` the event's time, and the next
    call asks the policy again before anything else happens (the RL environment hands
    the agent's action over this way).
    """

    _result: SimResult | None = None

    def step(self) -> bool:
        """Process the events of the next instant; False when none was left."""
        when = self.peek()
        if when == _INF:
            return False
        self.run(until=when)
        return True

    def peek(self) -> float:
        """The time of the next event (inf: none left); a paused event's, when paused."""
        if self.paused:
            return self.now
        i, heap, times = self.next_arrival, self.heap, self.arrivals.times
        t = times[i] if i < len(times) else _INF
        return heap[0][0] if heap and heap[0][0] < t else t

    def run(self, until: float = _INF) -> bool:
        """Process every event at or before ``until``; True while events remain after it.

        True also when a policy paused the run (``paused``): call it again to go on.
        """
        if self._result is not None:
            raise RuntimeError("the simulation has ended: result() was called")
        start = time.perf_counter()
        # (self.paused, not self._resume: mypyc would take the attribute for None after
        # the assignment, whatever the calls in between set it to)
        rest = self._resume
        if rest is not None:  # the paused event's decision first
            self._resume = None
            rest()
        if not self.paused:
            if until < _INF:  # (a heap entry: the loop itself never compares with until)
                self.seq += 1
                heappush(self.heap, (until, _STOP, self.seq, -1, -1))
            self._loop()
            if self.paused and until < _INF:  # paused before the stop
                self.heap[:] = [ev for ev in self.heap if ev[1] != _STOP]
                heapify(self.heap)
        if not self.paused:  # (paused: now is the paused event's time)
            self._set_clock(until)
        self.wall_s += time.perf_counter() - start
        return self.peek() < _INF

    def _set_clock(self, until: float) -> None:
        """As SimPy's, the clock stands at ``until``; at the last event after a whole run."""
        if until < _INF:
            self.now = max(self.now, until)
        else:
            times = self.arrivals.times
            last_done = max((b[1] for b in self.batches), default=0.0)
            self.now = max(self.now, times[-1] if times else 0.0, last_done)

    def result(self) -> SimResult:
        """End the run (what is still waiting is settled) and assemble the records."""
        if self._result is None:
            if not self.paused and self.peek() < _INF:
                self.run()
            if self.paused:  # (the paused policy must be answered first)
                raise RuntimeError(
                    f"the policy paused the run at t={self.now}: run() on before result()"
                )
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

    def _loop(self) -> None:
        """The hot loop: an arrival or a batch completion, then the model's policy decides.

        _decide is inlined (a call and a few attribute loads per event show at a million
        requests); rarer events stay methods. Its state is in attributes between calls.
        It ends at the end, at a pause, or at the stop entry ``run(until)`` pushed.
        """
        heap, queues, arrivals = self.heap, self.queues, self.arrivals
        times, codes, prios = arrivals.times, arrivals.codes, arrivals.prios
        last, deadline = arrivals.last, arrivals.deadline
        wake, apply, pause = self._wake, self._apply, PAUSE
        idle_only, decides, observes = self.idle_only, self.decides, self.observes
        admits, wake_at = self.admits, self.wake_at
        shared, fe_load, inf = self.node_free is not None, self.fe_load, math.inf
        n, i, popped = len(times), self.next_arrival, self.popped  # (events: arrivals, pops)
        while True:
            if i < n:
                t = times[i]
                # Arrivals go after completions and before wake-ups at the same time.
                arrival = not heap or (h := heap[0])[0] > t or (h[0] == t and h[1] != _COMPLETE)
            elif heap:
                arrival = False
            else:
                break  # (the end)
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
                if ev[1] != _COMPLETE or shared:  # a wake-up, or a completion on a shared pool
                    if ev[1] == _STOP:
                        popped -= 1  # (not an event)
                        break
                    (wake if ev[1] != _COMPLETE else self._complete_shared)(ev)
                    if self._resume is not None:
                        break  # (a policy paused the run)
                    continue
                # A batch completes: its worker and cores are free again.
                now, _, _, m, w = ev
                q = queues[m]
                done = q.finish_batch(w, now)
                if fe_load is not None:
                    fe_load.answered(now, len(done.requests))
                observes[m](done)
            decisions = decides[m](q)  # (q.now_s is set above)
            if decisions.__class__ is list and not decisions:
                # The common answer: nothing to do and nothing to wait for, so a pending
                # wake-up is dropped (wait = inf, in _decide's terms; nan stays: wakes off).
                if wake_at[m] < inf:
                    wake_at[m] = inf
                continue
            if decisions is pause:
                self._pause(partial(self._decide_later, m, now), now)
                break
            wait = apply(m, q, decisions, now)
            when = wake_at[m]
            if wait != when and when == when:  # (nan: this model's wake-ups are off)
                wake_at[m] = wait
                if wait < inf:
                    self.seq += 1
                    heappush(heap, (wait, _WAKE, self.seq, m, -1))
        self.next_arrival, self.popped = i, popped
