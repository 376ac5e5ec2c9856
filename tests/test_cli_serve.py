"""``serve`` and ``bench`` refuse bad arguments with one line, before loading any model."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import assert_one_line_error, run_cli


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--model", "nope"], "unknown model 'nope'"),
        (["--model", "noop", "--policy", "magic"], "unknown policy 'magic'"),
        (["--model", "noop", "--policy", "dynamic:max_batch_size=0"], "max_batch_size"),
        (["--model", "noop", "--slo", "fast"], "--slo"),
        (["--model", "noop", "--cores", "999"], "--cores"),
        (["--model", "noop", "--workers", "9"], "workers must be between"),
        (["--model", "noop", "--port", "70000"], "--port"),
        (["--model", "noop", "--backend", "tf"], "unknown backend"),
        (["--model", "noop", "--max-batch", "0"], "--max-batch"),
        (["--model", "noop", "--profile", "/nonexistent.json"], "nonexistent.json"),
    ],
)
def test_serve_bad_arguments(args, fragment):
    assert_one_line_error(run_cli("serve", *args), fragment)


def test_serve_busy_port_is_one_line():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert_one_line_error(
            run_cli("serve", "--model", "noop", "--port", port), f"127.0.0.1:{port}"
        )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ([], "exactly one of --trace and --workload"),
        (["--workload", "poisson:rate=1,duration_s=1,slo_ms=9", "--url", "ftp://x"], "--url"),
        (["--workload", "bogus:rate=1"], "bogus"),
        (["--workload", "poisson:rate=10,duration_s=100,slo_ms=9", "--max-requests", "5"],
         "--max-requests"),
        (["--workload", "poisson:rate=10,duration_s=1,slo_ms=9", "--url",
          "http://127.0.0.1:9"], "cannot reach"),
        (["--workload", "poisson:rate=1,duration_s=1,slo_ms=9", "--encoding", "xml"],
         "--encoding must be binary or json"),
        (["--workload", "poisson:rate=1,duration_s=1,slo_ms=9", "--price", "cheap"], "--price"),
        (["--workload", "poisson:rate=1,duration_s=1,slo_ms=9", "--cores", "0"], "--cores"),
    ],
)  # fmt: skip
def test_bench_bad_arguments(args, fragment):
    assert_one_line_error(run_cli("bench", "--model", "noop", *args), fragment)


PLAN = """\
schema: qosbatch.plan
version: 1
models:
- {name: mlp, slo_ms: 80.0}
- {name: noop, slo_ms: 5.0}
nodes:
- name: small-0
  replicas:
  - {model: mlp, cores: 1, policy: "dynamic:max_batch_size=4,max_queue_delay_ms=1"}
  - {model: mlp, cores: 1, policy: "dynamic:max_batch_size=4,max_queue_delay_ms=1"}
- name: big-0
  replicas:
  - {model: noop, cores: 3, policy: slo}
"""


def test_plan_assignment_groups_replicas_per_model(tmp_path):
    from qosbatch.planner.files import PlannedModel, read_plan_models

    path = tmp_path / "plan.yaml"
    path.write_text(PLAN)
    assert read_plan_models(path, None) == [
        PlannedModel("mlp", "dynamic:max_batch_size=4,max_queue_delay_ms=1", 80.0, (1, 1), (0, 0))
    ]
    assert read_plan_models(path, "big-0") == [PlannedModel("noop", "slo", 5.0, (3,), (0,))]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ([], "give --model (repeatable) or --plan"),
        (["--model", "noop", "--plan", "{plan}"], "not both"),
        (["--model", "noop", "--node", "big-0"], "there is no plan"),
        (["--plan", "{plan}", "--node", "nope"], "has no node 'nope'; it has small-0, big-0"),
        (["--plan", "{plan}", "--node", "big-0", "--port", "1"], ""),  # 3 cores: too many here
        (["--plan", "{bad}"], "is not a qosbatch plan"),
    ],
)
def test_serve_plan_errors(tmp_path, args, fragment):
    plan, bad = tmp_path / "plan.yaml", tmp_path / "bad.yaml"
    plan.write_text(PLAN)
    bad.write_text("models: []\n")
    args = [a.format(plan=plan, bad=bad) for a in args]
    result = run_cli("serve", *args)
    assert_one_line_error(result, fragment)
