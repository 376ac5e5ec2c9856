"""BentoML as a peer: adaptive batching (``batchable=True``) behind a KServe v2 front.

The service code is ``servers/bentoml_service.py`` (its docstring says why it is
two services: a v2 ingress mounting FastAPI, calling a batchable model service
through ``bentoml.depends``), served by ``bentoml serve`` from a venv of its own
(BentoML pins its own starlette, pydantic, uvicorn…), one worker per service,
with BentoML's tracking off (``BENTOML_DO_NOT_TRACK``) and its home in ``workdir``.

Knobs, BentoML's own: ``max_batch_size`` and ``max_latency_ms``. The latter is not
a wait: BentoML's CORK dispatcher picks its wait itself (from the waits and batch
run times it observed) and uses ``max_latency_ms`` as a cap on a request's
*predicted* latency (its wait so far plus the predicted run time of the batch it
would join): a request over the cap is shed with a 503. The values span a tight
cap that keeps batches small and sheds early under load (25 ms, ~ a batch of 24
of the wide MLP on one core), one the size of a 100 ms budget (100), and a loose
one that almost never sheds within a benchmark's load (1000; BentoML's default,
60 s, would let an overloaded queue grow for a minute). Two traits of the
dispatcher show in short runs: its first ~11 batches are a warm-up of sizes 1-3
(it fits its run-time model on them), and each shed request is logged with a
traceback at ERROR (BentoML's own logging, left as it is).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.peers.systems import Knobs, Launch, ModelFiles
from benchmarks.peers.venvs import CACHE, ensure_venv

BENTOML_VERSION = "1.4.40"
REQUIREMENTS = (
    f"bentoml=={BENTOML_VERSION}",
    "fastapi==0.165.0",
    "onnxruntime==1.32.0",
    "numpy==2.4.6",
)
SERVERS = Path(__file__).resolve().parent / "servers"
SERVICE = "bentoml_service:V2Ingress"


class BentoMLPeer:
    """The ``System`` for BentoML (see the module docstring)."""

    name = "bentoml"
    version = f"bentoml {BENTOML_VERSION} (fastapi 0.165.0, onnxruntime 1.32.0)"
    grid: tuple[Knobs, ...] = tuple(
        {"max_batch_size": size, "max_latency_ms": cap}
        for size in (16, 64)
        for cap in (25, 100, 1000)
    )

    def __init__(self) -> None:
        self.bin = CACHE / "bentoml" / "bin"

    def install(self, cache: Path, logs: Path) -> None:
        """The ``bentoml`` venv under ``cache``, built once; ``import bentoml`` proves it."""
        python = ensure_venv("bentoml", REQUIREMENTS, logs, cache=cache, check_import="bentoml")
        self.bin = python.parent

    def launch(
        self, model: ModelFiles, knobs: Knobs, port: int, threads: int, workdir: Path
    ) -> Launch:
        argv = [
            str(self.bin / "bentoml"), "serve", SERVICE, "--working-dir", str(SERVERS),
            "--host", "127.0.0.1", "--port", str(port),
        ]  # fmt: skip
        env = {
            "QB_ONNX": str(model.onnx),
            "QB_MODEL_NAME": model.name,
            "QB_INPUT_NAME": model.input_name,
            "QB_OUTPUT_NAME": model.output_name,
            "QB_SAMPLE_SHAPE": ",".join(str(d) for d in model.sample_shape),
            "QB_THREADS": str(threads),
            "QB_MAX_BATCH_SIZE": str(int(knobs["max_batch_size"])),
            "QB_MAX_LATENCY_MS": str(int(knobs["max_latency_ms"])),
            "BENTOML_DO_NOT_TRACK": "True",  # no usage tracking: nothing may reach the network
            "BENTOML_HOME": str(workdir / "bentoml-home"),  # not ~/bentoml
            "PYTHONDONTWRITEBYTECODE": "1",  # no __pycache__ in the source tree
            "PYTHONUNBUFFERED": "1",
        }
        return Launch(argv, env=env, cwd=workdir)

    def request_parameters(self, slo_ms: float, knobs: Knobs | None = None) -> dict[str, Any]:
        """BentoML has no per-request deadline field (``max_latency_ms`` is per API)."""
        return {}
