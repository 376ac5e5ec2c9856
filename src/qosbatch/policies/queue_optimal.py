"""``queue-optimal``: BatOpt's (a, b) rule, re-planned from the measured arrival rate.

A worker starts a batch when at least ``a`` requests wait and takes up to ``b``
of them, oldest first. (a, b) come from the M/G(a,b)/1/N queueing model at the
current arrival-rate estimate: the pair with the lowest predicted mean latency
(plus ``omega`` times memory, when memory matters) whose blocking stays below
``eps``. When the rate estimate moves by more than ``replan_change`` from the
rate of the last plan, the policy re-plans; plans are memoised on a geometric
grid of rates (20% apart), so a workload that steps back and forth pays for each solve once.

Two guards keep BatOpt's rule honest in a server: no request waits past the
moment it would certainly miss its deadline for want of company (the batch
goes with what it has), and at most ``capacity`` (N) requests wait; the newest
beyond that are rejected with the reason, as the model's blocking says.
"""

from __future__ import annotations

import math

import numpy as np

from qosbatch.core.errors import UserError
from qosbatch.latency.memory import memory_per_sample, omega_per_byte
from qosbatch.policies.base import CompletedBatch, Decision, Dispatch, QueueView, Reject, Wait
from qosbatch.queueing import ServiceTime, optimize_ab

_RATE_GRID = 1.2  # plans are memoised per rate bucket of this ratio


class QueueOptimalPolicy:
    name = "queue-optimal"

    def __init__(
        self,
        a: int = 0,
        b: int = 0,
        max_batch_size: int = 32,
        capacity: int = 256,
        eps: float = 1e-3,
        replan_change: float = 0.2,
        rate_window_s: float = 1.0,
        omega: float = 0.0,
        memory_mb: float = 0.0,
        rng: np.random.Generator | None = None,
    ) -> None:
        """``a``/``b`` > 0 pin the rule (no planning); 0 lets the queueing model choose.

        ``omega`` (ms of latency a megabyte is worth) with ``memory_mb`` (per sample)
        is BatOpt's trade-off: plans minimise mean latency + omega x mean memory.
        """
        del rng
        if max_batch_size < 1:
            raise UserError(
                f"queue-optimal: max_batch_size must be an integer >= 1, got {max_batch_size}"
            )
        if a < 0 or b < 0 or (a and b and b < a):
            raise UserError(
                f"queue-optimal: need 0 <= a <= b (0: chosen by the model), got a={a}, b={b}"
            )
        if bool(a) != bool(b):
            raise UserError(
                f"queue-optimal: give both a and b to pin the rule, or neither; got a={a}, b={b}"
            )
        if capacity < (b or max_batch_size):
            raise UserError(
                f"queue-optimal: capacity (N) must be >= b and max_batch_size, got {capacity}"
            )
        if not 0 < eps < 1:
            raise UserError(f"queue-optimal: eps must be in (0, 1), got {eps}")
        if replan_change <= 0:
            raise UserError(f"queue-optimal: replan_change must be > 0, got {replan_change}")
        if rate_window_s < 0:
            raise UserError(f"queue-optimal: rate_window_s must be >= 0, got {rate_window_s}")
        if omega < 0 or memory_mb < 0 or (omega > 0 and memory_mb <= 0):
            raise UserError(
                "queue-optimal: omega weighs memory: give omega >= 0 and, with omega > 0, "
                f"memory_mb > 0 (MB per sample); got omega={omega}, memory_mb={memory_mb}"
            )
        self.omega = omega_per_byte(omega)
        self.memory = memory_per_sample(memory_mb) if omega > 0 else None
        self.pinned = (a, b) if a and b else None
        self.max_batch_size = b or max_batch_size
        self.capacity = capacity
        self.eps = eps
        self.replan_change = replan_change
        self.a, self.b = self.pinned or (1, self.max_batch_size)
        self.planned_rate = 0.0
        self.rate_window_s = rate_window_s
        self._rate = 0.0  # the driver's estimate, smoothed over rate_window_s
        self._rate_at = -math.inf
        self._since = 0.0  # when the estimate started
        self._plans: dict[tuple[int, int, int], tuple[int, int]] = {}
        self.replans = 0  # solver runs, for reports

    def decide(self, view: QueueView) -> list[Decision]:
        n = len(view)
        if n == 0:
            return []
        if n > self.capacity:
            newest = view.fifo(n)[self.capacity :]
            reason = f"queue full: {self.capacity} requests already waiting (queue-optimal N)"
            return [Reject(newest, reason)]
        worker = view.idle_worker()
        if worker is None or worker.cores > view.free_cores:
            return []
        self._maybe_replan(view, worker.cores)
        if n >= self.a or view.draining:
            return [Dispatch(view.fifo(min(n, self.b)), worker.id, worker.cores)]
        # Fewer than a wait: hold them, but not past the last moment the oldest-deadline
        # request can still finish on time if sent with what is here.
        latest_start = view.earliest_deadline_s() - view.latency.s(n, worker.cores)
        if latest_start <= view.now_s:
            return [Dispatch(view.fifo(n), worker.id, worker.cores)]
        return [Wait(latest_start)]

    def _maybe_replan(self, view: QueueView, cores: int) -> None:
        if self.pinned:
            return
        workers = max(1, len(view.workers))
        rate = self._smoothed(view) / workers
        if rate <= 0 or not math.isfinite(rate) or view.now_s - self._since < self.rate_window_s:
            return  # no estimate yet, or still warming up: keep (1, b), send what waits
        moved = abs(rate - self.planned_rate)
        if self.planned_rate and moved <= self.replan_change * self.planned_rate:
            return
        bucket = round(math.log(rate) / math.log(_RATE_GRID))
        key = (bucket, cores, min(self.max_batch_size, view.latency.max_batch))
        if key not in self._plans:
            table = view.latency
            service = ServiceTime(
                lambda k: table.s(k, cores), "lognormal", lambda k: table.spread(k, cores)
            )
            choice = optimize_ab(
                _RATE_GRID**bucket, service, self.capacity, key[2], eps=self.eps,
                omega=self.omega, memory=self.memory,
            )  # fmt: skip
            self._plans[key] = (choice.result.a, choice.result.b)
            self.replans += 1
        self.a, self.b = self._plans[key]
        self.planned_rate = rate

    def _smoothed(self, view: QueueView) -> float:
        """The driver's rate estimate (a short window) smoothed again over ``rate_window_s``.

        At 20 req/s a one-second estimate wanders by +-20%, which would re-plan on noise;
        a plan should follow the load's level, not its jitter.
        """
        now, rate = view.now_s, view.arrival_rate_per_s
        if self._rate_at == -math.inf or self.rate_window_s == 0:
            self._rate = rate
            self._since = now
        else:
            weight = 1.0 - math.exp(-(now - self._rate_at) / self.rate_window_s)
            self._rate += weight * (rate - self._rate)
        self._rate_at = now
        return self._rate

    def observe(self, done: CompletedBatch) -> None:
        pass
