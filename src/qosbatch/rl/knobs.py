"""A deadline-aware dynamic batcher whose two knobs an outside controller turns (BCEdge).

Every ``interval_s`` of the driver's clock the policy asks its controller for a
batch size ``b`` and a concurrency ``k`` (how many of the model's workers, one
instance each, may run batches at once), handing it an observation of the queue
and what happened since the last ask. Between asks it batches by those knobs:
a batch of up to ``b`` in deadline order goes to an idle instance among the first
``k`` once ``b`` requests wait, or once waiting longer would make the most urgent
of them late; a request that cannot finish even alone is shed with the reason.

The controller is a trained agent (``rl:agent.zip``) in simulation and live, or
the training environment itself, which pauses the simulation at every ask. Pure
Python: the observation is a list of floats, the agent lives elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from qosbatch.policies.base import CompletedBatch, Decision, Dispatch, QueueView, Reject, Wait

OBSERVATION_SIZE = 7
LATE_PENALTY = 0.5  # a late or shed request costs this much utility (an on-time one earns <= 1)


@dataclass
class IntervalStats:
    """What happened since the controller last acted: the reward and the recent latency."""

    utility: float = 0.0
    on_time: int = 0
    missed: int = 0
    latency_over_budget: list[float] = field(default_factory=list)

    def served(self, latency_s: float, budget_s: float, on_time: bool) -> None:
        used = latency_s / budget_s if budget_s > 0 else 1.0
        self.latency_over_budget.append(used)
        if on_time:
            self.on_time += 1
            self.utility += 1.0 - 0.5 * min(used, 1.0)  # the metrics' utility, per request
        else:
            self.missed += 1
            self.utility -= LATE_PENALTY

    def shed(self, n: int) -> None:
        self.missed += n
        self.utility -= LATE_PENALTY * n


def to_knobs(action: Sequence[float], max_batch: int, max_instances: int) -> tuple[int, int]:
    """SAC's action in [-1, 1]^2 -> (batch size in 1..max_batch, instances in 1..max_instances).

    The batch size is spread on a log scale: linearly, b = 1 held 1/32 of the range
    and the agent of the first 20,000-step run rarely found it, though on a model
    whose batch time is linear in b it is the best setting there is.
    """

    def unit(a: float) -> float:
        return (min(max(float(a), -1.0), 1.0) + 1.0) / 2.0

    b = int(2.0 ** (unit(action[0]) * math.log2(max_batch + 1)))
    k = 1 + int(unit(action[1]) * max_instances)
    return min(max(b, 1), max_batch), min(k, max_instances)


Controller = Callable[[list[float], IntervalStats], tuple[int, int]]


class KnobPolicy:
    """See the module docstring. ``controller(observation, stats) -> (b, k)``."""

    name = "rl"

    def __init__(
        self,
        controller: Controller,
        max_batch: int,
        max_instances: int,
        interval_s: float = 0.5,
        slo_scale_s: float = 0.5,
    ) -> None:
        self.controller = controller
        self.max_batch = max_batch
        self.max_instances = max_instances
        self.interval_s = interval_s
        self.slo_scale_s = slo_scale_s  # typical budget: observations are in units of it
        self.b, self.k = 1, max_instances
        self.next_s = -math.inf
        self.stats = IntervalStats()
        self._meta: dict[int, tuple[float, float]] = {}  # dispatched id -> (arrival, deadline)

    # ---- the Policy interface -----------------------------------------------------------

    def decide(self, view: QueueView) -> list[Decision]:
        now = view.now_s
        if now >= self.next_s:
            self._ask(view, now)
        if not len(view):
            return []
        out: list[Decision] = []
        latency = view.latency
        cores = view.workers[0].cores
        alone = latency.s(1, cores)
        # The soonest a request can start: now if an instance is idle, else when one frees.
        usable = view.workers[: self.k]
        start = now if any(w.idle for w in usable) else min(w.busy_until_s for w in usable)
        hopeless = []
        for rid in view.edf(32):  # (more are shed on the driver's next ask)
            if view.deadline_s(rid) >= max(start, now) + alone:
                break
            hopeless.append(rid)
        if hopeless:
            self.stats.shed(len(hopeless))
            reason = (
                f"deadline cannot be met: predicted {alone * 1e3:.1f} ms alone on "
                f"{cores} core(s) > the time left"
            )
            return [Reject(hopeless, reason)]
        worker = next((w for w in view.workers[: self.k] if w.idle), None)
        if worker is None or view.free_cores < worker.cores:
            return []
        n = min(self.b, len(view), latency.max_batch)
        head = view.edf(n)
        first = view.deadline_s(head[0])  # (EDF: the earliest deadline of the batch)
        while n > 1 and now + latency.s(n, worker.cores) > first:
            n -= 1  # no member late by the batch's size: fewer now, the rest next
        head = head[:n]
        # Waiting for b costs the most urgent member; go while one more batch of 1 would
        # still fit behind this one (a margin for service times longer than predicted).
        must_go_s = first - latency.s(n, worker.cores) - alone
        if n >= self.b or view.draining or now >= must_go_s:
            for rid in head:
                self._meta[rid] = (view.arrival_s(rid), view.deadline_s(rid))
            out.append(Dispatch(head, worker.id, worker.cores))
            return out
        return [Wait(min(must_go_s, self.next_s))]

    def observe(self, done: CompletedBatch) -> None:
        for rid in done.requests:
            arrival, deadline = self._meta.pop(rid)
            self.stats.served(
                done.completion_s - arrival, deadline - arrival, done.completion_s <= deadline
            )

    # ---- the controller -----------------------------------------------------------------

    def _ask(self, view: QueueView, now: float) -> None:
        obs = observation(view, now, self)
        stats, self.stats = self.stats, IntervalStats()
        b, k = self.controller(obs, stats)
        self.b = min(max(int(b), 1), self.max_batch)
        self.k = min(max(int(k), 1), self.max_instances)
        if self.next_s == -math.inf:
            self.next_s = now
        while self.next_s <= now:
            self.next_s += self.interval_s


def observation(view: QueueView, now: float, p: KnobPolicy) -> list[float]:
    """The agent's view of one model, every entry of order 1 (see OBSERVATION_SIZE)."""
    b, k, stats = p.b, p.k, p.stats
    latency = view.latency
    cores = view.workers[0].cores
    capacity = p.max_batch / latency.s(p.max_batch, cores) * p.max_instances  # requests/s
    slack = (view.earliest_deadline_s() - now) / p.slo_scale_s if len(view) else 1.0
    recent = stats.latency_over_budget
    return [
        math.log1p(len(view)) / 5.0,
        view.arrival_rate_per_s / capacity,
        max(-1.0, min(slack, 4.0)),
        b / p.max_batch,
        k / p.max_instances,
        min(sum(recent) / len(recent), 4.0) if recent else 0.0,
        stats.missed / max(1, stats.missed + stats.on_time),
    ]
