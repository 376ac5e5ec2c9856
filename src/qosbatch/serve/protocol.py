"""The Open Inference Protocol (KServe v2) over HTTP, as Triton speaks it: pure encoding.

Decoding an infer request and encoding its response, in JSON and with Triton's
binary tensor extension (a JSON header of ``Inference-Header-Content-Length``
bytes followed by raw tensors), so that a stock ``tritonclient.http`` client
works unchanged. Nothing here does I/O or knows about batching: the HTTP layer
hands bytes in and gets bytes out, and every problem with the request is a
``ProtocolError`` carrying the HTTP status and the reason, in the protocol's
``{"error": "..."}`` form. Request data is only ever parsed as JSON or read as
raw numbers, never unpickled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

HEADER_LENGTH = "inference-header-content-length"  # (HTTP headers are case-insensitive)
BINARY_CONTENT_TYPE = "application/octet-stream"

# v2 datatype <-> numpy dtype; BYTES (strings) has no place in a tensor model here.
DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
_NAMES = {dtype: name for name, dtype in DATATYPES.items()}


class ProtocolError(Exception):
    """A request the protocol refuses: answered with ``status`` and ``{"error": reason}``.

    ``extra`` fields go into the answer's body beside the reason (a 429's ``outcome``).
    """

    def __init__(self, status: int, reason: str, **extra: Any) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.extra = extra


def datatype_of(dtype: np.dtype[Any]) -> str:
    try:
        return _NAMES[np.dtype(dtype)]
    except KeyError:
        raise ValueError(f"numpy dtype {dtype} has no v2 datatype") from None


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a model: name, v2 datatype and one sample's shape."""

    name: str
    datatype: str
    sample_shape: tuple[int, ...]

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": [-1, *self.sample_shape]}


@dataclass(frozen=True)
class InferRequest:
    """A decoded infer request: the input tensor and what the caller asked of the answer."""

    id: str | None
    tensor: np.ndarray  # [k, *sample_shape], k >= 1
    budget_s: float | None  # its own latency budget, if it gave one
    priority: int  # Triton's: 1 is the highest level, 0 the default (lowest)
    binary_outputs: bool  # answer the output as raw bytes (Triton's binary extension)
    output_names: tuple[str, ...]  # outputs asked for; empty means all


def decode_infer(
    body: bytes,
    header_length: str | None,
    model: TensorSpec,
    outputs: tuple[TensorSpec, ...],
    max_batch: int,
) -> InferRequest:
    """Parse one infer request for a single-input model; raise ProtocolError if it is wrong."""
    json_size = _json_size(body, header_length)
    head = _parse_json(body[:json_size])
    return infer_request(head, memoryview(body)[json_size:], model, outputs, max_batch)


def infer_request(
    head: dict[str, Any],
    binary: memoryview,
    model: TensorSpec,
    outputs: tuple[TensorSpec, ...],
    max_batch: int,
) -> InferRequest:
    """Check a request's v2 JSON head (and the raw bytes its binary input names) for a model.

    Every transport ends here: HTTP with the parsed body, gRPC with its message put
    in the same form, so one set of rules (and of reasons) judges both.
    """
    params = _object(head.get("parameters", {}), "parameters")
    inputs = head.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ProtocolError(400, "the request has no 'inputs' list")
    if len(inputs) != 1:
        raise ProtocolError(400, f"model expects 1 input ({model.name!r}), got {len(inputs)}")
    spec = _object(inputs[0], "inputs[0]")
    tensor = _decode_tensor(spec, binary, model, max_batch)
    request_id = head.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError(400, "'id' must be a string")
    wanted, binary_out = _requested_outputs(head, params, outputs)
    return InferRequest(
        id=request_id,
        tensor=tensor,
        budget_s=_budget_s(params),
        priority=_priority(params),
        binary_outputs=binary_out,
        output_names=wanted,
    )


def decode_admission(head: bytes | memoryview) -> tuple[float | None, int]:
    """(budget, priority) from an infer request's JSON header alone, before its tensors.

    With the binary extension the header comes first, so a server can decide to
    shed a request before it has read (let alone decoded) the tensor's bytes.
    The full ``decode_infer`` checks everything else later.
    """
    params = _object(_parse_json(head).get("parameters", {}), "parameters")
    return _budget_s(params), _priority(params)


