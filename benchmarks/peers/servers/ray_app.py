"""The wide-mlp ONNX model behind Ray Serve, batched by ``@serve.batch``, speaking KServe v2 JSON.

Run by the Python of the Ray peer's own venv (ray[serve], onnxruntime, numpy; never
qosbatch or torch), pinned by the harness with ``taskset``:

    python ray_app.py --model m.onnx --name wide-mlp --port 8000 --threads 1 \
        --max-batch-size 16 --batch-wait-timeout-s 0.005 --temp-dir /tmp/x/ray

It is the pattern Ray's batching guide teaches: one deployment, one replica, whose
HTTP handler (a Starlette request, ``route_prefix="/"``) parses a request and awaits
a ``@serve.batch`` method that runs one ONNX Runtime call per batch. Two settings
differ from Ray's defaults, both because the benchmark measures the batcher:

* ``max_ongoing_requests`` is 1000, not 5: Ray's router admits only that many
  requests into a replica and queues the rest in front of it, where
  ``@serve.batch`` cannot see them (batches would never exceed 5);
* access logging is off: one log line per request is CPU the single core would
  spend on something other than serving.

It starts a local Ray of its own (as many logical CPUs as it is pinned to, no
dashboard, bound to loopback, usage stats off through the environment) and on
SIGINT or SIGTERM prints the batch sizes the replica ran, then ``ray.shutdown()``:
that stops the raylet, GCS and every worker it started. (``serve.shutdown()`` first
waits for its controller and was seen to hang for ~30 s, so it is not called.)
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import sys
import threading
import time
from typing import Any

import numpy as np
import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

APP = "v2"
# Ray's default (5) holds requests in the router, out of the batcher's sight.
MAX_ONGOING = 1000
OBJECT_STORE_BYTES = 128 * 2**20  # nothing big goes through it; Ray's default is 30% of RAM


def log(msg: str) -> None:
    print(f"[ray_app] {msg}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="the ONNX file")
    ap.add_argument("--name", required=True, help="the served model name")
    ap.add_argument("--input-name", default="input")
    ap.add_argument("--output-name", default="output")
    ap.add_argument("--sample-shape", default="784", help="one sample's shape, comma-separated")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    ap.add_argument("--max-batch-size", type=int, required=True)
    ap.add_argument("--batch-wait-timeout-s", type=float, required=True)
    ap.add_argument("--temp-dir", default=None, help="Ray's session directory root")
    return ap.parse_args(argv)


def make_deployment(max_batch_size: int, batch_wait_timeout_s: float, num_cpus: float) -> Any:
    """The deployment class, with the knobs written into its decorators as a Ray user would.

    Built in a function because the knobs come from the command line; Ray pickles the
    class by value (this script is ``__main__``), so the replica needs no import of it.
    """

    @serve.deployment(
        num_replicas=1,
        max_ongoing_requests=MAX_ONGOING,
        ray_actor_options={"num_cpus": num_cpus},
        logging_config={"enable_access_log": False},
    )
    class V2Model:
        """One replica: the ONNX session, the ``@serve.batch`` queue, the two v2 routes."""

        def __init__(
            self,
            onnx_path: str,
            name: str,
            input_name: str,
            output_name: str,
            sample_shape: list[int],
            threads: int,
        ) -> None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            self.session = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
            self.name = name
            self.input_name = input_name
            self.output_name = output_name
            self.sample_shape = sample_shape
            out_shape = self.session.get_outputs()[0].shape
            self.out_sample = [d if isinstance(d, int) else -1 for d in out_shape[1:]]
            self.batch_sizes: collections.Counter[int] = collections.Counter()
            self.meta = {
                "name": name,
                "versions": ["1"],
                "platform": "onnxruntime_onnx",
                "inputs": [{"name": input_name, "datatype": "FP32", "shape": [-1, *sample_shape]}],
                "outputs": [
                    {"name": output_name, "datatype": "FP32", "shape": [-1, *self.out_sample]}
                ],
            }
            # The first run allocates ORT's buffers; keep it out of the first request.
            self.session.run(None, {input_name: np.zeros((1, *sample_shape), np.float32)})

        @serve.batch(max_batch_size=max_batch_size, batch_wait_timeout_s=batch_wait_timeout_s)
        async def infer(self, samples: list[np.ndarray]) -> list[np.ndarray]:
            """One ONNX Runtime call for the whole batch (Ray's documented batching pattern)."""
            self.batch_sizes[len(samples)] += 1
            batch = np.concatenate(samples, axis=0)
            out = self.session.run([self.output_name], {self.input_name: batch})[0]
            return [out[i : i + 1] for i in range(len(samples))]

        def stats(self) -> dict[int, int]:
            """Batch size → how many batches of that size ran; printed at shutdown."""
            return dict(sorted(self.batch_sizes.items()))

        async def __call__(self, request: Request) -> Response:
            parts = request.url.path.strip("/").split("/")
            if len(parts) < 3 or parts[:2] != ["v2", "models"] or parts[2] != self.name:
                return JSONResponse({"error": f"no route {request.url.path}"}, status_code=404)
            if len(parts) == 3 and request.method == "GET":
                return JSONResponse(self.meta)
            if len(parts) != 4 or parts[3] != "infer" or request.method != "POST":
                return JSONResponse({"error": f"no route {request.url.path}"}, status_code=404)
            try:
                tensor = (await request.json())["inputs"][0]
                x = np.asarray(tensor["data"], dtype=np.float32).reshape([1, *self.sample_shape])
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                return JSONResponse({"error": f"bad v2 request: {exc}"}, status_code=400)
            y = await self.infer(x)
            return JSONResponse(
                {
                    "model_name": self.name,
                    "outputs": [
                        {
                            "name": self.output_name,
                            "shape": list(y.shape),
                            "datatype": "FP32",
                            "data": y.ravel().tolist(),
                        }
                    ],
                }
            )

    return V2Model


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sample_shape = [int(d) for d in args.sample_shape.split(",")]
    cpus = len(os.sched_getaffinity(0))  # what taskset left us
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    t0 = time.monotonic()
    ray.init(
        num_cpus=cpus,
        include_dashboard=False,
        log_to_driver=False,  # the replica's log stays in the session dir
        _node_ip_address="127.0.0.1",
        object_store_memory=OBJECT_STORE_BYTES,
        _temp_dir=args.temp_dir,
    )
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": args.port})
        deployment = make_deployment(
            args.max_batch_size, args.batch_wait_timeout_s, float(min(args.threads, cpus))
        )
        app = deployment.bind(
            os.path.abspath(args.model),
            args.name,
            args.input_name,
            args.output_name,
            sample_shape,
            args.threads,
        )
        handle = serve.run(app, name=APP, route_prefix="/")
        log(
            f"serving {args.name} on http://127.0.0.1:{args.port} "
            f"(max_batch_size={args.max_batch_size}, "
            f"batch_wait_timeout_s={args.batch_wait_timeout_s}, {cpus} CPU(s), "
            f"{args.threads} ORT thread(s)) after {time.monotonic() - t0:.1f} s"
        )
        while not stop.wait(1.0):
            pass
        for sig in (signal.SIGINT, signal.SIGTERM):
            # A second signal must not cut the shutdown short and leave Ray half stopped.
            signal.signal(sig, signal.SIG_IGN)
        try:
            sizes = handle.stats.remote().result(timeout_s=5)
            total = sum(n * c for n, c in sizes.items())
            log(f"batch sizes (size: count): {json.dumps(sizes)}; {total} samples in all")
        except Exception as exc:  # the histogram is evidence, not a reason to hang
            log(f"no batch-size histogram: {exc!r}")
    finally:
        log("shutting Ray down")
        ray.shutdown()
        log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
