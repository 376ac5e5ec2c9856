"""The worker process's side: build the model, then run batches from shared memory.

Started by ``WorkerHandle`` as a spawned child; everything here runs in it. It
answers each JSON header on the pipe: run a batch (segments in and out, the CPUs to
pin to and the threads to use), time batches for a first latency table, or stop.
``load_model`` and ``time_batches`` also serve the in-process worker.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import asdict
from multiprocessing import shared_memory
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from qosbatch.models.loading import ModelRef
from qosbatch.serve.worker_types import ModelIO, WorkerSpec


def worker_main(conn: Connection, spec: WorkerSpec, cpus: tuple[int, ...]) -> None:
    """Entry point of a worker process: build the model, then run batches until told to stop."""
    # Ctrl-C or SIGTERM to the process group: the server drains first, then stops us (a
    # worker that died with its group would fail the batches the drain is finishing).
    # Should the server die instead, the pipe closes and we exit on our own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.sched_setaffinity(0, cpus)
    try:
        backend, io = load_model(spec, len(cpus))
    except Exception as exc:
        send(conn, {"ready": False, "error": _first_line(exc)})
        return
    send(conn, {"ready": True, "pid": os.getpid(), **asdict(io)})
    segments: dict[str, shared_memory.SharedMemory] = {}
    pinned = tuple(cpus)
    while True:
        try:
            head = json.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return  # the server is gone
        if head["op"] == "stop":
            return
        try:
            wanted = tuple(head["cpus"])
            if wanted != pinned:
                os.sched_setaffinity(0, wanted)
                backend.set_threads(len(wanted))
                pinned = wanted
            if head["op"] == "calibrate":
                send(conn, {"ok": True, "points": time_batches(backend, spec.ref, head["batches"])})
                continue
            src = _segment(segments, head["in"])
            shape = tuple(head["shape"])
            batch = np.ndarray(shape, dtype=head["dtype"], buffer=src.buf)
            start = time.perf_counter()
            out = np.ascontiguousarray(backend.run(batch))
            took = time.perf_counter() - start
            dst = _segment(segments, head["out"])
            if out.nbytes > dst.size:
                raise ValueError(f"output of {out.nbytes} bytes exceeds its {dst.size}-byte buffer")
            np.ndarray(out.shape, dtype=out.dtype, buffer=dst.buf)[...] = out
            send(conn, {"ok": True, "shape": list(out.shape), "dtype": str(out.dtype), "s": took})
        except Exception as exc:
            send(conn, {"ok": False, "error": _first_line(exc)})


def load_model(spec: WorkerSpec, threads: int) -> tuple[Any, ModelIO]:
    """The backend, and what a first batch of one says about the model's tensors."""
    from qosbatch.models.backends import make_backend, sample_batch

    backend = make_backend(spec.ref, spec.backend, spec.device, threads=threads)
    sample = sample_batch(spec.ref, 1)
    out = np.asarray(backend.run(sample))
    return backend, ModelIO(
        str(sample.dtype), tuple(sample.shape[1:]), str(out.dtype), tuple(out.shape[1:])
    )


def time_batches(backend: Any, ref: ModelRef, batches: list[int]) -> list[list[float]]:
    """Median seconds per batch size on the current cores, for a first latency table."""
    from qosbatch.models.backends import sample_batch

    points = []
    for b in batches:
        data = sample_batch(ref, b)
        backend.run(data)  # warm-up: oneDNN builds its kernels for the shape
        times = []
        for _ in range(3):
            start = time.perf_counter()
            backend.run(data)
            times.append(time.perf_counter() - start)
        points.append([b, float(np.median(times))])
    return points


def _segment(cache: dict[str, shared_memory.SharedMemory], name: str) -> shared_memory.SharedMemory:
    seg = cache.get(name)
    if seg is None:
        for old in cache.values():  # the parent grew its buffers; the old ones are gone
            old.close()
        cache.clear()
        # (Spawned children share the parent's resource tracker, where attaching is a
        # no-op: the parent, which owns the segment, unlinks it once.)
        seg = shared_memory.SharedMemory(name=name)
        cache[name] = seg
    return seg


def send(conn: Connection, message: dict[str, Any]) -> None:
    conn.send_bytes(json.dumps(message).encode())


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
