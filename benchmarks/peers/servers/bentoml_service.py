"""The wide-mlp ONNX model behind BentoML's adaptive batching, speaking KServe v2 JSON.

Served by ``bentoml serve bentoml_service:V2Ingress`` from the BentoML peer's own
venv (bentoml, fastapi, onnxruntime, numpy; never qosbatch or torch). Its settings
come from the environment (``QB_*``, set by ``benchmarks/peers/bentoml_peer.py``),
because BentoML reads ``@bentoml.api(max_batch_size=..., max_latency_ms=...)`` when
it imports this module.

Two services, BentoML's documented "model composition" topology:

* ``OnnxModel`` holds the ONNX Runtime session; its ``predict`` is
  ``batchable=True``: BentoML's CORK dispatcher gathers concurrent calls into one
  array (``max_batch_size``, ``max_latency_ms``) and runs one ONNX call per batch.
* ``V2Ingress`` mounts a FastAPI app on ``/v2`` (BentoML's ASGI integration) with
  the two v2 routes, and calls ``predict`` through ``bentoml.depends(OnnxModel)``.

Why not one service: a batchable API must take exactly one batchable argument
(an array) and answers each caller with its slice of the batch output, so neither
the v2 request body (``inputs`` *and* ``parameters``) nor the v2 answer (an object
around ``outputs``) can be its own schema; and calling the batchable method
in-process bypasses the dispatcher (BentoML batches only calls that arrive at the
API's endpoint: HTTP, or a dependency's proxy). The price is a second process and
one local hop (a Unix socket, pickled arrays) per request; the proxy's aiohttp
connector allows 100 calls in flight, more than the largest batch (64).

Two service settings differ from BentoML's defaults:

* ``runner_connection`` of ``OnnxModel`` (read by the *caller's* proxy): since
  1.4.30 the proxy behind ``bentoml.depends`` closes its HTTP session every 100
  calls or 300 s, and the calls still in flight on it fail ("Connector is closed",
  "Server disconnected": bentoml/BentoML#5540, #5544). With a batcher there are
  always calls in flight, so a 200-request burst lost most of them; the session is
  made to live for the whole run instead, which BentoML's configuration allows.
* access logging is off in both: one log line per request (two here) is CPU the
  server's core would spend on something other than serving.

``OnnxModel`` counts the batch sizes it ran and prints them when it shuts down
(and every ``QB_REPORT_S`` seconds if set), which is the evidence that batching
happened.
"""

import collections
import os
import threading
import time
from typing import Any

import bentoml
import numpy as np
from bentoml.exceptions import BentoMLException
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

ONNX_PATH = os.environ["QB_ONNX"]
MODEL_NAME = os.environ.get("QB_MODEL_NAME", "wide-mlp")
INPUT_NAME = os.environ.get("QB_INPUT_NAME", "input")
OUTPUT_NAME = os.environ.get("QB_OUTPUT_NAME", "output")
SAMPLE_SHAPE = [int(d) for d in os.environ.get("QB_SAMPLE_SHAPE", "784").split(",")]
THREADS = int(os.environ.get("QB_THREADS", "1"))
MAX_BATCH_SIZE = int(os.environ["QB_MAX_BATCH_SIZE"])
MAX_LATENCY_MS = int(os.environ["QB_MAX_LATENCY_MS"])
REPORT_S = float(os.environ.get("QB_REPORT_S", "0"))  # 0: only at shutdown


def say(msg: str) -> None:
    """To stdout, which the arbiter passes on to the server log whatever BentoML's log level."""
    print(f"[bentoml_service] {msg}", flush=True)


NO_ACCESS_LOG = {"access": {"enabled": False}}
# Never recycle the ingress's session to the model mid-run (see the module docstring).
KEEP_CONNECTION = {"max_requests": 2**31 - 1, "max_age": 7 * 86400.0}


