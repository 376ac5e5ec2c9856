"""A plan on Ray Serve: the layout it asks for, the capacity check, and a real deployment."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import psutil
import pytest
from tests.conftest import assert_one_line_error, run_cli

from qosbatch.core.errors import UserError
from qosbatch.deploy.layout import ModelDeployment, check_fits, read_layout

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
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert rc == 0
    time.sleep(2)
    assert not _ray_processes(), [p.info["cmdline"] for p in _ray_processes()]
