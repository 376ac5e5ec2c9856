"""Triton's dynamic batcher, through PyTriton, in front of the shared ONNX model on ORT.

    PYTHON triton_app.py '{"onnx": ..., "name": ..., "port": ..., "threads": ...,
        "workspace": ..., "max_batch_size": ..., "max_queue_delay_microseconds": ...,
        "preferred_batch_size": [...], "max_queue_size": ..., "instances": ...}'

It runs in the PyTriton venv (a shared-library CPython 3.12), so it imports only what
that venv holds: PyTriton, NumPy and ONNX Runtime, never qosbatch nor torch.

Triton does the serving: the KServe v2 HTTP endpoint on 127.0.0.1:port (gRPC and
metrics off, so that nothing else is bound), the dynamic batcher with the two knobs
its users tune, and its queue policy: requests time out in the queue with REJECT,
and each request may set its own timeout (``"parameters": {"timeout": µs}``), which
is Triton's only way to act on a latency budget. PyTriton then hands each batch
Triton formed to ``infer`` in this process, which runs one ORT call on it; with
``instances`` above 1, Triton runs that many batches at once, each on a thread of
its own sharing the one ORT session (whose ``run`` is thread-safe).

Every batch's size is counted; on the way out (SIGINT, which is what stops PyTriton
in order) the counts are printed as one line, ``[triton_app] batch sizes {...}``,
so that the server's log shows whether batching happened.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from types import FrameType
from typing import Any

import numpy as np
from peer_runtime import BatchLog, ort_session
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, QueuePolicy, Tensor, TimeoutAction
from pytriton.triton import Triton, TritonConfig

DEFAULT_TIMEOUT_US = 3_600_000_000  # an hour: what a request without a "timeout" gets
_ORT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64}


def say(msg: str) -> None:
    print(f"[triton_app] {msg}", flush=True)


def tensor_of(arg: Any) -> Tensor:
    """PyTriton's description of an ORT input/output: its shape without the batch axis."""
    dims = tuple(d if isinstance(d, int) and d > 0 else -1 for d in arg.shape[1:])
    return Tensor(name=arg.name, dtype=_ORT_TYPES.get(arg.type, np.float32), shape=dims)


def serve(cfg: dict[str, Any]) -> None:
    """Bind the model under Triton with ``cfg``'s knobs and serve until SIGINT."""
    session = ort_session(cfg["onnx"], int(cfg["threads"]))
    source, sink = session.get_inputs()[0], session.get_outputs()[0]
    in_dtype = _ORT_TYPES.get(source.type, np.float32)
    batches = BatchLog(say)

    def instance() -> Any:
        """One model instance's callable: a new function object each, since PyTriton
        failed to start two instances given the same one twice (handshake refused)."""

        @batch
        def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
            x = np.ascontiguousarray(inputs[source.name], dtype=in_dtype)
            t0 = time.perf_counter()
            y = session.run([sink.name], {source.name: x})[0]
            batches.add(len(x), time.perf_counter() - t0)
            return {sink.name: y}

        return infer

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # serve() stops Triton in order on this, and on nothing else

    signal.signal(signal.SIGTERM, interrupt)

    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=int(cfg["port"]),
        allow_grpc=False,  # only HTTP is driven; fewer ports bound, fewer clashes
        allow_metrics=False,
        exit_timeout_secs=5,
    )
    # Triton lets a request's "timeout" only *shorten* a non-zero default (PolicyQueue::
    # Enqueue takes min(default, request) and ignores the request when the default is 0,
    # which means "none"), so the default is an hour: never reached, but overridable.
    policy = QueuePolicy(
        timeout_action=TimeoutAction.REJECT,
        default_timeout_microseconds=DEFAULT_TIMEOUT_US,
        allow_timeout_override=True,  # else a request's "timeout" parameter is ignored
        max_queue_size=int(cfg.get("max_queue_size", 0)),  # 0: unbounded; else full -> reject
    )
    batcher = DynamicBatcher(
        max_queue_delay_microseconds=int(cfg["max_queue_delay_microseconds"]),
        preferred_batch_size=list(cfg.get("preferred_batch_size") or []) or None,
        default_queue_policy=policy,
    )
    t0 = time.monotonic()
    try:
        with Triton(config=config, workspace=cfg["workspace"]) as triton:
            triton.bind(
                model_name=cfg["name"],
                infer_func=[instance() for _ in range(int(cfg.get("instances", 1)))],
                inputs=[tensor_of(source)],
                outputs=[tensor_of(sink)],
                config=ModelConfig(max_batch_size=int(cfg["max_batch_size"]), batcher=batcher),
            )
            spent = time.monotonic() - t0
            say(f"serving {cfg['name']} on 127.0.0.1:{cfg['port']} after {spent:.1f} s")
            triton.serve()
    except KeyboardInterrupt:
        pass
    finally:
        batches.report()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    cfg = json.loads(argv[1])
    say(f"config {json.dumps(cfg)}")
    serve(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
