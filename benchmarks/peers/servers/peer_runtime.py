"""What the peers' server scripts share: the ONNX Runtime session and the batch log.

They run in the peers' own venvs (Triton's, MLServer's), so this imports nothing of
qosbatch: only the standard library and onnxruntime, which every peer venv has. The
batch log counts the sizes the peer's batcher formed, reported at shutdown: the
evidence that the peer did batch, and how much of the time its model took.
"""

from __future__ import annotations

import collections
import json
import threading
from collections.abc import Callable

import onnxruntime as ort


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


def ort_session(path: str, threads: int) -> ort.InferenceSession:
    """The same ORT settings as qosbatch's ONNX backend: ``threads`` intra-op, 1 inter-op."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