@bentoml.service(
    name="onnx_model",
    workers=1,
    threads=1,
    logging=NO_ACCESS_LOG,
    runner_connection=KEEP_CONNECTION,
)
class OnnxModel:
    """The model, and the batcher in front of it (one worker, one inference at a time)."""

    def __init__(self) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = THREADS
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(ONNX_PATH, opts, providers=["CPUExecutionProvider"])
        out_shape = self.session.get_outputs()[0].shape
        out_sample = [d if isinstance(d, int) else -1 for d in out_shape[1:]]
        self.meta = {
            "name": MODEL_NAME,
            "versions": ["1"],
            "platform": "onnxruntime_onnx",
            "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, *SAMPLE_SHAPE]}],
            "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, *out_sample]}],
        }
        self.batch_sizes: collections.Counter[int] = collections.Counter()
        self._lock = threading.Lock()
        # The first run allocates ORT's buffers; keep it out of the first request.
        self.session.run(None, {INPUT_NAME: np.zeros((1, *SAMPLE_SHAPE), np.float32)})
        if REPORT_S > 0:
            threading.Thread(target=self._report_every, daemon=True).start()
        say(
            f"{MODEL_NAME} loaded: max_batch_size={MAX_BATCH_SIZE}, "
            f"max_latency_ms={MAX_LATENCY_MS}, {THREADS} ORT thread(s)"
        )

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=MAX_LATENCY_MS)
    def predict(self, x: np.ndarray) -> np.ndarray:
        """One ONNX Runtime call for all the calls the dispatcher gathered."""
        with self._lock:
            self.batch_sizes[len(x)] += 1
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: x.astype(np.float32, copy=False)})[0]

    @bentoml.api
    def metadata(self) -> dict[str, Any]:
        """v2 model metadata; answering at all says the model is loaded."""
        return self.meta

    def _histogram(self) -> str:
        with self._lock:
            sizes = dict(sorted(self.batch_sizes.items()))
        total = sum(n * c for n, c in sizes.items())
        return f"batch sizes (size: count): {sizes}; {total} samples in all"

    def _report_every(self) -> None:
        while True:
            time.sleep(REPORT_S)
            say(self._histogram())

    @bentoml.on_shutdown
    def report(self) -> None:
        say(self._histogram())


app = FastAPI(title="KServe v2 front of a BentoML service")


@bentoml.service(name="v2_ingress", workers=1, logging=NO_ACCESS_LOG)
@bentoml.asgi_app(app, path="/v2")
class V2Ingress:
    """The v2 routes; every inference goes through ``OnnxModel.predict``'s dispatcher."""

    model = bentoml.depends(OnnxModel)

    @app.get("/models/{name}")
    async def model_metadata(self, name: str) -> JSONResponse:
        if name != MODEL_NAME:
            return JSONResponse({"error": f"unknown model {name}"}, status_code=404)
        return JSONResponse(await self.model.to_async.metadata())

    @app.post("/models/{name}/infer")
    async def infer(self, name: str, request: Request) -> JSONResponse:
        if name != MODEL_NAME:
            return JSONResponse({"error": f"unknown model {name}"}, status_code=404)
        try:
            tensor = (await request.json())["inputs"][0]
            x = np.asarray(tensor["data"], dtype=np.float32).reshape([1, *SAMPLE_SHAPE])
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            return JSONResponse({"error": f"bad v2 request: {exc}"}, status_code=400)
        try:
            y = np.asarray(await self.model.to_async.predict(x))
        except BentoMLException as exc:  # 503 when the dispatcher shed it (max_latency_ms)
            return JSONResponse({"error": str(exc)}, status_code=int(exc.error_code))
        return JSONResponse(
            {
                "model_name": MODEL_NAME,
                "outputs": [
                    {
                        "name": OUTPUT_NAME,
                        "shape": list(y.shape),
                        "datatype": "FP32",
                        "data": y.ravel().tolist(),
                    }
                ],
            }
        )
