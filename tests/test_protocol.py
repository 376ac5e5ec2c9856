"""The KServe v2 codec: what tritonclient sends decodes, what we encode tritonclient reads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.http as th
from tritonclient.http._utils import _get_inference_request

from qosbatch.serve.protocol import (
    InferRequest,
    ProtocolError,
    TensorSpec,
    decode_infer,
    encode_infer,
    parse_budget_header,
)

INPUT = TensorSpec("input", "FP32", (2, 3))
OUTPUTS = (TensorSpec("output", "FP32", (4,)),)


def client_request(x, binary=True, outputs=None, priority=0, timeout=None, params=None):
    """The exact body and header length tritonclient.http would send."""
    i = th.InferInput("input", list(x.shape), "FP32")
    i.set_data_from_numpy(x, binary_data=binary)
    body, json_size = _get_inference_request(
        inputs=[i],
        request_id="r1",
        outputs=outputs,
        sequence_id=0,
        sequence_start=False,
        sequence_end=False,
        priority=priority,
        timeout=timeout,
        custom_parameters=params,
    )
    return body, None if json_size is None else str(json_size)


@pytest.mark.parametrize("binary", [True, False])
def test_decodes_what_tritonclient_sends(binary):
    x = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    body, size = client_request(x, binary, priority=2, timeout=250_000)
    req = decode_infer(body, size, INPUT, OUTPUTS, max_batch=8)
    np.testing.assert_array_equal(req.tensor, x)
    assert req.id == "r1"
    assert req.priority == 2
    assert req.budget_s == pytest.approx(0.25)  # Triton's timeout is in microseconds
    assert req.binary_outputs  # no outputs named: tritonclient asks for binary


def test_slo_ms_wins_and_header_budget_parses():
    x = np.zeros((1, 2, 3), dtype=np.float32)
    body, size = client_request(x, params={"slo_ms": 40}, timeout=1_000_000)
    assert decode_infer(body, size, INPUT, OUTPUTS, 8).budget_s == pytest.approx(0.04)
    assert parse_budget_header("120") == pytest.approx(0.12)
    assert parse_budget_header(None) is None
    with pytest.raises(ProtocolError, match="x-slo-ms"):
        parse_budget_header("-3")


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_reads_what_we_encode(binary):
    x = np.zeros((1, 2, 3), dtype=np.float32)
    outputs = [th.InferRequestedOutput("output", binary_data=binary)]
    body, size = client_request(x, binary, outputs=outputs)
    req = decode_infer(body, size, INPUT, OUTPUTS, 8)
    y = np.arange(4, dtype=np.float32).reshape(1, 4) + 0.5
    payload, headers = encode_infer("m", req, {"output": y}, {"outcome": "on_time"})
    length = headers.get("inference-header-content-length")
    result = th.InferResult.from_response_body(
        payload, header_length=None if length is None else int(length)
    )
    np.testing.assert_array_equal(result.as_numpy("output"), y)
    assert result.get_response()["parameters"] == {"outcome": "on_time"}
    assert result.get_response()["id"] == "r1"


def _json_body(**tensor):
    spec = {"name": "input", "shape": [1, 2, 3], "datatype": "FP32", "data": [0.0] * 6}
    spec.update(tensor)
    return json.dumps({"inputs": [spec]}).encode()


@pytest.mark.parametrize(
    ("body", "header", "fragment"),
    [
        (b"{not json", None, "malformed JSON"),
        (b"[1, 2]", None, "must be a JSON object"),
        (json.dumps({"inputs": []}).encode(), None, "no 'inputs'"),
        (_json_body(name="x"), None, "unexpected input 'x'"),
        (_json_body(datatype="INT64"), None, "datatype 'INT64'"),
        (_json_body(shape=[1, 3, 2]), None, "has shape [1, 3, 2]"),
        (_json_body(shape=[0, 2, 3], data=[]), None, "k >= 1"),
        (_json_body(shape=[9, 2, 3], data=[0] * 54), None, "at most 8"),
        (_json_body(data=[1, 2]), None, "holds 2 values"),
        (_json_body(data=["a"] * 6), None, "not a list of FP32"),
        (_json_body(data=None), None, "neither 'data' nor binary"),
        (_json_body(), "abc", "must be an integer"),
        (_json_body(), "99999", "outside the body"),
    ],
)
def test_bad_requests_get_400_with_the_reason(body, header, fragment):
    with pytest.raises(ProtocolError) as err:
        decode_infer(body, header, INPUT, OUTPUTS, max_batch=8)
    assert err.value.status == 400
    assert fragment in err.value.reason


def test_binary_size_must_match_shape_and_bytes_sent():
    x = np.zeros((1, 2, 3), dtype=np.float32)
    body, size = client_request(x)
    with pytest.raises(ProtocolError, match="binary_data_size"):
        decode_infer(body[:-4], size, INPUT, OUTPUTS, 8)


def test_bad_parameters_and_outputs():
    x = np.zeros((1, 2, 3), dtype=np.float32)
    for params, fragment in (({"slo_ms": 0}, "slo_ms"), ({"slo_ms": "fast"}, "slo_ms")):
        body, size = client_request(x, params=params)
        with pytest.raises(ProtocolError, match=fragment):
            decode_infer(body, size, INPUT, OUTPUTS, 8)
    body, size = client_request(x, priority=-1)
    with pytest.raises(ProtocolError, match="priority"):
        decode_infer(body, size, INPUT, OUTPUTS, 8)
    body, size = client_request(x, outputs=[th.InferRequestedOutput("nope")])
    with pytest.raises(ProtocolError, match="unknown output 'nope'"):
        decode_infer(body, size, INPUT, OUTPUTS, 8)


def test_json_answer_when_asked_for_json():
    req = InferRequest("a", np.zeros((1, 2, 3), np.float32), None, 0, False, ())
    payload, headers = encode_infer("m", req, {"output": np.ones((1, 4), np.float32)})
    assert headers == {"content-type": "application/json"}
    body = json.loads(payload)
    assert body["outputs"] == [
        {"name": "output", "datatype": "FP32", "shape": [1, 4], "data": [1.0] * 4}
    ]
