"""``dynamic``: the dynamic batcher of Triton, TorchServe and Ray Serve.

When a worker is free it takes up to ``max_batch_size`` requests, oldest first.
If fewer are waiting it holds them until the oldest has waited
``max_queue_delay_ms`` (Triton's ``max_queue_delay_microseconds``, TorchServe's
``max_batch_delay``, Ray Serve's ``batch_wait_timeout_s``), then sends what it has.
It knows nothing of deadlines: its knobs are tuned offline for a workload.
"""

from __future__ import annotations

import numpy as np

from qosbatch.core.errors import UserError
from qosbatch.policies.base import CompletedBatch, Decision, Dispatch, QueueView, Wait


class DynamicPolicy:
    """Up to ``max_batch_size`` FIFO, held at most ``max_queue_delay_ms`` past the oldest."""

    name = "dynamic"
    idle_only = True  # decides only when a worker is idle (a hint drivers may use)

    def __init__(
        self,
        max_batch_size: int = 8,
        max_queue_delay_ms: float = 5.0,
        rng: np.random.Generator | None = None,
    ) -> None:
        del rng
        if max_batch_size < 1:
            raise UserError(
                f"dynamic: max_batch_size must be an integer >= 1, got {max_batch_size}"
            )
        if max_queue_delay_ms < 0:
            raise UserError(f"dynamic: max_queue_delay_ms must be >= 0, got {max_queue_delay_ms}")
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max_queue_delay_ms / 1e3

    def decide(self, view: QueueView) -> list[Decision]:
        n = len(view)
        if n == 0:
            return []
        w = view.idle_worker()
        if w is None or w.cores > view.free_cores:
            return []
        cap = min(self.max_batch_size, view.latency.max_batch)  # never past the node's largest
        if n >= cap:
            return [Dispatch(view.fifo(cap), w.id, w.cores)]
        release = view.oldest_arrival_s() + self.max_queue_delay_s
        if release <= view.now_s or view.draining:
            return [Dispatch(view.fifo(n), w.id, w.cores)]
        return [Wait(release)]

    def observe(self, done: CompletedBatch) -> None:
        pass
