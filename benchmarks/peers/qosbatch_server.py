"""qosbatch itself as a system of the comparison: ``qosbatch serve`` on the shared ONNX file.

It needs no venv of its own (it is this project). Its one knob is the policy:
``slo`` has nothing to tune, and ``dynamic`` is kept in the grid so that the
comparison also shows our batcher running the peers' rule. The profile the
policy plans with is measured once per model file, on the server's cores, with
the ONNX backend the server runs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.peers.systems import Knobs, Launch, ModelFiles

BIN = Path(sys.executable).parent


class QosbatchServer:
    name = "qosbatch"
    grid: tuple[Knobs, ...] = ({"policy": "slo"},)

    def __init__(self) -> None:
        import qosbatch

        self.version = f"qosbatch {qosbatch.__version__} (this tree)"
        self.cpus = "1"  # set by the harness before launch: the profile is taken there

    def install(self, cache: Path, logs: Path) -> None:
        """Nothing to install: this interpreter runs qosbatch."""

    def profile_for(self, model: ModelFiles, logs: Path) -> Path:
        path = model.onnx.with_suffix(f".cpus{self.cpus.replace(',', '_')}.profile.json")
        if path.exists():
            return path
        argv = [
            "taskset", "-c", self.cpus, str(BIN / "qosbatch"), "profile", str(model.onnx),
            "--backend", "onnx", "--cores", "1", "--batch-sizes", "1,2,4,8,16,32,64",
            "--holdout", "none", "--repeats", "5", "-o", str(path),
        ]  # fmt: skip
        with (logs / "qosbatch-profile.log").open("ab") as out:
            rc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
        if rc != 0:
            log_path = logs / "qosbatch-profile.log"
            raise RuntimeError(f"profiling {model.onnx} failed; see {log_path}")
        return path

    def launch(
        self, model: ModelFiles, knobs: Knobs, port: int, threads: int, workdir: Path
    ) -> Launch:
        profile = self.profile_for(model, workdir.parent)
        argv = [
            str(BIN / "qosbatch"), "serve", "--model", str(model.onnx), "--backend", "onnx",
            "--policy", str(knobs["policy"]), "--profile", str(profile),
            "--max-batch", str(model.max_batch), "--port", str(port),
        ]  # fmt: skip
        return Launch(argv)

    def request_parameters(self, slo_ms: float) -> dict[str, Any]:
        return {"slo_ms": slo_ms}
