"""``aimd``: Clipper's adaptive batch size, additive increase, multiplicative decrease.

Clipper grows a model's batch size by ``step`` after every batch that met the
SLO and cuts it by ``backoff`` (x0.9) after one that missed, probing for the
largest batch the latency objective allows. Here a batch "missed" when any of
its members finished after its own deadline, and only a full batch (as large as
the current cap) earns an increase: a cap that was never tried is not known to
be safe (as TCP's window does not grow while the sender is idle). A free worker
takes up to the current size at once, oldest first; there is no waiting.
"""

from __future__ import annotations

import numpy as np

from qosbatch.core.errors import UserError
from qosbatch.policies.base import CompletedBatch, Decision, Dispatch, QueueView


class AimdPolicy:
    """Batch cap grows by ``step`` per on-time batch, shrinks x``backoff`` per late one."""

    name = "aimd"
    idle_only = True  # decides only when a worker is idle (a hint drivers may use)

    def __init__(
        self,
        step: float = 1.0,
        backoff: float = 0.9,
        initial_batch_size: int = 1,
        max_batch_size: int = 64,
        rng: np.random.Generator | None = None,
    ) -> None:
        del rng
        if step <= 0:
            raise UserError(f"aimd: step must be > 0, got {step}")
        if not 0 < backoff < 1:
            raise UserError(f"aimd: backoff must be in (0, 1), got {backoff}")
        if not 1 <= initial_batch_size <= max_batch_size:
            raise UserError(
                "aimd: need 1 <= initial_batch_size <= max_batch_size, got "
                f"{initial_batch_size} and {max_batch_size}"
            )
        self.step = step
        self.backoff = backoff
        self.max_batch_size = max_batch_size
        self.batch_size = float(initial_batch_size)

    def decide(self, view: QueueView) -> list[Decision]:
        n = len(view)
        if n == 0:
            return []
        w = view.idle_worker()
        if w is None or w.cores > view.free_cores:
            return []
        size = min(n, int(self.batch_size), view.latency.max_batch)
        return [Dispatch(view.fifo(size), w.id, w.cores)]

    def observe(self, done: CompletedBatch) -> None:
        if done.late:
            self.batch_size = max(1.0, self.batch_size * self.backoff)
        elif done.size >= int(self.batch_size):
            self.batch_size = min(float(self.max_batch_size), self.batch_size + self.step)
