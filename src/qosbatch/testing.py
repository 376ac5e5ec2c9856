"""Helpers for testing policies and drivers, ours or a user's.

- ``synthetic_profile`` / ``synthetic_table``: a profile or latency table from an
  ``AmdahlModel``, so a test needs no measurement and knows the truth exactly.
- ``make_request`` and ``make_queue``: a ``QueueView`` with chosen requests and
  workers, to call ``policy.decide`` directly and check its answer.
- ``FakeWorker``: a worker with no model, for tests of the batcher or the server.
- ``poisson_trace``: a one-model Poisson trace in one line.
- ``running_server``: ``qosbatch serve`` or ``deploy`` as a child process, for benchmarks.
- ``records_digest``: one short hash of every record of a run, to compare two builds.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from qosbatch.core.profile import Measurement, ModelInfo, NodeInfo, Profile
from qosbatch.core.requests import RecordTable, Request
from qosbatch.engine.queue import ModelQueue
from qosbatch.latency import AmdahlModel
from qosbatch.latency.table import LatencyTable
from qosbatch.launch import Launched, running
from qosbatch.workloads import arrivals
from qosbatch.workloads.trace import Trace

# Fitted to a real CNN (AlexNet, torch, 1-2 cores of an EPYC): 12 ms per call, 14 ms of
# parallel and 2.6 ms of serial work per sample. s(1, 2) = 21.7 ms, s(8, 2) = 89 ms.
EXAMPLE_MODEL = AmdahlModel(alpha=0.0141, beta=0.0, gamma=0.0026, delta=0.0124)


def synthetic_profile(
    model: AmdahlModel = EXAMPLE_MODEL,
    name: str = "synthetic",
    batches: Sequence[int] = (1, 2, 4, 8, 16, 32),
    cores: Sequence[int] = (1, 2),
    cv: float = 0.02,
) -> Profile:
    """A profile whose medians are exactly ``model``'s predictions, with spread ``cv``."""
    points = [
        Measurement(
            batch=b,
            cores=c,
            median_ms=float(model.predict_s(b, c)) * 1e3,
            p95_ms=float(model.predict_s(b, c)) * 1e3 * (1 + 1.645 * cv),
            cv=cv,
            peak_memory_bytes=0,
            repeats=10,
        )
        for c in cores
        for b in batches
    ]
    return Profile(
        model=ModelInfo(name, "factory", (1,), None, None, "torch"),
        node=NodeInfo("synthetic node", max(cores), {c: 10.0 * c for c in cores}),
        measurements=points,
    )


def synthetic_table(
    model: AmdahlModel = EXAMPLE_MODEL, max_batch: int = 64, max_cores: int = 2, cv: float = 0.0
) -> LatencyTable:
    return LatencyTable.from_model(model, max_batch, max_cores, cv)


def make_request(
    id: int, arrival_s: float = 0.0, slo_ms: float = 100.0, model: str = "m", priority: int = 0
) -> Request:
    return Request(id, model, arrival_s, arrival_s + slo_ms / 1e3, priority)


def make_queue(
    requests: Iterable[Request],
    now_s: float,
    worker_cores: Sequence[int] = (2,),
    max_cores: int | None = None,
    latency: LatencyTable | None = None,
    busy: Sequence[int] = (),
    draining: bool = False,
) -> ModelQueue:
    """A queue view holding ``requests`` at ``now_s``; workers in ``busy`` are running."""
    reqs = list(requests)
    model = reqs[0].model if reqs else "m"
    pool = max_cores if max_cores is not None else sum(worker_cores)
    q = ModelQueue(model, worker_cores, pool, latency or synthetic_table(max_cores=pool))
    for r in sorted(reqs, key=lambda r: r.arrival_s):
        q.push(r.id, r.arrival_s, r.deadline_s, r.priority)
    for w in busy:
        q.workers[w].idle = False
        q.workers[w].running_cores = q.workers[w].cores
        q.workers[w].busy_until_s = now_s + 0.01
        q.free_cores -= q.workers[w].cores
        q.idle_workers -= 1
    q.now_s = now_s
    q.draining = draining
    return q


def records_digest(records: RecordTable) -> str:
    """A short hash of every outcome of a run: equal digests, the same decisions.

    Arrivals and deadlines are the trace's; what a build decides is in the rest.
    """
    h = hashlib.sha256()
    for column in (
        records.dispatch_s,
        records.completion_s,
        records.outcome,
        records.batch_size,
        records.cores,
        records.worker,
    ):
        h.update(np.ascontiguousarray(column).tobytes())
    h.update("\0".join(map(str, records.reason)).encode())
    return h.hexdigest()[:16]


