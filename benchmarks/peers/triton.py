"""NVIDIA Triton's dynamic batcher, through PyTriton, as a system of the comparison.

Triton is the reference a batching server is judged against. It runs here as
PyTriton (``nvidia-pytriton`` 0.7.0 carries ``tritonserver`` 2.51 in its wheel), with
the model as a Python callable that runs the shared ONNX file with ONNX Runtime
(``servers/triton_app.py``): Triton's own ONNX Runtime backend is not in the wheel,
and the Python callable keeps ORT's version and threads identical to the other
systems'. What is compared is Triton's scheduling: the dynamic batcher with its two
knobs, and its queue policy, which rejects a request whose own timeout (its latency
budget, given per request) runs out while it waits in the queue: the request is
answered 503 ``{"error": "Request timeout expired"}``. Triton takes a request's
``timeout`` only when it is shorter than a non-zero default, so the default is set
to an hour (see triton_app.py). Its deadline knobs are all in the grid (see
``calibrate.py``): the timeout less the batch's run time, ``max_queue_size`` (a full
queue rejects at once) and ``preferred_batch_size``; and so is its instance count (one
or two copies of the model on the core), because with one, a request that arrives
while the copy is busy can wait 500 ms on a shared core (see ``calibrate._triton``).

Install: a venv of its own under the peers cache, built from a *shared-library*
CPython 3.12 (see ``pythons.py``: the Python backend stub links libpython3.12.so),
whose lib folder the server then gets on ``LD_LIBRARY_PATH``.

Stop: SIGINT (the only signal on which PyTriton stops Triton in order). Triton leaves
two things outside the process group, which ``Launch.after_stop`` removes: its Python
backend's shared memory, ``/dev/shm/pytrtion<pid>-*`` (sic), and its copy of the
model store in ``/tmp/folderXXXXXX`` (not $TMPDIR), recognised by our workspace's
path in its ``config.pbtxt``.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.peers.pythons import (
    SharedPython,
    check_pytriton_binaries,
    find_fallback_python,
    find_shared_python,
    no_python_reason,
)
from benchmarks.peers.systems import Knobs, Launch, ModelFiles
from benchmarks.peers.venvs import ensure_venv

PYTRITON = "0.7.0"
TRITON_SERVER = "2.51"  # the tritonserver that nvidia-pytriton 0.7.0's wheel carries
REQUIREMENTS = (f"nvidia-pytriton=={PYTRITON}", "onnxruntime==1.32.0", "numpy==1.26.4")
APP = Path(__file__).resolve().parent / "servers" / "triton_app.py"


def cleanup_after(marker: str) -> Callable[[int], None]:
    """What Triton leaves outside its process group, removed once the group (``pgid``) is gone.

    ``marker`` is our workspace's path: only model-store copies naming it are ours.
    """

    def clean(pgid: int) -> None:
        for leftover in glob.glob(f"/dev/shm/pytrtion{pgid}-*"):  # PyTriton's spelling
            with contextlib.suppress(OSError):
                os.unlink(leftover)
        for config in glob.glob("/tmp/folder*/config.pbtxt"):
            with contextlib.suppress(OSError):
                if marker in Path(config).read_text(errors="replace"):
                    shutil.rmtree(Path(config).parent, ignore_errors=True)

    return clean


class Triton:
    """Triton 2.51 (PyTriton 0.7.0): dynamic batcher, REJECT queue policy, per-request timeouts."""

    name = "triton"
    encoding = "binary"  # Triton's binary tensor extension, as tritonclient sends
    version = f"nvidia-pytriton {PYTRITON} (Triton {TRITON_SERVER})"
    grid: tuple[Knobs, ...] = tuple(
        {"max_batch_size": b, "max_queue_delay_microseconds": d}
        for b in (16, 64)
        for d in (1000, 5000, 20000)
    )

    def __init__(self, python: str | None = None) -> None:
        self.python_override = python  # a shared-library CPython to build the venv from
        self.vpy: Path | None = None
        self.py: SharedPython | None = None

    def install(self, cache: Path, logs: Path) -> None:
        """The venv, from a shared-library CPython 3.12 (else 3.13/3.11/3.10); ldd-checked."""
        py = find_shared_python(self.python_override) or (
            None if self.python_override else find_fallback_python()
        )
        if py is None:
            raise RuntimeError(
                f"{self.python_override} is not a shared-library CPython"
                if self.python_override
                else no_python_reason()
            )
        self.vpy = ensure_venv(
            f"pytriton-py{py.version}",
            REQUIREMENTS,
            logs,
            python=py.executable,
            cache=cache,
            check_import="pytriton.triton, onnxruntime",
        )
        self.py = py
        check_pytriton_binaries(str(self.vpy), py.version, py.ld_env(dict(os.environ)))

    def launch(
        self, model: ModelFiles, knobs: Knobs, port: int, threads: int, workdir: Path
    ) -> Launch:
        if self.vpy is None or self.py is None:
            raise RuntimeError("Triton.launch before install")
        if int(knobs["max_batch_size"]) > model.max_batch:
            raise ValueError(f"max_batch_size {knobs['max_batch_size']} > {model.max_batch}")
        workspace = workdir / "pytriton-workspace"  # PyTriton creates it, and removes it on stop
        tmp = workdir / "tmp"  # PyTriton's own temp files (Triton's go to /tmp regardless)
        tmp.mkdir(parents=True, exist_ok=True)
        cfg = {
            "onnx": str(model.onnx),
            "name": model.name,
            "port": port,
            "threads": threads,
            "workspace": str(workspace),
            "max_batch_size": int(knobs["max_batch_size"]),
            "max_queue_delay_microseconds": int(knobs["max_queue_delay_microseconds"]),
            "preferred_batch_size": list(knobs.get("preferred_batch_size") or []),
            "max_queue_size": int(knobs.get("max_queue_size", 0)),
            "instances": int(knobs.get("instances", 1)),
        }
        env = self.py.ld_env({"TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"})
        return Launch(
            [str(self.vpy), str(APP), json.dumps(cfg)],
            env=env,
            cwd=workdir,
            after_stop=cleanup_after(str(workspace)),
        )

    def request_parameters(self, slo_ms: float, knobs: Knobs | None = None) -> dict[str, Any]:
        """Triton's per-request queue timeout, in microseconds (honoured: allow_timeout_override).

        It bounds the time in Triton's queue only, not the whole latency: a request that
        has been put in a batch is run to the end, however late. So the tuned setting
        gives it the budget less the batch's expected run time (``timeout_margin_ms``),
        as a user who knows the model would, rather than the whole budget.
        """
        margin = float((knobs or {}).get("timeout_margin_ms", 0.0))
        return {"timeout": max(1, round((slo_ms - margin) * 1000))}
