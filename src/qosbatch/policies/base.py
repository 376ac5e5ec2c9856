"""The one Policy interface: what a policy sees, what it may decide, what it is told back.

A driver (the simulator in virtual time, the live server in real time) owns the
queue of one model and its workers. Whenever something changes (an arrival, a
batch completing, a wait expiring, or the policy's own last decisions) it calls
``policy.decide(view)`` and applies the decisions in order:

- ``Dispatch(requests, worker, cores)``: run these waiting requests as one batch
  on this idle worker with this many cores (in-place vertical scaling: the cores
  are chosen per batch, within ``view.free_cores``).
- ``Reject(requests, reason)``: answer them at once with this reason (shedding).
  Never a silent drop: every request ends dispatched or rejected.
- ``Wait(until_s)``: call me again at ``until_s`` at the latest. The driver also
  calls on every arrival and completion before that, so there is no polling loop
  and no fixed tick.

``decide`` returns a list (possibly empty) of decisions. If it dispatched or
rejected anything, the driver calls it again at once with the updated view, until
a call changes nothing; the last call's ``Wait`` (or its absence: wait for the
next event) stands. A policy never reads the wall clock, never sleeps and never
does I/O: ``now`` is ``view.now_s``, and randomness comes from the numpy
Generator its factory receives. The same object runs in the simulator and the server.

After each batch the driver calls ``policy.observe(done)`` with what happened,
so a policy can correct its latency model online.

A policy may set ``idle_only = True`` to promise that it never decides anything
while no worker is idle or no core is free (it would return an empty list).
Drivers may then skip those calls; nothing else changes.

A policy may also define ``admit(view, deadline_s, priority) -> str``: both drivers
ask it when a request arrives, before it is queued ('' takes it; any other string
rejects it at once with that reason, as a ``Reject`` would). The live server asks
it from the request's JSON header, before the tensor's bytes are read, so that
shedding under overload costs the front end almost nothing. It must not change
the view, and it decides from the view alone, like ``decide``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from qosbatch.core.errors import UserError
from qosbatch.core.requests import Request
from qosbatch.latency.table import LatencyTable


@dataclass(slots=True)
class Dispatch:  # plain slotted records, not frozen: one is built per batch, and that shows
    """Run ``requests`` (ids of waiting requests) as one batch on ``worker`` with ``cores``."""

    requests: Sequence[int]
    worker: int
    cores: int


@dataclass(slots=True)
class Reject:
    """Answer ``requests`` (ids of waiting requests) at once with ``reason``."""

    requests: Sequence[int]
    reason: str


@dataclass(slots=True)
class Wait:
    """Call decide again at ``until_s`` (> now) at the latest; arrivals wake it earlier."""

    until_s: float


Decision = Dispatch | Reject | Wait


@dataclass(slots=True)
class CompletedBatch:
    """Feedback after a batch: what ran, how long it took, how many members were late."""

    model: str
    worker: int
    cores: int
    requests: Sequence[int]
    dispatch_s: float
    completion_s: float
    late: int  # members that finished after their deadline

    @property
    def size(self) -> int:
        return len(self.requests)

    @property
    def service_s(self) -> float:
        return self.completion_s - self.dispatch_s


class WorkerView(Protocol):
    """One worker (a model replica) of the model, as the policy sees it."""

    @property
    def id(self) -> int: ...
    @property
    def cores(self) -> int: ...  # nominal cores: what a fixed-size policy dispatches with
    @property
    def idle(self) -> bool: ...
    @property
    def busy_until_s(self) -> float: ...  # predicted end of its batch (now_s when idle)
    @property
    def running_cores(self) -> int: ...  # cores its current batch holds (0 when idle)


class QueueView(Protocol):
    """Read-only view of one model's waiting requests, workers, cores and latency model.

    Request accessors work on ids so that built-in policies never build a Python
    object per request; ``requests()`` gives full ``Request`` objects for
    convenience (slower: meant for user policies and tests).
    """

    @property
    def model(self) -> str: ...
    @property
    def now_s(self) -> float: ...
    @property
    def draining(self) -> bool: ...  # no more arrivals will come: do not wait for them
    @property
    def max_cores(self) -> int: ...  # cores this model's batches may hold at once, in total
    @property
    def free_cores(self) -> int: ...  # max_cores minus those held by running batches
    @property
    def idle_workers(self) -> int: ...  # how many workers are idle
    @property
    def workers(self) -> Sequence[WorkerView]: ...
    @property
    def latency(self) -> LatencyTable: ...  # s(b, c) in seconds and its spread
    @property
    def arrival_rate_per_s(self) -> float: ...  # recent arrival rate (exponentially weighted)

    def __len__(self) -> int: ...
    def idle_worker(self) -> WorkerView | None: ...  # the lowest-numbered idle worker
    def oldest_arrival_s(self) -> float: ...  # inf when empty
    def earliest_deadline_s(self) -> float: ...  # of the EDF head; inf when empty
    def fifo(self, k: int) -> list[int]: ...  # ids of the k oldest, oldest first
    def edf(self, k: int) -> list[int]: ...  # ids of the first k by (priority, deadline)
    def arrival_s(self, request_id: int) -> float: ...
    def deadline_s(self, request_id: int) -> float: ...
    def priority(self, request_id: int) -> int: ...
    def requests(self) -> list[Request]: ...  # every waiting request, oldest first


LOWEST_RANK = 1 << 31  # the EDF rank of priority 0, Triton's default (lowest) level


def priority_rank(priority: int) -> int:
    """Sort key of a priority level: 1 first, then 2, ...; 0 (the default) last.

    Part of the contract: ``QueueView.edf`` orders by (rank, deadline), and a policy
    that reasons about EDF order (``slo``'s admission) must rank the same way.
    """
    return priority if priority > 0 else LOWEST_RANK


@runtime_checkable
class Policy(Protocol):
    """Decides what to run, when, on how many cores; pure, clock-free, I/O-free."""

    name: str

    def decide(self, view: QueueView) -> list[Decision]: ...

    def observe(self, done: CompletedBatch) -> None: ...


# A factory builds one policy per model from a seeded Generator (its only randomness), for
# one run: a policy that schedules all models together returns one object to every call
# (``serves_all_models``), so a new run needs a new factory (``PolicySpec.factory()``).
PolicyFactory = Callable[[np.random.Generator], Policy]


class PolicyContractError(UserError):
    """A policy broke the contract above (dispatched a request twice, waited in the past...)."""
