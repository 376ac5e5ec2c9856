"""Worker processes: one per model replica, pinned to its cores, fed through shared memory.

Inference runs outside the server's process so that the event loop never waits
on the model and the GIL never sits between the batcher and the backend. Each
worker is a spawned child (fork is unsafe beside an event loop and torch's
threads) that builds its own backend from a picklable ``ModelRef``.

Tensors cross through two shared-memory segments the parent owns, one for the
batch in and one for the outputs; the pipe carries only small JSON headers
(the segment names, the shape, the CPUs to run on). A batch is therefore copied
once into the segment (the stacking the batch needs anyway) and never pickled.
The CPUs travel with every batch: when they change, the worker re-pins itself
(``sched_setaffinity``) and sets the backend's thread count before running,
which is the in-place vertical scaling of Sponge: no restart, no reload.

The parent side (``WorkerHandle``) is asyncio-native: it watches the pipe and
the process's sentinel with ``loop.add_reader``, so no thread waits on a worker,
and a worker that dies (killed, out of memory) fails its running batch at once
with the cause, ready to be restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable, Sequence
from multiprocessing import shared_memory
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from qosbatch.serve.worker_child import send, worker_main
from qosbatch.serve.worker_types import (
    CALIBRATION_BATCHES,
    BatchOutput,
    ModelIO,
    WorkerDied,
    WorkerFailed,
    WorkerSpec,
)

__all__ = [
    "CALIBRATION_BATCHES",
    "BatchOutput",
    "ModelIO",
    "WorkerDied",
    "WorkerFailed",
    "WorkerHandle",
    "WorkerSpec",
]


class WorkerHandle:
    """The server's side of one worker process: start, run batches, notice death, stop.

    ``on_exit`` is called (in the event loop) when the process ends unasked, after
    the running batch, if any, has been failed with ``WorkerDied``.
    """

    def __init__(
        self,
        spec: WorkerSpec,
        cpus: tuple[int, ...],
        label: str,
        on_exit: Callable[[WorkerHandle, str], None] | None = None,
    ) -> None:
        self.spec = spec
        self.cpus = cpus  # where it starts; batches name their own
        self.label = label
        self.on_exit = on_exit
        self.io: ModelIO | None = None
        self.pid: int | None = None
        self.starts = 0
        self._ctx = mp.get_context("spawn")
        self._process: Any = None
        self._conn: Connection | None = None
        self._pending: asyncio.Future[Any] | None = None
        self._pending_kind = ""
        self._stopping = False
        self._in: shared_memory.SharedMemory | None = None
        self._out: shared_memory.SharedMemory | None = None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    async def start(self) -> ModelIO:
        """Spawn the process and wait until its model answered a first batch."""
        loop = asyncio.get_running_loop()
        parent, child = self._ctx.Pipe(duplex=True)
        self._process = self._ctx.Process(
            target=worker_main, args=(child, self.spec, self.cpus), daemon=True
        )
        self._process.start()
        child.close()
        self._conn = parent
        self._stopping = False
        self.starts += 1
        loop.add_reader(parent.fileno(), self._on_readable)
        loop.add_reader(self._process.sentinel, self._on_exit)
        ready = self._expect("ready")
        head = await ready
        self.pid = head["pid"]
        self.io = ModelIO(
            head["input_dtype"],
            tuple(head["input_shape"]),
            head["output_dtype"],
            tuple(head["output_shape"]),
        )  # (JSON turned the shapes into lists)
        return self.io

    async def calibrate(self, cpus: tuple[int, ...], batches: tuple[int, ...]) -> list[float]:
        """Median seconds of each batch size on ``cpus`` (for a latency table without profile)."""
        self._send({"op": "calibrate", "cpus": list(cpus), "batches": list(batches)})
        head = await self._expect("calibrate")
        return [float(s) for _, s in head["points"]]

    def run(
        self, parts: Sequence[np.ndarray], cpus: tuple[int, ...]
    ) -> asyncio.Future[BatchOutput]:
        """Start one batch of ``parts`` (the members' tensors) on ``cpus``.

        Each part is copied once, straight from the request's body into its place in
        the shared-memory segment: the batch is never assembled apart first (for a
        600 KB image that second copy was as large as the request itself).
        The future ends with the outputs or an exception.
        """
        assert self.io is not None, "start() the worker first"
        first = parts[0]
        samples = sum(p.shape[0] for p in parts)
        shape = (samples, *first.shape[1:])
        nbytes = sum(p.nbytes for p in parts)
        out_bytes = (
            samples * math.prod(self.io.output_shape) * np.dtype(self.io.output_dtype).itemsize
        )
        self._in = _fit(self._in, nbytes)
        self._out = _fit(self._out, out_bytes)
        slot = np.ndarray(shape, dtype=first.dtype, buffer=self._in.buf)
        at = 0
        for p in parts:
            k = p.shape[0]
            slot[at : at + k] = p
            at += k
        future = self._expect("batch")
        # A closed pipe means the process died a moment ago and the loop has not seen it
        # yet: _on_exit fails this batch with the cause when it does (a bare "Broken
        # pipe" told the client nothing).
        with contextlib.suppress(OSError):
            self._send(
                {
                    "op": "run",
                    "cpus": list(cpus),
                    "in": self._in.name,
                    "out": self._out.name,
                    "shape": list(shape),
                    "dtype": str(first.dtype),
                }
            )
        return future

    def kill(self) -> None:
        """SIGKILL the process (tests and fault drills)."""
        if self._process is not None and self._process.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._process.pid, signal.SIGKILL)

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the process to exit, kill it if it does not, and free the segments."""
        self._stopping = True
        process = self._process
        if process is not None and process.is_alive():
            with contextlib.suppress(OSError, ValueError):
                self._send({"op": "stop"})
            deadline = time.monotonic() + timeout_s
            while process.is_alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if process.is_alive():
                process.kill()
        self._detach()
        future, self._pending = self._pending, None
        if future is not None and not future.done():
            future.set_exception(WorkerDied(f"{self.label} was stopped"))
        if process is not None:
            process.join(timeout=1)
        for seg in (self._in, self._out):
            if seg is not None:
                with contextlib.suppress(FileNotFoundError):
                    seg.close()
                    seg.unlink()
        self._in = self._out = None

    # ---- internals ----------------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        assert self._conn is not None
        send(self._conn, message)

    def _expect(self, kind: str) -> asyncio.Future[Any]:
        if self._pending is not None and not self._pending.done():
            raise RuntimeError(f"{self.label} is busy with a {self._pending_kind}")
        self._pending = asyncio.get_running_loop().create_future()
        self._pending_kind = kind
        return self._pending

    def _on_readable(self) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            head = json.loads(conn.recv_bytes())
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(conn.fileno())  # the sentinel follows
            return
        future, kind = self._pending, self._pending_kind
        self._pending = None
        if future is None or future.done():
            return
        if kind == "ready":
            if head.get("ready"):
                future.set_result(head)
            else:
                future.set_exception(
                    WorkerFailed(f"{self.label} cannot load its model: {head['error']}")
                )
        elif not head.get("ok"):
            future.set_exception(WorkerFailed(f"the model failed on the batch: {head['error']}"))
        elif kind == "batch":
            assert self._out is not None
            view = np.ndarray(tuple(head["shape"]), dtype=head["dtype"], buffer=self._out.buf)
            future.set_result(BatchOutput(view.copy(), float(head["s"])))
        else:
            future.set_result(head)

    def _on_exit(self) -> None:
        process = self._process
        process.join(timeout=0)
        code = process.exitcode
        cause = _describe_exit(code)
        self._detach()
        future, kind = self._pending, self._pending_kind
        self._pending = None
        if future is not None and not future.done():
            what = "mid-batch" if kind == "batch" else f"during {kind}"
            future.set_exception(
                WorkerDied(f"{self.label} (pid {process.pid}) died {what}: {cause}")
            )
        if not self._stopping and self.on_exit is not None:
            self.on_exit(self, cause)

    def _detach(self) -> None:
        loop = asyncio.get_running_loop()
        if self._conn is not None:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(self._conn.fileno())
            self._conn.close()
            self._conn = None
        if self._process is not None:
            with contextlib.suppress(ValueError, OSError):
                loop.remove_reader(self._process.sentinel)


def _fit(seg: shared_memory.SharedMemory | None, nbytes: int) -> shared_memory.SharedMemory:
    """``seg`` if it holds ``nbytes``, else a new segment twice as big (the old one unlinked)."""
    if seg is not None and seg.size >= nbytes:
        return seg
    if seg is not None:
        seg.close()
        seg.unlink()
    size = max(1 << 16, 1 << max(nbytes - 1, 1).bit_length())
    return shared_memory.SharedMemory(create=True, size=size)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "ended (exit status unknown)"
    if code < 0:
        try:
            return f"killed by signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"
