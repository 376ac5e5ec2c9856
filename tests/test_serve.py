"""The live server end to end: a real process on 127.0.0.1, a stock tritonclient, faults.

Each test starts ``qosbatch serve`` as a child on a free port (``--port 0``, read
back from its banner) and stops it; the load stays on 127.0.0.1 and is bounded.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import psutil
import pytest
import tritonclient.http as th
from tritonclient.utils import InferenceServerException

from qosbatch.launch import Launched, LaunchError
from qosbatch.testing import banner_url

pytestmark = pytest.mark.slow

MODEL = "small-cnn"
SHAPE = (1, 3, 32, 32)


class Served:
    """A ``qosbatch serve`` child process and its address, started the one way
    (``qosbatch.launch``): its own session, its output in a log, its group stopped."""

    def __init__(self, *args: str, timeout_s: float = 90.0) -> None:
        cmd = [sys.executable, "-c", "from qosbatch.cli import main; main()", "serve"]
        cmd += ["--port", "0", *args]
        fd, log = tempfile.mkstemp(prefix="qosbatch-served-", suffix=".log")
        os.close(fd)  # (read into _final_log on the stop, then removed)
        self._launched = Launched("qosbatch serve", cmd, Path(log), grace_s=30.0)
        self._final_log: str | None = None  # what it said, kept once the log is removed
        self._launched.start()
        assert self._launched.proc is not None
        self.proc = self._launched.proc
        try:
            url = self._launched.wait_ready(banner_url, timeout_s)
        except LaunchError as exc:
            self.stop()
            raise AssertionError(f"server did not start: {exc}") from None
        self.url = url.removeprefix("http://")

    @property
    def log(self) -> list[str]:
        if self._final_log is not None:
            return [self._final_log]
        return [self._launched.log_text()]

    def client(self, concurrency: int = 1) -> th.InferenceServerClient:
        return th.InferenceServerClient(self.url, concurrency=concurrency, network_timeout=60)

    def get(self, path: str) -> tuple[int, bytes]:
        return _http("GET", f"http://{self.url}{path}")

    def post(self, path: str, body: bytes, headers: dict | None = None) -> tuple[int, bytes]:
        return _http("POST", f"http://{self.url}{path}", body, headers)

    def metric(self, name: str) -> float:
        _, text = self.get("/metrics")
        total = 0.0
        for line in text.decode().splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> int:
        """SIGTERM (the drain), then the group's SIGKILL if it lingers; the exit code."""
        self._launched.stop()
        if self._final_log is None:
            self._final_log = self._launched.log_text()
            self._launched.log_path.unlink(missing_ok=True)
        return self.proc.wait()


