"""The gRPC endpoint end to end: a live ``qosbatch serve --grpc-port 0`` and a stock
``tritonclient.grpc`` client, beside HTTP on the same server.

The server is started the one way tests start it (``test_serve.Served``, through
``qosbatch.launch``); the gRPC port is read back from its banner.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time

import numpy as np
import pytest
import tritonclient.grpc as tg
from tritonclient.utils import InferenceServerException

from tests.test_serve import MODEL, Served, expected_output, infer_input

pytestmark = pytest.mark.slow

NOOP = "noop"


def grpc_address(s: Served) -> str:
    """host:port of the server's gRPC endpoint, from its banner."""
    text = "".join(s.log)
    found = re.search(r"gRPC \(KServe v2\) on (\S+)", text)
    assert found, text
    return found.group(1)


def grpc_client(s: Served) -> tg.InferenceServerClient:
    return tg.InferenceServerClient(grpc_address(s))


def grpc_input(x: np.ndarray, name: str = "input", datatype: str = "FP32") -> tg.InferInput:
    i = tg.InferInput(name, list(x.shape), datatype)
    i.set_data_from_numpy(x)
    return i


def status_of(err: pytest.ExceptionInfo[InferenceServerException]) -> str:
    return str(err.value.status())


@pytest.fixture(scope="module")
def server():
    s = Served("--model", MODEL, "--model", NOOP, "--slo", "2s", "--grpc-port", "0")
    yield s
    assert s.stop() == 0


def test_health_and_metadata(server):
    c = grpc_client(server)
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready(MODEL) and c.is_model_ready(NOOP, "1")
    meta = c.get_server_metadata(as_json=True)
    assert meta["name"] == "qosbatch" and meta["extensions"] == ["binary_tensor_data"]
    cnn = c.get_model_metadata(MODEL, as_json=True)
    shape = ["-1", "3", "32", "32"]  # (int64 in the message: strings in its JSON form)
    assert cnn["inputs"] == [{"name": "input", "datatype": "FP32", "shape": shape}]
    assert cnn["outputs"] == [{"name": "output", "datatype": "FP32", "shape": ["-1", "10"]}]
    noop = c.get_model_metadata(NOOP, "1", as_json=True)
    assert noop["inputs"][0]["shape"] == ["-1", "4"] and noop["versions"] == ["1"]


def test_infer_on_two_models(server):
    c = grpc_client(server)
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    result = c.infer(MODEL, [grpc_input(x)], request_id="r1")
    np.testing.assert_allclose(result.as_numpy("output"), expected_output(x), rtol=1e-4, atol=1e-5)
    answer = result.get_response(as_json=True)
    assert answer["id"] == "r1" and answer["parameters"]["outcome"]["string_param"] == "on_time"
    y = np.arange(12, dtype=np.float32).reshape(3, 4)
    wanted = [tg.InferRequestedOutput("output")]
    out = c.infer(NOOP, [grpc_input(y)], outputs=wanted, parameters={"slo_ms": 1000})
    np.testing.assert_array_equal(out.as_numpy("output"), y)


def test_typed_contents_are_read_as_raw_ones(server):
    """An input in InferTensorContents (fp32_contents), as older clients send it."""
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc as pb_grpc

    c = grpc_client(server)
    request = pb.ModelInferRequest(model_name=NOOP)
    tensor = request.inputs.add(name="input", datatype="FP32", shape=[1, 4])
    tensor.contents.fp32_contents.extend([1.0, 2.0, 3.0, 4.0])
    response = pb_grpc.GRPCInferenceServiceStub(c._channel).ModelInfer(request, timeout=30)
    got = np.frombuffer(response.raw_output_contents[0], np.float32)
    np.testing.assert_array_equal(got, [1, 2, 3, 4])


@pytest.mark.parametrize("how", ["timeout", "slo_ms"])
def test_a_hopeless_budget_is_shed_with_resource_exhausted(server, how):
    c = grpc_client(server)
    x = np.ones((1, 3, 32, 32), np.float32)
    with pytest.raises(InferenceServerException) as err:
        if how == "timeout":
            c.infer(MODEL, [grpc_input(x)], timeout=1)  # Triton's: one microsecond
        else:
            c.infer(MODEL, [grpc_input(x)], parameters={"slo_ms": 0.001})
    assert status_of(err) == "StatusCode.RESOURCE_EXHAUSTED"
    assert "deadline cannot be met" in err.value.message()


@pytest.mark.parametrize(
    ("model", "x", "datatype", "version", "code", "fragment"),
    [
        (NOOP, np.ones((1, 5), np.float32), "FP32", "", "INVALID_ARGUMENT", "has shape [1, 5]"),
        (NOOP, np.ones((1, 4), np.int8), "INT8", "", "INVALID_ARGUMENT", "datatype 'INT8'"),
        (NOOP, np.ones((1, 4), np.float32), "FP32", "2", "NOT_FOUND", "no version '2'"),
        ("nothing", np.ones((1, 4), np.float32), "FP32", "", "NOT_FOUND", "unknown model"),
    ],
)
def test_malformed_requests_are_refused_with_a_reason(
    server, model, x, datatype, version, code, fragment
):
    c = grpc_client(server)
    with pytest.raises(InferenceServerException) as err:
        c.infer(model, [grpc_input(x, datatype=datatype)], model_version=version)
    assert status_of(err) == f"StatusCode.{code}"
    assert fragment in err.value.message()
    answer = c.infer(NOOP, [grpc_input(np.ones((1, 4), np.float32))])  # still serving
    assert answer.as_numpy("output").shape == (1, 4)


