"""qosbatch itself as two systems of the comparison: ``slo``, and ``dynamic`` as the control.

It needs no venv of its own (it is this project). ``qosbatch`` serves the ``slo``
policy, which has nothing to tune. ``qosbatch-dynamic`` serves the peers' rule
(max batch size, max queue delay) through the same front end, tuned over the same
grid as they are: what separates it from a peer is the front end, and what
separates it from ``qosbatch`` is the policy. The profile the policies plan with
is the harness's calibration profile (``calibrate.profile``): the ONNX backend the
server runs, on the server's cores.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from benchmarks.peers.calibrate import profile
from benchmarks.peers.systems import Knobs, Launch, ModelFiles

BIN = Path(sys.executable).parent


class QosbatchServer:
    name = "qosbatch"
    encoding = "binary"  # Triton's binary tensor extension, as tritonclient sends
    grid: tuple[Knobs, ...] = ({"policy": "slo"},)  # the calibration's grid replaces it

    def __init__(self) -> None:
        import qosbatch

        self.version = f"qosbatch {qosbatch.__version__} (this tree)"
        self.cpus = "1"  # set by the harness before launch: the profile is taken there

    def install(self, cache: Path, logs: Path) -> None:
        """Nothing to install: this interpreter runs qosbatch."""

    def launch(
        self, model: ModelFiles, knobs: Knobs, port: int, threads: int, workdir: Path
    ) -> Launch:
        path = profile(model, self.cpus, BIN / "qosbatch", workdir.parent)
        argv = [
            str(BIN / "qosbatch"), "serve", "--model", str(model.onnx), "--backend", "onnx",
            "--policy", str(knobs["policy"]), "--profile", str(path),
            "--max-batch", str(model.max_batch), "--port", str(port),
        ]  # fmt: skip
        return Launch(argv)

    def request_parameters(self, slo_ms: float, knobs: Knobs | None = None) -> dict[str, Any]:
        return {"slo_ms": slo_ms}


class QosbatchDynamic(QosbatchServer):
    """The control: qosbatch's front end running the peers' batching rule."""

    name = "qosbatch-dynamic"
    grid: tuple[Knobs, ...] = ({"policy": "dynamic:max_batch_size=32,max_queue_delay_ms=5"},)