def _http(method: str, url: str, body: bytes | None = None, headers: dict | None = None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def infer_input(x: np.ndarray, binary: bool = True) -> th.InferInput:
    i = th.InferInput("input", list(x.shape), "FP32")
    i.set_data_from_numpy(x, binary_data=binary)
    return i


def expected_output(x: np.ndarray) -> np.ndarray:
    import torch

    from qosbatch.models.zoo import build_zoo_model

    with torch.inference_mode():
        return build_zoo_model(MODEL)(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="module")
def server():
    s = Served("--model", MODEL, "--policy", "slo", "--slo", "2s", "--max-body-mb", "0.5")
    yield s
    assert s.stop() == 0


def test_metadata_and_health_through_tritonclient(server):
    c = server.client()
    assert c.is_server_live() and c.is_server_ready() and c.is_model_ready(MODEL)
    meta = c.get_model_metadata(MODEL)
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 32, 32]}]
    assert meta["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 10]}]
    assert c.get_model_metadata(MODEL, model_version="1")["name"] == MODEL
    assert c.get_server_metadata()["extensions"] == ["binary_tensor_data"]


@pytest.mark.parametrize("binary", [True, False])
def test_infer_answers_the_model_output(server, binary):
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    c = server.client()
    out = [th.InferRequestedOutput("output", binary_data=binary)]
    result = c.infer(MODEL, [infer_input(x, binary)], outputs=out)
    np.testing.assert_allclose(result.as_numpy("output"), expected_output(x), rtol=1e-4, atol=1e-5)
    assert result.get_response()["parameters"]["outcome"] == "on_time"


def test_concurrent_requests_are_batched(server):
    before_n = server.metric("qosbatch_batch_size_count")
    before_sum = server.metric("qosbatch_batch_size_sum")
    results = _burst(server.url, np.ones(SHAPE, dtype=np.float32), 96)
    assert not [r for r in results if isinstance(r, Exception)]
    batches = server.metric("qosbatch_batch_size_count") - before_n
    requests = server.metric("qosbatch_batch_size_sum") - before_sum
    assert requests == 96
    assert batches < 96  # some batch held more than one request
    assert max(r.get_response()["parameters"]["batch_size"] for r in results) > 1


def test_hopeless_deadline_is_shed_with_429_and_reason(server):
    c = server.client()
    with pytest.raises(InferenceServerException) as err:
        c.infer(MODEL, [infer_input(np.ones(SHAPE, np.float32))], timeout=1)  # 1 microsecond
    assert "429" in str(err.value.status()) or "deadline" in str(err.value)
    status, body = server.post(
        f"/v2/models/{MODEL}/infer",
        json.dumps(
            {
                "inputs": [
                    {"name": "input", "shape": list(SHAPE), "datatype": "FP32",
                     "data": [0.0] * 3072}
                ],
                "parameters": {"slo_ms": 0.001},
            }
        ).encode(),
    )  # fmt: skip
    assert status == 429
    assert "deadline cannot be met" in json.loads(body)["error"]


def _binary_request(budget_ms: float) -> tuple[bytes, bytes]:
    """(HTTP head with the JSON header, the tensor's bytes) of one binary infer request."""
    raw = np.ones(SHAPE, np.float32).tobytes()
    head = json.dumps(
        {
            "inputs": [{"name": "input", "shape": list(SHAPE), "datatype": "FP32",
                        "parameters": {"binary_data_size": len(raw)}}],
            "parameters": {"slo_ms": budget_ms},
        }
    ).encode()  # fmt: skip
    http = (
        f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\n"
        f"Content-Length: {len(head) + len(raw)}\r\n"
        f"Inference-Header-Content-Length: {len(head)}\r\n\r\n"
    ).encode()
    return http + head, raw


def _answer(sock: socket.socket) -> bytes:
    """One HTTP answer's bytes (status line, headers and a Content-Length body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_a_hopeless_binary_request_is_shed_before_its_tensor_is_sent(server):
    """The 429 comes back while the tensor's bytes are still unsent; the connection stays."""
    host, port = server.url.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        first, tensor = _binary_request(budget_ms=0.001)
        sock.sendall(first)  # headers and the JSON header only
        answer = _answer(sock)
        assert answer.startswith(b"HTTP/1.1 429"), answer[:200]
        assert b"deadline cannot be met" in answer
        sock.sendall(tensor)  # the rest of that body, which the server discards unread
        first, tensor = _binary_request(budget_ms=2000)
        sock.sendall(first + tensor)  # and the same connection still serves
        answer = _answer(sock)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def test_a_body_over_the_limit_gets_413_before_it_is_sent(server):
    """Refused from its Content-Length alone (a client sending it whole may instead see the
    connection close under its feet, which made this test flaky through urllib)."""
    host, port = server.url.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {600 << 10}\r\n\r\n".encode()
        )
        answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"limit" in answer


def test_requests_past_the_in_flight_bound_get_503_at_once():
    s = Served("--model", MODEL, "--max-in-flight", "1")
    try:
        host, port = s.url.split(":")
        with socket.create_connection((host, int(port)), timeout=10) as hold:
            first, tensor = _binary_request(budget_ms=5000)
            hold.sendall(first)  # one request in flight, its tensor not sent yet
            deadline = time.monotonic() + 10
            while s.metric("qosbatch_requests_in_flight") < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            status, body = s.post(f"/v2/models/{MODEL}/infer", b"{}")
            assert status == 503
            assert "--max-in-flight" in json.loads(body)["error"]
            hold.sendall(tensor)
            assert _answer(hold).startswith(b"HTTP/1.1 200")
        assert s.client().infer(MODEL, [infer_input(np.ones(SHAPE, np.float32))]) is not None
    finally:
        assert s.stop() == 0


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    [
        ("/v2/models/nope/infer", b"{}", 404, "unknown model 'nope'"),
        (f"/v2/models/{MODEL}/versions/7/infer", b"{}", 404, "no version '7'"),
        (f"/v2/models/{MODEL}/infer", b"{oops", 400, "malformed JSON"),
        (
            f"/v2/models/{MODEL}/infer",
            json.dumps(
                {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32",
                             "data": [1, 2, 3]}]}
            ).encode(),
            400,
            "has shape [1, 3]",
        ),
        (
            f"/v2/models/{MODEL}/infer",
            json.dumps(
                {"inputs": [{"name": "input", "shape": list(SHAPE), "datatype": "INT8",
                             "data": [0] * 3072}]}
            ).encode(),
            400,
            "datatype 'INT8'",
        ),
    ],
)  # fmt: skip
def test_bad_input_gets_4xx_and_the_server_keeps_serving(server, path, body, status, fragment):
    got, answer = server.post(path, body)
    assert got == status
    assert fragment in json.loads(answer)["error"]
    result = server.client().infer(MODEL, [infer_input(np.ones(SHAPE, np.float32))])
    assert result.as_numpy("output").shape == (1, 10)


