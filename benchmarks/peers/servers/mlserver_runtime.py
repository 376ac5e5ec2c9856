"""An MLServer runtime that runs the shared ONNX file with ONNX Runtime, batch by batch.

MLServer has no ONNX runtime of its own, so this is the custom runtime a user would
write (``implementation: mlserver_runtime.OnnxModel`` in model-settings.json; the
folder of this file is put on PYTHONPATH by the adapter). It runs in the MLServer
venv and imports only what that venv holds: never qosbatch nor torch.

Adaptive batching (``max_batch_size``, ``max_batch_time``) merges the requests along
the first axis before ``predict`` and splits the answer's rows back, so ``predict``
takes a batch of B samples and must return B rows.

With ``parallel_workers: 0`` (see ``mlserver_peer.py``) ``predict`` runs in the
server's event loop; ORT is therefore called in a one-thread executor, so that the
loop goes on reading requests and forming the next batch while a batch runs, as it
would with the model in a worker process (ORT releases the GIL). One thread: the
batches MLServer dispatches concurrently run one after another, as in one worker.

The sizes of the batches run are counted and printed at exit (MLServer stops on
SIGINT, then the interpreter exits normally): ``[mlserver_runtime] batch sizes {...}``.
"""

from __future__ import annotations

import asyncio
import atexit
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse, MetadataTensor
from mlserver.utils import get_model_uri
from peer_runtime import BatchLog, ort_session

_ORT_TYPES = {"tensor(float)": (np.float32, "FP32"), "tensor(double)": (np.float64, "FP64")}


def say(msg: str) -> None:
    print(f"[mlserver_runtime] {msg}", flush=True)


# MLServer imports the runtime's module and then reloads it (settings.py, _reload_module);
# a reload keeps the module's globals, so the one log (and one atexit report) is kept.
def _new_log() -> BatchLog:
    log = BatchLog(say)
    atexit.register(log.report)
    return log


BATCHES: BatchLog = globals().get("BATCHES") or _new_log()


def metadata_of(arg: Any) -> MetadataTensor:
    """MLServer's description of an ORT input/output: -1 for the batch axis."""
    shape = [-1, *(d if isinstance(d, int) and d > 0 else -1 for d in arg.shape[1:])]
    return MetadataTensor(name=arg.name, datatype=_ORT_TYPES[arg.type][1], shape=shape)


class OnnxModel(MLModel):
    """One ORT session; ``parameters.extra.threads`` intra-op threads."""

    async def load(self) -> bool:
        path = await get_model_uri(self._settings)
        extra = (self._settings.parameters.extra if self._settings.parameters else None) or {}
        threads = int(extra.get("threads", 1))
        self._session = ort_session(path, threads)
        self._source = self._session.get_inputs()[0]
        self._sink = self._session.get_outputs()[0]
        self._dtype = _ORT_TYPES[self._source.type][0]
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ort")
        # What GET /v2/models/<name> answers, taken from the file when the settings omit it.
        if not self._settings.inputs:
            self._settings.inputs = [metadata_of(self._source)]
        if not self._settings.outputs:
            self._settings.outputs = [metadata_of(self._sink)]
        say(f"loaded {path} with {threads} intra-op thread(s)")
        return True

    def _run(self, x: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        y = self._session.run([self._sink.name], {self._source.name: x})[0]
        BATCHES.add(len(x), time.perf_counter() - t0)
        return y

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        request_input = next(
            (i for i in payload.inputs if i.name == self._source.name), payload.inputs[0]
        )
        x = np.ascontiguousarray(NumpyCodec.decode_input(request_input), dtype=self._dtype)
        loop = asyncio.get_running_loop()
        y = await loop.run_in_executor(self._executor, self._run, x)
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[NumpyCodec.encode_output(name=self._sink.name, payload=y)],
        )

    async def unload(self) -> bool:
        executor = getattr(self, "_executor", None)  # absent where load never ran here
        if executor is not None:
            executor.shutdown(wait=True)
        return True
