"""The one model file every system serves: a zoo model exported once to ONNX."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from benchmarks.peers.systems import ModelFiles
from qosbatch.models.backends import default_onnx_dir, export_onnx
from qosbatch.models.loading import resolve_model

DEFAULT_MODEL = "wide-mlp"


def export_model(name: str, directory: Path, max_batch: int = 64) -> ModelFiles:
    """``name`` from the zoo as ONNX under ``directory`` (seeded weights: the same everywhere)."""
    ref = resolve_model(name)
    path = directory / f"{name}.onnx"  # the file's stem is the name qosbatch serves it under
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(export_onnx(ref, default_onnx_dir()), path)
    return ModelFiles(name, path, tuple(ref.input_shape), max_batch=max_batch)


def probe_body(model: ModelFiles, parameters: dict[str, object] | None = None) -> bytes:
    """One v2 JSON request of one sample of zeros: the readiness probe."""
    size = 1
    for d in model.sample_shape:
        size *= d
    request: dict[str, object] = {
        "inputs": [
            {
                "name": model.input_name,
                "shape": [1, *model.sample_shape],
                "datatype": "FP32",
                "data": [0.0] * size,
            }
        ]
    }
    if parameters:
        request["parameters"] = parameters
    return json.dumps(request).encode()
