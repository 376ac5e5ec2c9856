"""A plan on Ray Serve: the layout it asks for, the capacity check, and a real deployment."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np
import psutil
import pytest

from qosbatch.core.errors import UserError
from qosbatch.deploy.layout import ModelDeployment, check_fits, read_layout
from tests.conftest import assert_one_line_error, run_cli

PLAN = """\
schema: qosbatch.plan
version: 1
models:
- {name: noop, slo_ms: 200.0}
- {name: mlp, slo_ms: 300.0}
nodes:
- name: a-0
  replicas:
  - {model: noop, cores: 1, memory_mib: 300,
     policy: "dynamic:max_batch_size=8,max_queue_delay_ms=1"}
- name: b-0
  replicas:
  - {model: mlp, cores: 1, policy: slo, memory_mib: 400}
"""


@pytest.fixture
def plan(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN)
    return path


def test_layout_groups_every_node_replicas_by_model(plan, tmp_path):
    assert read_layout(plan) == [
        ModelDeployment("noop", "dynamic:max_batch_size=8,max_queue_delay_ms=1", 200.0, 1, 1, 300),
        ModelDeployment("mlp", "slo", 300.0, 1, 1, 400),
    ]
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema: qosbatch.plan\nmodels: []\nnodes: []\n")
    with pytest.raises(UserError, match="places no replica"):
        read_layout(bad)


def test_a_plan_the_cluster_cannot_hold_is_refused_with_the_numbers(plan):
    layout = read_layout(plan)
    check_fits(layout, 2, 1 << 30)
    with pytest.raises(UserError, match=r"needs 2 CPUs .* the cluster has 1"):
        check_fits(layout, 1, 1 << 30)
    with pytest.raises(UserError, match="needs 700 MiB of memory; the cluster has 512 MiB"):
        check_fits(layout, 4, 512 << 20)
    # And from the command line, before any Ray starts:
    assert_one_line_error(run_cli("deploy", plan, "--cpus", 1), "needs 2 CPUs")
    dry = run_cli("deploy", plan, "--dry-run")
    assert dry.exit_code == 0 and "noop: 1 replica(s) x 1 core(s)" in dry.stdout


def _ray_processes() -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["name", "cmdline"]):
        text = " ".join(p.info["cmdline"] or []) + " " + (p.info["name"] or "")
        if "gcs_server" in text or "raylet" in text or "ray::" in text:
            out.append(p)
    return out


def _kill_a_replica_mid_load(port: int) -> None:
    """SIGKILL mlp's replica with requests in flight: each is answered, Ray replaces it."""
    import tritonclient.http as th

    replica = next(p for p in _ray_processes() if "model-mlp" in " ".join(p.info["cmdline"]))
    out: list = []
    x = np.ones((64, 784), np.float32)
    sender = threading.Thread(target=lambda: out.extend(_burst_model(port, "mlp", x, 40)))
    sender.start()
    time.sleep(0.3)
    replica.kill()
    sender.join(120)
    assert len(out) == 40  # every request answered: a result or an error naming the cause
    for r in out:
        if isinstance(r, Exception):
            assert "replica of mlp failed" in str(r), str(r)
    deadline = time.monotonic() + 60
    i = th.InferInput("input", [1, 784], "FP32")
    i.set_data_from_numpy(np.ones((1, 784), np.float32))
    while True:  # Ray starts a new replica
        try:
            th.InferenceServerClient(f"127.0.0.1:{port}").infer("mlp", [i])
            break
        except Exception:
            assert time.monotonic() < deadline, "mlp did not come back"
            time.sleep(1)


def _burst_model(port: int, model: str, x: np.ndarray, n: int) -> list:
    import asyncio

    import tritonclient.http as th
    import tritonclient.http.aio as tha

    async def run():
        c = tha.InferenceServerClient(f"127.0.0.1:{port}")
        try:

            def one():
                i = th.InferInput("input", list(x.shape), "FP32")
                i.set_data_from_numpy(x)
                return c.infer(model, [i])

            return await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
        finally:
            await c.close()

    return asyncio.run(run())


@pytest.mark.slow
def test_deploy_serves_both_models_to_tritonclient_and_shuts_down_clean(plan):
    import tritonclient.http as th

    if _ray_processes():
        pytest.skip("a Ray instance is already running on this machine")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-c", "from qosbatch.cli import main; main()", "deploy", str(plan),
           "--port", str(port), "--cpus", "2"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 90
        for line in proc.stdout:
            log.append(line)
            if "serving on http://" in line or time.monotonic() > deadline:
                break
        assert "serving on" in log[-1], "".join(log)
        c = th.InferenceServerClient(f"127.0.0.1:{port}")
        assert c.get_model_metadata("mlp")["inputs"][0]["shape"] == [-1, 784]
        for name, shape in (("noop", (2, 4)), ("mlp", (1, 784))):
            x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
            i = th.InferInput("input", list(shape), "FP32")
            i.set_data_from_numpy(x)
            out = c.infer(name, [i]).as_numpy("output")
            assert out.shape[0] == shape[0]
            if name == "noop":
                np.testing.assert_array_equal(out, x)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
            assert b'qosbatch_requests_total{model="mlp",outcome="on_time"} 1.0' in r.read()
        _kill_a_replica_mid_load(port)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert rc == 0
    deadline = time.monotonic() + 15  # Ray's processes exit (and get reaped) shortly after
    while _ray_processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _ray_processes(), [p.info["cmdline"] for p in _ray_processes()]
