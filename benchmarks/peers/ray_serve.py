"""Ray Serve as a peer: ``@serve.batch`` in one replica, behind Ray's own HTTP proxy.

The served process is ``servers/ray_app.py`` run by the Python of a venv of its own
(Ray pins its own grpcio, pydantic, starlette…; none of it may meet ours). Its knobs
are the two of ``@serve.batch``, the ones a Ray user tunes: ``max_batch_size`` and
``batch_wait_timeout_s`` (how long a partial batch waits for more). The waits span
~ a sixth of a batch-1 run (1 ms) to ~ two thirds of a batch-32 run (20 ms) of the
wide MLP on one core; the sizes, a batch well inside a 100 ms budget (16) and the
largest any setting may form (64).

Ray starts processes of its own (GCS, raylet, dashboard and runtime-env agents, log
monitor, and workers: the Serve controller, the HTTP proxy, the replica); the script
stops them all with ``ray.shutdown()`` on SIGINT. The workers put themselves in
process groups of their own (still in the server's session), out of reach of the
harness's ``killpg``; should the script die before its shutdown, the raylet's end
normally takes them along, and the harness kills whatever of the session, or
carrying the launch's tag in its environment, is still there (``procs.reap``);
``after_stop`` removes Ray's session directory when it could not live in ``workdir`` (Ray's socket
paths must stay under the 107-byte limit of a Unix socket path).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.peers.systems import Knobs, Launch, ModelFiles
from benchmarks.peers.venvs import CACHE, ensure_venv

RAY_VERSION = "2.60.0"
REQUIREMENTS = (f"ray[serve]=={RAY_VERSION}", "onnxruntime==1.32.0", "numpy==2.4.6")
SCRIPT = Path(__file__).resolve().parent / "servers" / "ray_app.py"
# Ray's session dir adds ~60 bytes of "session_<date>_<pid>/sockets/plasma_store".
MAX_TEMP_DIR_LEN = 40
ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",  # no usage report: nothing may reach the network
    "RAY_DEDUP_LOGS": "0",
    "PYTHONUNBUFFERED": "1",
}


class RayServe:
    """The ``System`` for Ray Serve (see the module docstring)."""

    name = "ray"
    version = f"ray[serve] {RAY_VERSION} (onnxruntime 1.32.0)"
    grid: tuple[Knobs, ...] = tuple(
        {"max_batch_size": size, "batch_wait_timeout_s": wait}
        for size in (16, 64)
        for wait in (0.001, 0.005, 0.02)
    )

    def __init__(self) -> None:
        self.python = CACHE / "ray" / "bin" / "python"

    def install(self, cache: Path, logs: Path) -> None:
        """The ``ray`` venv under ``cache``, built once; ``import ray.serve`` proves it."""
        self.python = ensure_venv("ray", REQUIREMENTS, logs, cache=cache, check_import="ray.serve")

    def launch(
        self, model: ModelFiles, knobs: Knobs, port: int, threads: int, workdir: Path
    ) -> Launch:
        temp = workdir / "ray"
        own_temp = len(str(temp)) > MAX_TEMP_DIR_LEN
        if own_temp:
            temp = Path(tempfile.mkdtemp(prefix="qb-ray-"))

        def after_stop(_pgid: int) -> None:
            if own_temp:
                shutil.rmtree(temp, ignore_errors=True)

        argv = [
            str(self.python), str(SCRIPT),
            "--model", str(model.onnx), "--name", model.name,
            "--input-name", model.input_name, "--output-name", model.output_name,
            "--sample-shape", ",".join(str(d) for d in model.sample_shape),
            "--port", str(port), "--threads", str(threads),
            "--max-batch-size", str(int(knobs["max_batch_size"])),
            "--batch-wait-timeout-s", str(float(knobs["batch_wait_timeout_s"])),
            "--temp-dir", str(temp),
        ]  # fmt: skip
        return Launch(argv, env=dict(ENV), cwd=workdir, after_stop=after_stop)

    def request_parameters(self, slo_ms: float, knobs: Knobs | None = None) -> dict[str, Any]:
        """Ray Serve has no per-request deadline field."""
        return {}
