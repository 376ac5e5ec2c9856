"""Hypothesis over the v2 codec, JSON and Triton's binary extension, and the gRPC adapter.

The one property every input must keep: decoding either returns a request or
raises ``ProtocolError`` with a 4xx status and a reason; nothing else escapes
(an escape is a 500 on the live server). Valid requests, built from the model's
spec, must decode to the tensor that was sent, in both encodings. A few hundred
examples per test: fast enough for ``make test``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qosbatch.client.grpc_client import set_parameter
from qosbatch.serve.protocol import (
    DATATYPES,
    InferRequest,
    ProtocolError,
    TensorSpec,
    decode_admission,
    decode_infer,
    encode_infer,
    header_size,
    parse_budget_header,
)

MODEL = TensorSpec("input", "FP32", (2, 3))
OUTPUTS = (TensorSpec("output", "FP32", (4,)),)
MAX_BATCH = 8
INT64 = st.integers(-(2**63), 2**63 - 1)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# JSON values of any shape, the codec's real input space after parsing.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
# Heads near a valid request: the right keys with any values, so that the checks run deep.
near_tensor = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["input", "x"]) | json_values,
        "datatype": st.sampled_from([*DATATYPES, "BYTES"]) | json_values,
        "shape": st.lists(st.integers(-1, 2**62), max_size=4) | json_values,
        "data": st.lists(st.floats() | INT64 | json_values, max_size=12) | json_values,
        "parameters": st.fixed_dictionaries(
            {}, optional={"binary_data_size": st.integers(-1, 2**40) | json_values}
        )
        | json_values,
    },
)
VALID = {"name": "input", "datatype": "FP32", "shape": [1, 2, 3], "data": [0.5] * 6}
near_head = st.fixed_dictionaries(
    {},
    optional={
        "id": st.text(max_size=4) | json_values,
        # (a valid input often: the checks after the tensor's run only when it passes)
        "inputs": st.just([VALID]) | st.lists(near_tensor, max_size=2) | json_values,
        "outputs": st.lists(
            st.fixed_dictionaries(
                {"name": st.sampled_from(["output", "y"]) | json_values},
                optional={"parameters": json_values},
            )
            | json_values,
            max_size=2,
        )
        | json_values,
        "parameters": st.dictionaries(
            st.sampled_from(["slo_ms", "timeout", "priority", "binary_data_output", "x"]),
            json_values | st.floats() | INT64,
            max_size=4,
        )
        | json_values,
    },
)


def decodes_or_refuses(body: bytes, header_length: str | None) -> InferRequest | None:
    try:
        return decode_infer(body, header_length, MODEL, OUTPUTS, MAX_BATCH)
    except ProtocolError as exc:
        assert 400 <= exc.status < 500 and exc.reason
        return None


@FAST
@given(body=st.binary(max_size=200), header_length=st.none() | st.text(max_size=6))
def test_any_bytes_are_decoded_or_refused_with_a_4xx(body, header_length):
    decodes_or_refuses(body, header_length)


@FAST
@given(head=near_head, tail=st.binary(max_size=64), binary=st.booleans())
def test_any_json_head_is_decoded_or_refused_with_a_4xx(head, tail, binary):
    text = orjson.dumps(head, option=orjson.OPT_SERIALIZE_NUMPY)
    if binary:
        decodes_or_refuses(text + tail, str(len(text)))
    else:
        decodes_or_refuses(text, None)
    try:
        decode_admission(text)
    except ProtocolError as exc:
        assert exc.status == 400


@FAST
@given(head=near_head)
def test_any_outputs_parameters_and_id_beside_a_valid_input(head):
    """What is checked after the tensor: reached only when the input is right."""
    head = {**head, "inputs": [VALID]}
    decodes_or_refuses(orjson.dumps(head), None)


@FAST
@given(
    x=hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, MAX_BATCH), st.just(2), st.just(3)),
        elements=st.floats(-1e6, 1e6, width=32),
    ),
    binary=st.booleans(),
    slo_ms=st.none() | st.floats(1e-3, 1e6),
    priority=st.integers(0, 10),
)
def test_a_valid_request_decodes_to_the_tensor_sent(x, binary, slo_ms, priority):
    params: dict[str, Any] = {"priority": priority}
    if slo_ms is not None:
        params["slo_ms"] = slo_ms
    spec: dict[str, Any] = {"name": "input", "datatype": "FP32", "shape": list(x.shape)}
    if binary:
        spec["parameters"] = {"binary_data_size": x.nbytes}
        head = orjson.dumps({"inputs": [spec], "parameters": params})
        req = decode_infer(head + x.tobytes(), str(len(head)), MODEL, OUTPUTS, MAX_BATCH)
    else:
        spec["data"] = x.ravel().tolist()
        body = orjson.dumps({"inputs": [spec], "parameters": params})
        req = decode_infer(body, None, MODEL, OUTPUTS, MAX_BATCH)
    np.testing.assert_array_equal(req.tensor, x)
    assert req.priority == priority
    assert req.budget_s == (None if slo_ms is None else pytest.approx(slo_ms / 1e3))
    out = np.zeros((x.shape[0], 4), np.float32)
    payload, headers = encode_infer("m", req, {"output": out})
    size = int(headers.get("inference-header-content-length", len(payload)))
    assert orjson.loads(payload[:size])["outputs"][0]["shape"] == [x.shape[0], 4]


@FAST
@given(text=st.text(max_size=12), body_bytes=st.none() | st.integers(-5, 10**6))
def test_headers_are_parsed_or_refused_with_a_400(text, body_bytes):
    for parse in (lambda: header_size(text, body_bytes), lambda: parse_budget_header(text)):
        try:
            value = parse()
        except ProtocolError as exc:
            assert exc.status == 400
        else:
            assert value is not None and value > 0 and math.isfinite(value)


@FAST
@given(request=st.data())
def test_any_grpc_message_is_decoded_or_refused_with_a_4xx(request):
    from tritonclient.grpc import service_pb2 as pb

    from qosbatch.serve.grpc_service import as_v2_head
    from qosbatch.serve.protocol import infer_request

    r = pb.ModelInferRequest(model_name="m", id=request.draw(st.text(max_size=3)))
    for key in request.draw(
        st.lists(st.sampled_from(["slo_ms", "timeout", "priority"]), max_size=2)
    ):
        value = request.draw(
            st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(max_size=3)
        )
        set_parameter(r.parameters[key], value)
    for _ in range(request.draw(st.integers(0, 2))):
        t = r.inputs.add(
            name=request.draw(st.sampled_from(["input", "x"])),
            datatype=request.draw(st.sampled_from([*DATATYPES, "BYTES", ""])),
            shape=request.draw(
                st.sampled_from([[1, 2, 3], [2, 2, 3]])
                | st.lists(st.integers(-2, 2**62), max_size=4)
            ),
        )
        if request.draw(st.booleans()):
            t.contents.fp32_contents.extend(
                request.draw(st.lists(st.floats(width=32), max_size=12))
            )
        if request.draw(st.booleans()):
            t.contents.int_contents.extend(
                request.draw(st.lists(st.integers(-(2**31), 2**31 - 1), max_size=6))
            )
    for blob in request.draw(st.lists(st.binary(max_size=48), max_size=2)):
        r.raw_input_contents.append(blob)
    for name in request.draw(st.lists(st.sampled_from(["output", "y", ""]), max_size=2)):
        r.outputs.add(name=name)
    head, binary = as_v2_head(r)
    try:
        req = infer_request(head, binary, MODEL, OUTPUTS, MAX_BATCH)
    except ProtocolError as exc:
        assert 400 <= exc.status < 500 and exc.reason
    else:
        assert req.tensor.shape[1:] == MODEL.sample_shape
