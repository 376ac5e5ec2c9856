"""Seldon MLServer 1.7.1 with adaptive batching, as a system of the comparison.

MLServer batches by two knobs in model-settings.json: ``max_batch_size`` and
``max_batch_time`` (seconds). It has no ONNX runtime, so the model is served by a
custom runtime (``servers/mlserver_runtime.py``) that runs the shared ONNX file with
ONNX Runtime. It has no per-request deadline either: ``request_parameters`` is {}.
Extra request ``parameters`` (such as ``{"slo_ms": 100}``) are accepted and ignored.

``parallel_workers: 0``: MLServer 1.7.1's worker processes die at start with the
uvloop that installs beside it (0.23.0: ``RuntimeError: There is no current event
loop in thread 'MainThread'`` from ``asyncio.get_event_loop()`` in
``Worker._ignore_signals``, after ``install_uvloop_event_loop()``; the replacement
worker dies the same way, the model fails to load, and the server exits with status
0). Pinning an older uvloop would also do, but would make the venv differ from what
``pip install mlserver==1.7.1`` gives, and a worker would put a second process with
a second copy of the model on the one core the server is pinned to, and pickle every
batch through a queue. With 0 the model runs in the server's process; the runtime
runs ORT in a one-thread executor so that the event loop keeps forming batches
meanwhile, as it does with a worker.

HTTP binds 127.0.0.1:port; gRPC (always started by MLServer) binds 127.0.0.1 on a
free port; the metrics server is off (``metrics_endpoint: null``). SIGINT stops it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.peers.procs import free_port
from benchmarks.peers.systems import Knobs, Launch, ModelFiles
from benchmarks.peers.venvs import ensure_venv

MLSERVER = "1.7.1"
REQUIREMENTS = (f"mlserver=={MLSERVER}", "onnxruntime==1.32.0", "numpy==2.4.6")
SERVERS = Path(__file__).resolve().parent / "servers"  # holds mlserver_runtime.py


class MLServerPeer:
    """MLServer 1.7.1: adaptive batching, a custom ORT runtime, no parallel workers."""

    name = "mlserver"
    version = f"mlserver {MLSERVER}"
    grid: tuple[Knobs, ...] = tuple(
        {"max_batch_size": b, "max_batch_time": t} for b in (16, 64) for t in (0.001, 0.005, 0.02)
    )

    def __init__(self) -> None:
        self.vpy: Path | None = None

    def install(self, cache: Path, logs: Path) -> None:
        """The venv, from this interpreter's CPython (3.11: MLServer 1.7.1 supports 3.9-3.12)."""
        self.vpy = ensure_venv(
            "mlserver",
            REQUIREMENTS,
            logs,
            python=sys.executable,
            cache=cache,
            check_import="mlserver, onnxruntime",
        )

    def launch(
        self, model: ModelFiles, knobs: Knobs, port: int, threads: int, workdir: Path
    ) -> Launch:
        if self.vpy is None:
            raise RuntimeError("MLServerPeer.launch before install")
        if int(knobs["max_batch_size"]) > model.max_batch:
            raise ValueError(f"max_batch_size {knobs['max_batch_size']} > {model.max_batch}")
        settings = {
            "debug": False,  # no log line per request
            "host": "127.0.0.1",  # HTTP and gRPC both bind here
            "http_port": port,
            "grpc_port": free_port(),
            "metrics_endpoint": None,  # no metrics server, so no third port
            "parallel_workers": 0,  # see the module docstring
            "model_repository_root": str(workdir),
            "load_models_at_startup": True,
            "environments_dir": str(workdir / ".envs"),
            "metrics_dir": str(workdir / ".metrics"),
        }
        model_settings = {
            "name": model.name,
            "implementation": "mlserver_runtime.OnnxModel",
            "max_batch_size": int(knobs["max_batch_size"]),
            "max_batch_time": float(knobs["max_batch_time"]),
            "inputs": [
                {"name": model.input_name, "datatype": "FP32", "shape": [-1, *model.sample_shape]}
            ],
            "parameters": {"uri": str(model.onnx), "extra": {"threads": threads}},
        }
        (workdir / "settings.json").write_text(json.dumps(settings, indent=2))
        model_dir = workdir / model.name
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
        env = {"PYTHONPATH": str(SERVERS), "PYTHONUNBUFFERED": "1"}
        return Launch([str(self.vpy.parent / "mlserver"), "start", str(workdir)], env, workdir)

    def request_parameters(self, slo_ms: float, knobs: Knobs | None = None) -> dict[str, Any]:
        """{}: MLServer has no deadline a request could carry (extra parameters are ignored)."""
        return {}
