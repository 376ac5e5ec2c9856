"""The OpenAPI 3 document the server publishes at ``/openapi.json``.

Why more than Starlette's generator gives: a fuzzer (Schemathesis) and a client
generator read the document, and need what the routes' docstrings alone do not
say: the path parameters, the shape of a v2 inference request, and examples
that reach past the 404 (a served model's name, a request it accepts). The
routes' docstrings still say each operation's responses; this fills in the rest.
"""

from __future__ import annotations

import math
import re
from typing import Any

from starlette.routing import BaseRoute
from starlette.schemas import SchemaGenerator

import qosbatch
from qosbatch.serve.protocol import DATATYPES
from qosbatch.serve.server import ServedModel

EXAMPLE_MAX_VALUES = 4096  # a bigger model's example would bloat the document
_POSITIVE = {"type": "number", "minimum": 0, "exclusiveMinimum": True}  # (OpenAPI 3.0 form)
_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "datatype": {"type": "string", "enum": sorted(DATATYPES)},
        "parameters": {
            "type": "object",
            "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
        },
        "data": {"type": "array"},
    },
}
INFERENCE_REQUEST = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {
            "type": "object",
            "properties": {
                "slo_ms": _POSITIVE,
                "timeout": _POSITIVE,  # Triton's, in microseconds
                "priority": {"type": "integer", "minimum": 0},
                "binary_data_output": {"type": "boolean"},
            },
        },
        "inputs": {"type": "array", "minItems": 1, "items": _TENSOR},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
            },
        },
    },
}
# What the infer operation takes besides its path: the body, JSON or binary, and headers.
INFER_INPUTS: dict[str, Any] = {
    "parameters": [
        {"name": "x-slo-ms", "in": "header", "required": False, "schema": _POSITIVE},
        {
            "name": "inference-header-content-length",
            "in": "header",
            "required": False,
            "description": "Triton's binary extension: the JSON header's size in the body",
            "schema": {"type": "integer", "minimum": 1},
        },
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InferenceRequest"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    },
}
_GENERATOR = SchemaGenerator(
    {
        "openapi": "3.0.0",
        "info": {"title": "qosbatch", "version": qosbatch.__version__},
        "components": {"schemas": {"InferenceRequest": INFERENCE_REQUEST}},
    }
)
_PARAM = re.compile(r"{([^}]+)}")


def document(routes: list[BaseRoute], models: dict[str, ServedModel]) -> dict[str, Any]:
    """The routes' document, with path parameters, the infer body and served examples."""
    doc = _GENERATOR.get_schema(routes=routes)
    example = next(iter(models.values()), None)
    for path, operations in doc["paths"].items():
        names = _PARAM.findall(path)
        for method, op in operations.items():
            op["parameters"] = [_path_parameter(n, example) for n in names]
            if method == "post" and path.endswith("/infer"):
                op["parameters"] += INFER_INPUTS["parameters"]
                op["requestBody"] = _infer_body(example)
    return doc


def _path_parameter(name: str, example: ServedModel | None) -> dict[str, Any]:
    p: dict[str, Any] = {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
    if name == "version":
        p["example"] = "1"
    elif example is not None:
        p["example"] = example.name
    return p


def _infer_body(example: ServedModel | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "required": True,
        "content": {k: dict(v) for k, v in INFER_INPUTS["requestBody"]["content"].items()},
    }
    spec = None if example is None else example.input
    count = 0 if spec is None else math.prod(spec.sample_shape)
    if spec is not None and count <= EXAMPLE_MAX_VALUES:  # a request the served model takes
        body["content"]["application/json"]["example"] = {
            "inputs": [
                {
                    "name": spec.name,
                    "shape": [1, *spec.sample_shape],
                    "datatype": spec.datatype,
                    "data": [0] * count,
                }
            ]
        }
    return body