def test_http_and_grpc_feed_the_same_batcher(server):
    x = np.ones((1, 3, 32, 32), np.float32)
    before = server.metric("qosbatch_requests_total")
    result = server.client().infer(MODEL, [infer_input(x)])
    np.testing.assert_allclose(result.as_numpy("output"), expected_output(x), rtol=1e-4, atol=1e-5)
    grpc_client(server).infer(MODEL, [grpc_input(x)])
    assert server.metric("qosbatch_requests_total") == before + 2


def test_draining_refuses_new_grpc_calls_with_unavailable():
    s = Served("--model", MODEL, "--policy", "dynamic:max_batch_size=1", "--grpc-port", "0")
    try:
        c = grpc_client(s)
        x = np.ones((128, 3, 32, 32), np.float32)  # long batches keep the drain going
        results: list = []

        def one() -> None:
            try:
                results.append(c.infer(MODEL, [grpc_input(x)], client_timeout=60))
            except InferenceServerException as exc:
                results.append(exc)

        senders = [threading.Thread(target=one) for _ in range(8)]
        for t in senders:
            t.start()
        deadline = time.monotonic() + 20
        while s.metric("qosbatch_queue_depth") < 3:
            assert time.monotonic() < deadline, "the requests never queued"
        s.proc.send_signal(signal.SIGTERM)
        with pytest.raises(InferenceServerException) as err:
            for _ in range(200):  # until the drain has begun (the server polls every 0.1 s)
                c.infer(MODEL, [grpc_input(np.ones((1, 3, 32, 32), np.float32))])
                time.sleep(0.01)
        assert status_of(err) == "StatusCode.UNAVAILABLE"
        assert "shutting down" in err.value.message()
        for t in senders:
            t.join(60)
        # Each was answered, or refused as the drain began if it came after (never lost).
        refused = [r for r in results if isinstance(r, InferenceServerException)]
        assert all("shutting down" in r.message() for r in refused), refused
        assert len(results) == 8 and len(refused) <= 8 - 3  # the queued ones were answered
        assert s.proc.wait(30) == 0
    finally:
        s.stop()


@pytest.mark.parametrize("protocol", ["grpc", "grpc-stream"])
def test_bench_over_grpc_reports_the_same_keys(server, protocol):
    from tests.conftest import run_cli

    address = grpc_address(server)
    result = run_cli(
        "bench", "--protocol", protocol, "--url", f"grpc://{address}", "--model", NOOP,
        "--workload", "poisson:rate=100,duration_s=1,slo_ms=1000", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)[0]
    assert row["requests"] == row["on_time"] + row["late"] > 50
    assert row["errors"] == 0 and row["mean_batch"] >= 1
    shed = run_cli(
        "bench", "--protocol", protocol, "--url", address, "--model", MODEL,
        "--workload", "poisson:rate=50,duration_s=1,slo_ms=0.001", "--json",
    )  # fmt: skip
    row = json.loads(shed.stdout)[0]
    assert row["rejected"] == row["requests"] and row["errors"] == 0  # 429s, not errors


def test_a_stream_answers_each_request_by_id_and_refuses_with_a_reason(server):
    """Stock tritonclient's streaming API: results, a shed and a malformed request on one
    stream, each answered and matched by its id; the stream goes on after refusals."""
    import queue

    c = grpc_client(server)
    answers: queue.Queue = queue.Queue()
    c.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        x = np.random.default_rng(2).standard_normal((1, 3, 32, 32)).astype(np.float32)
        y = np.arange(8, dtype=np.float32).reshape(2, 4)
        c.async_stream_infer(MODEL, [grpc_input(x)], request_id="cnn")
        c.async_stream_infer(NOOP, [grpc_input(y)], request_id="noop")
        c.async_stream_infer(MODEL, [grpc_input(x)], request_id="late",
                             parameters={"slo_ms": 0.001})  # fmt: skip
        c.async_stream_infer(NOOP, [grpc_input(np.ones((1, 5), np.float32))], request_id="bad")
        c.async_stream_infer(NOOP, [grpc_input(y)], request_id="after")
        got = [answers.get(timeout=30) for _ in range(5)]
    finally:
        c.stop_stream()
    results = {r.get_response().id: r for r, e in got if e is None}
    errors = [str(e) for r, e in got if e is not None]
    assert sorted(results) == ["after", "cnn", "noop"]
    np.testing.assert_allclose(
        results["cnn"].as_numpy("output"), expected_output(x), rtol=1e-4, atol=1e-5
    )
    np.testing.assert_array_equal(results["noop"].as_numpy("output"), y)
    np.testing.assert_array_equal(results["after"].as_numpy("output"), y)
    assert len(errors) == 2
    assert any("RESOURCE_EXHAUSTED" in e and "deadline cannot be met" in e for e in errors)
    assert any("INVALID_ARGUMENT" in e and "has shape [1, 5]" in e for e in errors)


def test_bench_names_the_protocols_it_speaks():
    from tests.conftest import run_cli

    wrong = run_cli("bench", "--protocol", "grpc2", "--model", NOOP, "--workload",
                    "poisson:rate=5,duration_s=1,slo_ms=100")  # fmt: skip
    assert wrong.exit_code != 0 and "grpc-stream" in wrong.output
