"""A deadline-aware dynamic batcher whose knobs an outside controller turns (BCEdge).

Every ``interval_s`` of the driver's clock the policy asks its controller, once
for all the models it schedules, for each model's batch size ``b`` and
concurrency ``k`` (how many of the model's workers, one instance each, may run
batches at once; they split the model's cores, so ``k = 1`` runs each batch on
all of them and ``k = instances`` on one each), handing it one observation per
model of its queue and of what happened since the last ask. Between asks each
model batches by its knobs: a batch of up to ``b`` in deadline order goes to an
idle instance among the first ``k`` once ``b`` requests wait, or once waiting
longer would make the most urgent of them late; a request that cannot finish
even alone is shed with the reason.

Several models are asked together because on one node they compete: with the
cores shared (``simulate(node_cores=...)``, ``serve --share-cores``), one
model's concurrency is the cores another cannot have, and only a controller
that sees both queues can trade them (BCEdge's concurrent models).

The controller is a trained agent (``rl:agent.zip``) in simulation and live. The
training environment has none: it steps the simulation to each ask itself and
calls ``report`` and ``set_knobs`` between two runs (``qosbatch.rl.env``). Pure
Python: the observation is a list of floats, the agent lives elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from qosbatch.core.errors import UserError
from qosbatch.policies.base import CompletedBatch, Decision, Dispatch, QueueView, Reject, Wait

OBSERVATION_SIZE = 7  # per model
LATE_PENALTY = 0.5  # a late or shed request costs this much utility (an on-time one earns <= 1)


@dataclass
class IntervalStats:
    """What happened to one model since the controller last acted: reward, recent latency."""

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


@dataclass(frozen=True)
class KnobRange:
    """One model a controller schedules, and how far its knobs go."""

    model: str
    max_batch: int
    instances: int


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


def to_all_knobs(action: Sequence[float], ranges: Sequence[KnobRange]) -> list[tuple[int, int]]:
    """A joint action, two numbers per model in ``ranges``' order -> each model's knobs."""
    return [
        to_knobs(action[2 * i : 2 * i + 2], r.max_batch, r.instances) for i, r in enumerate(ranges)
    ]


# observation (all models, in order), each model's stats -> each model's (b, k)
Controller = Callable[[list[float], list[IntervalStats]], Sequence[tuple[int, int]]]


class KnobPolicy:
    """See the module docstring: one object schedules every model of ``ranges``.

    The drivers build one policy per model from a factory; a factory that returns
    this one object for each (as ``rl:agent.zip`` does) lets its models be asked
    together. A model it was not set up for is refused at its first decision.
    """

    name = "rl"

    def __init__(
        self,
        controller: Controller | None,
        ranges: Sequence[KnobRange],
        interval_s: float = 0.5,
        slo_scale_s: float = 0.5,
    ) -> None:
        if not ranges:
            raise ValueError("a knob policy needs at least one model")
        self.controller = controller
        self.interval_s = interval_s
        self.slo_scale_s = slo_scale_s  # typical budget: observations are in units of it
        self.models = [_ModelKnobs(r, slo_scale_s) for r in ranges]
        self._by_name = {m.range.model: m for m in self.models}
        self.next_s = -math.inf

    def knobs(self, model: str) -> tuple[int, int]:
        """The (batch size, concurrency) ``model`` batches by now."""
        m = self._by_name[model]
        return m.b, m.k

    # ---- the Policy interface -----------------------------------------------------------

    def decide(self, view: QueueView) -> list[Decision]:
        m = self._by_name.get(view.model)
        if m is None:
            known = ", ".join(self._by_name)
            raise UserError(f"the rl policy schedules {known}, not model {view.model!r}")
        m.view = view
        now = view.now_s
        if now >= self.next_s and self.controller is not None:
            self._ask(now)
        return m.decide(view, now, self.next_s)

    def observe(self, done: CompletedBatch) -> None:
        self._by_name[done.model].observe(done)

    # ---- the controller -----------------------------------------------------------------

    def _ask(self, now: float) -> None:
        assert self.controller is not None
        obs, stats = self.report(now)
        self.set_knobs(self.controller(obs, stats), now)

    def report(self, now: float) -> tuple[list[float], list[IntervalStats]]:
        """The observation of every model at ``now``, and their interval's stats (reset)."""
        obs: list[float] = []
        stats: list[IntervalStats] = []
        for m in self.models:
            obs += m.observation(now)
            stats.append(m.stats)
            m.stats = IntervalStats()
        return obs, stats

    def set_knobs(self, knobs: Sequence[tuple[int, int]], now: float) -> None:
        """Each model's (batch size, concurrency) from ``now``; the next ask an interval on."""
        for m, (b, k) in zip(self.models, knobs, strict=True):
            m.b = min(max(int(b), 1), m.range.max_batch)
            m.k = min(max(int(k), 1), m.range.instances)
        if self.next_s == -math.inf:
            self.next_s = now
        while self.next_s <= now:
            self.next_s += self.interval_s


