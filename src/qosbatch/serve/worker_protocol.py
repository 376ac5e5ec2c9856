"""What the batcher and the server need of a worker: the seam for hosts and tests.

Three kinds implement it: ``WorkerHandle`` (a pinned process, the default),
``InProcessWorker`` (a thread, for hosts such as Ray that place processes
themselves) and ``qosbatch.testing.FakeWorker`` (no model at all: batches end
when a test says so, or after a latency law's time on the loop's clock, which
may be virtual). The model itself behind a real worker is a
``qosbatch.models.backends.Backend`` (``run(batch)``, ``set_threads(n)``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from qosbatch.serve.worker import BatchOutput, ModelIO, WorkerSpec


class Worker(Protocol):
    """One replica of a model: started once, then runs batches on the CPUs it is given."""

    label: str
    pid: int | None
    io: ModelIO | None  # None until started
    # Called as on_exit(worker, cause) when it dies on its own; the batcher restarts it.
    on_exit: Callable[[Any, str], None] | None

    async def start(self) -> ModelIO: ...

    def run(
        self, parts: Sequence[np.ndarray], cpus: tuple[int, ...]
    ) -> asyncio.Future[BatchOutput]:
        """Run the batch ``parts`` stacked, on ``cpus``; the future ends with its output."""
        ...

    async def calibrate(self, cpus: tuple[int, ...], batches: tuple[int, ...]) -> list[float]:
        """Median seconds per batch size on ``cpus``: a first latency table without a profile."""
        ...

    async def stop(self) -> None: ...


# How the server builds a model's workers: (spec, its CPUs, a label for logs) -> a Worker.
WorkerFactory = Callable[[WorkerSpec, tuple[int, ...], str], Worker]