def test_unknown_route_and_method_answer_in_protocol_form(server):
    status, body = server.get("/v2/nothing")
    assert status == 404 and "error" in json.loads(body)
    status, body = server.get(f"/v2/models/{MODEL}/infer")
    assert status == 405 and "error" in json.loads(body)


def test_metrics_and_openapi(server):
    _, text = server.get("/metrics")
    text = text.decode()
    for name in (
        "qosbatch_requests_total",
        "qosbatch_request_latency_seconds_bucket",
        "qosbatch_batch_size_bucket",
        "qosbatch_queue_depth",
        "qosbatch_worker_cores",
    ):
        assert name in text
    status, body = server.get("/openapi.json")
    doc = json.loads(body)
    assert status == 200
    assert "/v2/models/{model}/infer" in doc["paths"]
    assert "429" in json.dumps(doc["paths"]["/v2/models/{model}/infer"])


def _worker_pid(server: Served) -> int:
    children = psutil.Process(server.proc.pid).children(recursive=True)
    workers = [p for p in children if "multiprocessing" in " ".join(p.cmdline())]
    workers = [p for p in workers if "resource_tracker" not in " ".join(p.cmdline())]
    assert workers, [p.cmdline() for p in children]
    return workers[0].pid


def test_killed_worker_leaves_no_request_unanswered_and_comes_back():
    s = Served("--model", MODEL, "--policy", "dynamic:max_batch_size=4,max_queue_delay_ms=1")
    try:
        x = np.ones((128, 3, 32, 32), dtype=np.float32)  # long batches
        burst = concurrent.futures.ThreadPoolExecutor(1).submit(_burst, s.url, x, 40)
        # A full batch (4) waiting means the worker is busy (dynamic would have dispatched
        # it otherwise): the kill lands mid-batch, not after a sleep that may miss it.
        deadline = time.monotonic() + 30
        while s.metric("qosbatch_queue_depth") < 4 and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(_worker_pid(s), signal.SIGKILL)
        ok = failed = 0
        for result in burst.result(timeout=120):
            if isinstance(result, InferenceServerException):
                assert "died" in str(result) or "restart" in str(result), str(result)
                failed += 1
            else:
                assert not isinstance(result, BaseException), repr(result)
                ok += 1
        assert ok + failed == 40  # every one answered: a result, or the worker's death
        # (failed is usually >= 1, the batch the kill hit; 0 when the kill landed between a
        # batch's result and the next dispatch, which the poll above cannot rule out.)
        deadline = time.monotonic() + 10
        while True:  # served again within seconds of the kill
            try:
                s.client().infer(MODEL, [infer_input(np.ones(SHAPE, np.float32))])
                break
            except InferenceServerException:
                assert time.monotonic() < deadline, "the worker did not come back"
                time.sleep(0.2)
        assert s.metric("qosbatch_worker_restarts_total") == 1
        assert s.metric("qosbatch_requests_total") >= 41
    finally:
        assert s.stop() == 0


def _burst(url: str, x: np.ndarray, n: int) -> list:
    """``n`` concurrent infers with tritonclient's asyncio client; results or exceptions.

    (Its gevent client sends about one request per 10 ms here, too slowly for any two
    to meet in the server's queue.)
    """
    import asyncio

    import tritonclient.http.aio as tha

    async def run():
        c = tha.InferenceServerClient(url)
        try:
            calls = (c.infer(MODEL, [infer_input(x)]) for _ in range(n))
            return await asyncio.gather(*calls, return_exceptions=True)
        finally:
            await c.close()

    return asyncio.run(run())


def test_sigterm_answers_accepted_requests_then_exits_0():
    s = Served("--model", MODEL, "--policy", "dynamic:max_batch_size=2,max_queue_delay_ms=1")
    try:
        x = np.ones((32, 3, 32, 32), dtype=np.float32)
        out: list = []
        sender = threading.Thread(target=lambda: out.extend(_burst(s.url, x, 16)))
        sender.start()
        deadline = time.monotonic() + 20
        while s.metric("qosbatch_queue_depth") < 4:  # accepted and waiting when it lands
            assert time.monotonic() < deadline, "the requests never queued"
        s.proc.send_signal(signal.SIGTERM)
        sender.join(60)
        assert len(out) == 16
        assert all(not isinstance(r, Exception) for r in out), out  # all answered
        assert all(r.as_numpy("output").shape == (32, 10) for r in out)
        assert s.proc.wait(30) == 0
        assert "draining" in "".join(s.log)
    finally:
        s.stop()  # (a failed assertion must not leave the server running)


