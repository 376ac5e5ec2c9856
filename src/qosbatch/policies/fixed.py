"""``fixed``: wait for exactly ``batch_size`` requests, or until ``timeout_ms`` has passed.

The fixed-batch-size baseline. Without a timeout a lone request waits for
company as long as it takes (only the end of the workload releases it), which is
why the peers that offer this mode pair it with a timeout.
"""

from __future__ import annotations

import math

import numpy as np

from qosbatch.core.errors import UserError
from qosbatch.policies.base import CompletedBatch, Decision, Dispatch, QueueView, Wait


class FixedPolicy:
    """Batches of exactly ``batch_size``, FIFO; a partial batch only after ``timeout_ms``."""

    name = "fixed"
    idle_only = True  # decides only when a worker is idle (a hint drivers may use)

    def __init__(
        self,
        batch_size: int = 8,
        timeout_ms: float | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        del rng
        if batch_size < 1:
            raise UserError(f"fixed: batch_size must be an integer >= 1, got {batch_size}")
        if timeout_ms is not None and timeout_ms < 0:
            raise UserError(f"fixed: timeout_ms must be >= 0, got {timeout_ms}")
        self.batch_size = batch_size
        self.timeout_s = None if timeout_ms is None else timeout_ms / 1e3

    def decide(self, view: QueueView) -> list[Decision]:
        w = view.idle_worker()
        n = len(view)
        if w is None or n == 0 or w.cores > view.free_cores:
            return []
        size = min(self.batch_size, view.latency.max_batch)  # never past the node's largest
        if n >= size:
            return [Dispatch(view.fifo(size), w.id, w.cores)]
        expires = math.inf if self.timeout_s is None else view.oldest_arrival_s() + self.timeout_s
        if view.draining or expires <= view.now_s:
            return [Dispatch(view.fifo(n), w.id, w.cores)]
        return [Wait(expires)] if expires < math.inf else []

    def observe(self, done: CompletedBatch) -> None:
        pass
