"""A worker on a thread of the host's process, for hosts that place processes themselves."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from qosbatch.serve.worker_child import load_model, time_batches
from qosbatch.serve.worker_types import BatchOutput, ModelIO, WorkerSpec


class InProcessWorker:
    """A worker that runs the model in this process, on one thread: for hosts that place
    processes themselves (a Ray Serve replica is already a process with its CPUs).

    Same interface as ``WorkerHandle``; cores become the backend's thread count only
    (no pinning: the host decides where the process runs). A batch runs on a
    dedicated thread, so the event loop stays free while the model computes.
    """

    def __init__(
        self,
        spec: WorkerSpec,
        cpus: tuple[int, ...],
        label: str,
        on_exit: Callable[[Any, str], None] | None = None,
    ) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.spec = spec
        self.cpus = cpus
        self.label = label
        self.on_exit = on_exit  # (never called: this worker dies with its process)
        self.io: ModelIO | None = None
        self.pid: int | None = os.getpid()
        self.starts = 0
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=label)
        self._backend: Any = None
        self._threads = len(cpus)

    async def start(self) -> ModelIO:
        def build() -> ModelIO:
            self._backend, io = load_model(self.spec, self._threads)
            return io

        self.starts += 1
        self.io = await asyncio.get_running_loop().run_in_executor(self._pool, build)
        return self.io

    async def calibrate(self, cpus: tuple[int, ...], batches: tuple[int, ...]) -> list[float]:
        def timed() -> list[float]:
            self._set_threads(len(cpus))
            return [s for _, s in time_batches(self._backend, self.spec.ref, list(batches))]

        return await asyncio.get_running_loop().run_in_executor(self._pool, timed)

    def run(
        self, parts: Sequence[np.ndarray], cpus: tuple[int, ...]
    ) -> asyncio.Future[BatchOutput]:
        batch = parts[0] if len(parts) == 1 else np.concatenate(parts)

        def compute() -> BatchOutput:
            self._set_threads(len(cpus))
            start = time.perf_counter()
            out = np.ascontiguousarray(self._backend.run(batch))
            return BatchOutput(out, time.perf_counter() - start)

        return asyncio.get_running_loop().run_in_executor(self._pool, compute)

    def kill(self) -> None:
        raise NotImplementedError("an in-process worker cannot be killed apart from its host")

    async def stop(self, timeout_s: float = 5.0) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _set_threads(self, n: int) -> None:
        if n != self._threads:
            self._backend.set_threads(n)
            self._threads = n
