"""``single``: no batching. Each idle worker takes the oldest request, alone, FIFO.

The "single-input" baseline of the batching papers: the lowest latency a request
can get when the system is idle, and the lowest throughput under load.
"""

from __future__ import annotations

import numpy as np

from qosbatch.policies.base import CompletedBatch, Decision, Dispatch, QueueView


class SinglePolicy:
    """One request per batch, oldest first, on each worker's nominal cores."""

    name = "single"
    idle_only = True  # decides only when a worker is idle (a hint drivers may use)

    def __init__(self, rng: np.random.Generator | None = None) -> None:
        del rng  # deterministic

    def decide(self, view: QueueView) -> list[Decision]:
        out: list[Decision] = []
        if not len(view):
            return out
        free = view.free_cores
        waiting = view.fifo(len(view.workers))
        for w in view.workers:
            if not waiting:
                break
            if w.idle and w.cores <= free:
                out.append(Dispatch([waiting.pop(0)], w.id, w.cores))
                free -= w.cores
        return out

    def observe(self, done: CompletedBatch) -> None:
        pass