def peak_cores(records: RecordTable, model: int | None = None) -> int:
    """Most cores the batches held at once: of one model, or of all (a shared node).

    A batch is its members' shared (model, worker, dispatch time); at equal times a
    completion frees its cores before a dispatch takes them, as in the simulator.
    """
    served = records.worker >= 0
    if model is not None:
        served &= records.model == model
    batches = {
        (m, w, start): (end, cores)
        for m, w, start, end, cores in zip(
            records.model[served].tolist(),
            records.worker[served].tolist(),
            records.dispatch_s[served].tolist(),
            records.completion_s[served].tolist(),
            records.cores[served].tolist(),
            strict=True,
        )
    }
    events = sorted(
        e for (_, _, start), (end, c) in batches.items() for e in ((start, 1, c), (end, 0, -c))
    )
    held = peak = 0
    for _, _, delta in events:
        held += delta
        peak = max(peak, held)
    return peak


def poisson_trace(
    rate: float, duration_s: float, slo_ms: float, seed: int = 0, model: str = "m"
) -> Trace:
    times = arrivals.poisson(np.random.default_rng(seed), rate, duration_s)
    return Trace.of(times, slo_ms, model)


@contextmanager
def running_server(
    args: Sequence[str],
    timeout_s: float = 180.0,
    *,
    env: dict[str, str] | None = None,
    cpus: Sequence[int] | None = None,
) -> Iterator[str]:
    """Run ``qosbatch ARGS`` (``serve ...`` or ``deploy ...``) as a child; yield its URL.

    The URL is read from the banner the command prints once it serves (so ``--port 0``
    works); the child gets SIGTERM (its drain) on the way out, and its whole process
    group SIGKILL if it does not exit (``qosbatch.launch.running``).
    ``env``: the child's environment (a ``PYTHONPATH`` runs another source tree);
    ``cpus``: the child, and the workers it starts, run on these CPUs only.
    """
    cmd = [sys.executable, "-c", "from qosbatch.cli import main; main()", *map(str, args)]
    name = f"qosbatch {' '.join(map(str, args))}"
    with running(name, cmd, banner_url, timeout_s, env=env, cpus=cpus, grace_s=90.0) as server:
        assert server.url is not None
        yield server.url


def banner_url(server: Launched) -> str | None:
    """The URL of ``qosbatch: serving on http://HOST:PORT ...``, once printed."""
    _, found, rest = server.log_text().partition("serving on http://")
    return "http://" + rest.split()[0] if found and rest.split() else None


class FakeWorker:
    """A worker with no model, for tests of the batcher or the whole server.

    Implements ``qosbatch.serve.worker_protocol.Worker``. Each batch's output is its
    input times two. With ``latency`` (a LatencyTable), a batch ends by itself after
    ``s(b, c)`` on the event loop's clock (virtual under looptime, so a test runs in
    no real time); without, it waits until the test calls ``finish(i)`` or ``die()``.
    Built as the server builds workers: ``Server(config, worker_kind=FakeWorker)``, or
    ``partial(FakeWorker, latency=table)``.
    """

    def __init__(
        self,
        spec: object = None,
        cpus: tuple[int, ...] = (0,),
        label: str = "fake worker",
        *,
        latency: LatencyTable | None = None,
        shape: tuple[int, ...] = (2,),
    ) -> None:
        from qosbatch.serve.worker import ModelIO

        self.spec = spec
        self.cpus = cpus
        self.label = label
        self.latency = latency
        self.pid: int | None = os.getpid()
        self.on_exit: Callable[[Any, str], None] | None = None
        self.io: ModelIO | None = None
        self._io = ModelIO("float32", shape, "float32", shape)
        self.batches: list[tuple[np.ndarray, tuple[int, ...], asyncio.Future[Any]]] = []
        self.starts = 0

    async def start(self) -> Any:
        self.starts += 1
        self.io = self._io
        return self.io

    def run(self, parts: Sequence[np.ndarray], cpus: tuple[int, ...]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.batches.append((np.concatenate(parts), cpus, future))
        if self.latency is not None:
            seconds = self.latency.s(len(self.batches[-1][0]), len(cpus))
            loop.call_later(seconds, self.finish, len(self.batches) - 1)
        return future

    def finish(self, i: int = -1) -> None:
        """Batch ``i`` ends now with its output (input x 2)."""
        from qosbatch.serve.worker import BatchOutput

        batch, _, future = self.batches[i]
        if not future.done():
            future.set_result(BatchOutput(batch * 2, 0.001))

    def die(self, i: int = -1, cause: str = "killed by signal 9 (SIGKILL)") -> None:
        """The worker dies holding batch ``i``: the batch fails, the batcher restarts it."""
        from qosbatch.serve.worker import WorkerDied

        _, _, future = self.batches[i]
        self.io = None
        if not future.done():
            future.set_exception(WorkerDied(f"{self.label} {cause}"))
        if self.on_exit is not None:
            self.on_exit(self, cause)

    async def calibrate(self, cpus: tuple[int, ...], batches: tuple[int, ...]) -> list[float]:
        table = self.latency or synthetic_table(max_cores=len(cpus))
        return [table.s(b, len(cpus)) for b in batches]

    async def stop(self) -> None:
        for _, _, future in self.batches:
            if not future.done():
                future.cancel()