def test_bench_reports_simulate_keys_from_the_client_side(server, tmp_path):
    from tests.conftest import run_cli

    out = tmp_path / "live.png"
    result = run_cli(
        "bench", "--url", f"http://{server.url}", "--model", MODEL,
        "--workload", "poisson:rate=40,duration_s=2,slo_ms=1000", "--json", "--plot", out,
        "--price", "0.04/core-hour", "--cores", "2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)[0]
    for key in ("policy", "requests", "on_time", "late", "rejected", "attainment", "goodput",
                "throughput", "p50_ms", "p95_ms", "p99_ms", "mean_batch"):  # fmt: skip
        assert key in row
    assert row["requests"] == row["on_time"] + row["late"] + row["rejected"] > 40
    assert row["errors"] == 0
    assert out.stat().st_size > 0
    # Cost per million on-time: 2 cores held over the span at $0.04 per core-hour.
    held = 0.04 / 3600 * 2 * row["span_s"]
    assert row["usd_per_million_on_time"] == pytest.approx(held / row["on_time"] * 1e6)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_a_worker_changes_its_cores_in_place_without_restarting():
    import asyncio

    from qosbatch.models.loading import resolve_model
    from qosbatch.serve.worker import WorkerHandle, WorkerSpec

    cpus = tuple(sorted(os.sched_getaffinity(0))[:2])

    async def scenario():
        w = WorkerHandle(WorkerSpec(resolve_model(MODEL)), cpus, "worker 0 of small-cnn")
        await w.start()
        try:
            x = np.ones((4, 3, 32, 32), np.float32)
            seen = []
            for use in (cpus[:1], cpus, cpus[1:]):
                out = await w.run([x[:1], x[1:]], use)
                assert out.output.shape == (4, 10)
                seen.append((w.pid, tuple(sorted(os.sched_getaffinity(w.pid)))))
            return seen
        finally:
            await w.stop()

    seen = asyncio.run(scenario())
    assert [s[1] for s in seen] == [cpus[:1], cpus, cpus[1:]]
    assert len({s[0] for s in seen}) == 1  # the same process throughout


def test_records_written_live_replay_in_the_simulator(tmp_path, amdahl_law):
    """Record in production, replay offline: every answer is a line; simulate reads them."""
    from qosbatch.core.profile import save_profile
    from tests.conftest import make_profile, run_cli

    path = tmp_path / "live.jsonl"
    s = Served("--model", MODEL, "--records", str(path))
    try:
        x = np.ones(SHAPE, np.float32)
        client = s.client()
        for _ in range(5):
            client.infer(MODEL, [infer_input(x)], parameters={"slo_ms": 2000})
        status, _ = s.post(
            f"/v2/models/{MODEL}/infer",
            json.dumps({"inputs": [{"name": "input", "shape": list(SHAPE), "datatype": "FP32",
                                    "data": [0.0] * 3072}],
                        "parameters": {"slo_ms": 0.001}}).encode(),
        )  # fmt: skip
        assert status == 429
    finally:
        assert s.stop() == 0
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["outcome"] for r in lines].count("on_time") == 5
    assert [r["status"] for r in lines].count(429) == 1
    assert all(r["model"] == MODEL and r["time_s"] >= 0 for r in lines)
    profile = tmp_path / "p.json"
    save_profile(make_profile(amdahl_law, name=MODEL), profile)
    result = run_cli("simulate", "--trace", path, "--profile", profile, "--policy", "slo")
    assert result.exit_code == 0, result.output
    assert "6" in result.output  # the six requests the server met


BREAKS_LIVE = '''
from qosbatch.policies.dynamic import DynamicPolicy


class BreaksLive(DynamicPolicy):
    """Keeps the contract in check_policy's scenarios; raises on the served model."""

    name = "breaks-live"

    def decide(self, view):
        if view.model == "small-cnn":
            raise RuntimeError("boom")
        return super().decide(view)
'''


def test_a_user_policy_that_raises_live_is_replaced_and_no_request_is_lost(tmp_path, monkeypatch):
    (tmp_path / "breaks_live.py").write_text(BREAKS_LIVE)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    s = Served("--model", MODEL, "--policy", "breaks_live:BreaksLive")
    try:
        x = np.ones(SHAPE, np.float32)
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: s.client().infer(MODEL, [infer_input(x)]), range(8)))
        assert all(a.as_numpy("output").shape == (1, 10) for a in answers)  # all served
        assert s.metric("qosbatch_policy_faults_total") == 1
    finally:
        assert s.stop() == 0
    assert "policy breaks-live failed; falling back to dynamic" in "".join(s.log)
