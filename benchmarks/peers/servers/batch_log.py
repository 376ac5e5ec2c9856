"""Batch sizes a peer's batcher formed, counted and reported at shutdown.

The evidence that the peer did batch (its server log keeps the line), and how much of
the time its model took. Shared by the server scripts that run in the peers' own
venvs (Triton's, MLServer's), so it imports nothing beyond the standard library.
"""

from __future__ import annotations

import collections
import json
import threading
from collections.abc import Callable


class BatchLog:
    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.sizes: collections.Counter[int] = collections.Counter()
        self.busy_s = 0.0  # time in ORT: how much of the load the model itself took
        self.lock = threading.Lock()  # batches may run on a thread of the server's

    def add(self, size: int, seconds: float) -> None:
        with self.lock:
            self.sizes[size] += 1
            self.busy_s += seconds

    def report(self) -> None:
        with self.lock:
            sizes = dict(sorted(self.sizes.items()))
            busy_s = self.busy_s
        n = sum(sizes.values())
        rows = sum(k * v for k, v in sizes.items())
        mean = rows / n if n else 0.0
        self.say(
            f"batch sizes {json.dumps(sizes)} ({n} batches, {rows} rows, mean {mean:.1f}, "
            f"{busy_s:.2f} s in ORT)"
        )