def encode_infer(
    model_name: str,
    request: InferRequest,
    outputs: dict[str, np.ndarray],
    parameters: dict[str, Any] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The response body and its extra headers (binary extension when the request asked)."""
    head: dict[str, Any] = {"model_name": model_name, "model_version": "1"}
    if request.id is not None:
        head["id"] = request.id
    if parameters:
        head["parameters"] = parameters
    blobs: list[bytes] = []
    tensors = []
    for name, array in answered_outputs(request, outputs):
        entry: dict[str, Any] = {
            "name": name,
            "datatype": datatype_of(array.dtype),
            "shape": list(array.shape),
        }
        if request.binary_outputs:
            raw = array.tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = array.ravel().tolist()
        tensors.append(entry)
    head["outputs"] = tensors
    text = orjson.dumps(head)
    if not blobs:
        return text, {"content-type": "application/json"}
    headers = {"content-type": BINARY_CONTENT_TYPE, HEADER_LENGTH: str(len(text))}
    return b"".join([text, *blobs]), headers


def answered_outputs(
    request: InferRequest, outputs: dict[str, np.ndarray]
) -> list[tuple[str, np.ndarray]]:
    """The outputs the request asked for (all when it named none), contiguous, in its order."""
    names = request.output_names or tuple(outputs)
    return [(name, np.ascontiguousarray(outputs[name])) for name in names]


def error_body(reason: str, **extra: Any) -> bytes:
    return orjson.dumps({"error": reason, **extra})


# ---- the parts ----------------------------------------------------------------------


def header_size(header_length: str, body_bytes: int | None) -> int:
    """The JSON header's size from Inference-Header-Content-Length, within the body's."""
    try:
        size = int(header_length)
    except ValueError:
        raise ProtocolError(
            400, f"Inference-Header-Content-Length must be an integer, got {header_length!r}"
        ) from None
    if not 0 < size <= (size if body_bytes is None else body_bytes):
        raise ProtocolError(
            400,
            f"Inference-Header-Content-Length {size} is outside the body's {body_bytes} bytes",
        )
    return size


def _json_size(body: bytes, header_length: str | None) -> int:
    if header_length is None:
        return len(body)
    return header_size(header_length, len(body))


def _parse_json(raw: bytes | memoryview) -> dict[str, Any]:
    try:
        # orjson, not json: a 784-float JSON request parsed in 53 us instead of 319 us
        # (measured), and on one shared core every microsecond of the front end is one
        # the model does not get.
        head = orjson.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(400, f"malformed JSON in the request: {exc}") from None
    return _object(head, "the request")


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(400, f"{what} must be a JSON object")
    return value


def _decode_tensor(
    spec: dict[str, Any], binary: memoryview, model: TensorSpec, max_batch: int
) -> np.ndarray:
    name = spec.get("name")
    if name != model.name:
        raise ProtocolError(400, f"unexpected input {name!r}; the model's input is {model.name!r}")
    datatype = spec.get("datatype")
    if datatype != model.datatype:
        raise ProtocolError(
            400, f"input {name!r} has datatype {datatype!r}; the model expects {model.datatype}"
        )
    shape = spec.get("shape")
    if (
        not isinstance(shape, list)
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
        or tuple(shape[1:]) != model.sample_shape
        or not shape
        or shape[0] < 1
    ):
        raise ProtocolError(
            400,
            f"input {name!r} has shape {shape!r}; the model expects "
            f"[k, {', '.join(map(str, model.sample_shape))}] with k >= 1",
        )
    if shape[0] > max_batch:
        raise ProtocolError(
            400, f"input {name!r} holds {shape[0]} samples; this model takes at most {max_batch}"
        )
    dtype = DATATYPES[datatype]
    count = math.prod(shape)
    params = _object(spec.get("parameters", {}), f"parameters of input {name!r}")
    if "binary_data_size" in params:
        size = params["binary_data_size"]
        if not isinstance(size, int) or size != count * dtype.itemsize or size != len(binary):
            raise ProtocolError(
                400,
                f"input {name!r}: binary_data_size {size!r} does not match {shape} of "
                f"{datatype} ({count * dtype.itemsize} bytes) and the {len(binary)} bytes sent",
            )
        return np.frombuffer(binary, dtype=dtype).reshape(shape)
    if len(binary):
        raise ProtocolError(
            400, f"{len(binary)} bytes follow the JSON header, but no input is binary"
        )
    data = spec.get("data")
    if data is None:
        raise ProtocolError(400, f"input {name!r} has neither 'data' nor binary data")
    try:
        array = np.asarray(data, dtype=dtype)
    except (ValueError, TypeError, OverflowError):
        raise ProtocolError(
            400, f"input {name!r}: 'data' is not a list of {datatype} numbers"
        ) from None
    if array.size != count:
        raise ProtocolError(
            400, f"input {name!r}: 'data' holds {array.size} values; shape {shape} needs {count}"
        )
    return array.reshape(shape)


def _requested_outputs(
    head: dict[str, Any], params: dict[str, Any], outputs: tuple[TensorSpec, ...]
) -> tuple[tuple[str, ...], bool]:
    binary = params.get("binary_data_output") is True
    asked = head.get("outputs")
    if asked is None:
        return (), binary
    if not isinstance(asked, list):
        raise ProtocolError(400, "'outputs' must be a list")
    known = {o.name for o in outputs}
    names = []
    for entry in asked:
        entry = _object(entry, "an entry of 'outputs'")
        name = entry.get("name")
        if not isinstance(name, str) or name not in known:  # (a list name is unhashable)
            raise ProtocolError(
                400, f"unknown output {name!r}; the model's outputs are {', '.join(sorted(known))}"
            )
        names.append(name)
        out_params = _object(entry.get("parameters", {}), f"parameters of output {name!r}")
        binary = binary or out_params.get("binary_data") is True
    return tuple(names), binary


def _budget_s(params: dict[str, Any]) -> float | None:
    """``slo_ms`` (ours) or Triton's ``timeout`` (microseconds); None when neither is given."""
    if "slo_ms" in params:
        value, scale, what = params["slo_ms"], 1e-3, "slo_ms"
    elif "timeout" in params:
        value, scale, what = params["timeout"], 1e-6, "timeout (microseconds)"
    else:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ProtocolError(400, f"parameter {what} must be a positive number, got {value!r}")
    if not math.isfinite(value):
        raise ProtocolError(400, f"parameter {what} must be finite, got {value!r}")
    return float(value) * scale


def _priority(params: dict[str, Any]) -> int:
    value = params.get("priority", 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError(400, f"parameter priority must be an integer >= 0, got {value!r}")
    return value


def parse_budget_header(text: str | None) -> float | None:
    """The ``x-slo-ms`` header: a budget for clients that cannot set parameters."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ProtocolError(400, f"header x-slo-ms must be a number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise ProtocolError(400, f"header x-slo-ms must be a positive number, got {text!r}")
    return value * 1e-3
