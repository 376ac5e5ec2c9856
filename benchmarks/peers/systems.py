"""What the side-by-side harness needs of a serving system, and nothing more.

Every system in the comparison (qosbatch and each peer) is described by a
``System``: how to install it (into a virtual environment of its own, pinned,
from the package registry), the grid of knobs its users would tune, and the
command that serves the shared ONNX model with one setting of those knobs. The
harness does the rest the same way for all of them: it pins the command to the
server's cores, waits until the model answers, drives it with the one load
generator (KServe v2 JSON, open loop), and stops its whole process group.

Contract of a launched server (every system meets it, natively or through a thin
endpoint written for it here):

* binds 127.0.0.1:<port>, nothing else;
* ``GET /v2/models/<name>`` answers 200 with v2 metadata once the model is loaded
  (``inputs[0]``: name, datatype ``FP32``, shape ``[-1, *sample_shape]``);
* ``POST /v2/models/<name>/infer`` takes one v2 JSON request of one sample,
  ``{"inputs": [{"name", "shape": [1, ...], "datatype": "FP32", "data": [...]}],
  "parameters": {...}}``, and answers 200 with ``{"outputs": [{"name", "shape",
  "datatype", "data"}]}``; requests are batched by the system's own batcher;
* runs the model with ONNX Runtime on ``threads`` intra-op threads (inter-op 1);
* stops on SIGINT (the harness then SIGKILLs the process group after a grace).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

Knobs = Mapping[str, Any]


@dataclass(frozen=True)
class ModelFiles:
    """The one model every system serves: the same ONNX file, hence the same weights."""

    name: str  # served name, e.g. "wide-mlp"
    onnx: Path
    sample_shape: tuple[int, ...]  # one sample, without the batch dimension
    input_name: str = "input"
    output_name: str = "output"
    max_batch: int = 64  # the largest batch any setting may form


@dataclass(frozen=True)
class Launch:
    """A server command; the harness prefixes ``taskset -c CPUS`` and runs it in its own session."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # added to os.environ
    cwd: Path | None = None
    after_stop: Callable[[int], None] | None = None  # given the group id once it is gone


class System(Protocol):
    name: str  # "qosbatch", "triton", "ray", "bentoml", "mlserver"
    version: str  # what was installed, e.g. "nvidia-pytriton 0.7.0 (Triton 2.51)"
    grid: Sequence[Knobs]  # the settings tuned over, in the system's own knob names
    # Optional: ``encoding = "binary"`` where the system speaks Triton's binary tensor
    # extension (a 3 MB JSON body of floats per alexnet sample is what it avoids).

    def install(self, cache: Path, logs: Path) -> None:
        """Create or reuse the system's venv under ``cache``; raise RuntimeError saying why not."""
        ...

    def launch(
        self, model: ModelFiles, knobs: Knobs, port: int, threads: int, workdir: Path
    ) -> Launch:
        """The command serving ``model`` with ``knobs``; ``workdir`` is an empty folder for it."""
        ...

    def request_parameters(self, slo_ms: float, knobs: Knobs | None = None) -> dict[str, Any]:
        """The ``parameters`` of a request whose budget is ``slo_ms`` ({} where it has no field).

        ``knobs`` is the setting being served, for a system whose field depends on it
        (Triton's timeout is the budget less the batch's run time).
        """
        ...