class _ModelKnobs:
    """One model's knobs, its interval's stats and the batching rule that obeys them."""

    def __init__(self, knob_range: KnobRange, slo_scale_s: float) -> None:
        self.range = knob_range
        self.slo_scale_s = slo_scale_s
        self.b, self.k = 1, knob_range.instances
        self.stats = IntervalStats()
        self.view: QueueView | None = None  # the last one seen (drivers keep passing the same)
        self._meta: dict[int, tuple[float, float]] = {}  # dispatched id -> (arrival, deadline)

    def decide(self, view: QueueView, now: float, next_ask_s: float) -> list[Decision]:
        if not len(view):
            return []
        latency = view.latency
        # k instances split the model's cores: k = 1 runs each batch on all of them
        # (the lowest latency), k = max on one each (the most batches at once).
        cores = max(1, view.max_cores // self.k)
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
        worker = next((w for w in usable if w.idle), None)
        free = view.free_cores
        if worker is None or not free:
            return []
        if free < cores:  # (cores shared with other models, or a batch still running)
            cores = free
        n = min(self.b, len(view), latency.max_batch)
        head = view.edf(n)
        first = view.deadline_s(head[0])  # (EDF: the earliest deadline of the batch)
        while n > 1 and now + latency.s(n, cores) > first:
            n -= 1  # no member late by the batch's size: fewer now, the rest next
        head = head[:n]
        # Waiting for b costs the most urgent member; go while one more batch of 1 would
        # still fit behind this one (a margin for service times longer than predicted).
        must_go_s = first - latency.s(n, cores) - alone
        if n >= self.b or view.draining or now >= must_go_s:
            for rid in head:
                self._meta[rid] = (view.arrival_s(rid), view.deadline_s(rid))
            return [Dispatch(head, worker.id, cores)]
        return [Wait(min(must_go_s, next_ask_s))]

    def observe(self, done: CompletedBatch) -> None:
        for rid in done.requests:
            arrival, deadline = self._meta.pop(rid)
            self.stats.served(
                done.completion_s - arrival, deadline - arrival, done.completion_s <= deadline
            )

    def observation(self, now: float) -> list[float]:
        """This model's part of the agent's view, every entry of order 1 (OBSERVATION_SIZE).

        A model not seen yet (no request so far) shows an empty queue. For one seen
        earlier the queue is current; the arrival rate is as of its last event.
        """
        r, stats = self.range, self.stats
        view = self.view
        recent = stats.latency_over_budget
        mean_used = min(sum(recent) / len(recent), 4.0) if recent else 0.0
        missed = stats.missed / max(1, stats.missed + stats.on_time)
        if view is None:
            return [0.0, 0.0, 1.0, self.b / r.max_batch, self.k / r.instances, mean_used, missed]
        cores = view.workers[0].cores
        capacity = r.max_batch / view.latency.s(r.max_batch, cores) * r.instances  # requests/s
        slack = (view.earliest_deadline_s() - now) / self.slo_scale_s if len(view) else 1.0
        return [
            math.log1p(len(view)) / 5.0,
            view.arrival_rate_per_s / capacity,
            max(-1.0, min(slack, 4.0)),
            self.b / r.max_batch,
            self.k / r.instances,
            mean_used,
            missed,
        ]
