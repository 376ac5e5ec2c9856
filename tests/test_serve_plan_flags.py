"""``serve --plan`` and ``deploy`` refuse a flag that the plan (or the command) would ignore."""

from __future__ import annotations

import pytest

from qosbatch.cli import serve_cmds
from tests.conftest import assert_one_line_error, run_cli

PLAN = """\
schema: qosbatch.plan
version: 1
models:
- {name: noop, slo_ms: 50.0}
nodes:
- name: n-0
  replicas:
  - {model: noop, cores: 1, policy: "slo:max_batch_size=16"}
"""


@pytest.fixture
def plan(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN)
    return path


@pytest.mark.parametrize(
    ("flags", "line"),
    [
        (["--policy", "slo"], "--policy conflicts with --plan: the plan fixes each model's policy"),
        (["--slo", "500ms"], "--slo conflicts with --plan: the plan fixes each model's SLO"),
        (["--workers", "1"], "--workers conflicts with --plan: the plan fixes each model's replic"),
        (["--cores", "1"], "--cores conflicts with --plan: the plan fixes each model's cores"),
        (["--share-cores"], "--share-cores conflicts with --plan: the plan fixes each model's cor"),
        (["--no-share-cores"], "--share-cores conflicts with --plan"),
        (
            ["--policy", "dynamic", "--slo", "1s"],
            "--policy and --slo conflict with --plan: the plan fixes each model's policy and SLO; "
            "edit the plan or drop the flags",
        ),
        (
            ["--cores", "1", "--share-cores", "--workers", "2"],
            "--workers, --cores and --share-cores conflict with --plan: "
            "the plan fixes each model's replicas and cores",
        ),
    ],
)  # fmt: skip
def test_a_flag_the_plan_fixes_is_refused_even_at_its_default(plan, flags, line, monkeypatch):
    monkeypatch.setattr(serve_cmds, "_run", _must_not_serve)
    assert_one_line_error(run_cli("serve", "--plan", plan, *flags), line)


def test_the_same_flags_without_a_plan_are_taken(monkeypatch):
    served = []
    monkeypatch.setattr(serve_cmds, "_run", lambda config, *a: served.append(config))
    result = run_cli("serve", "--model", "noop", "--policy", "dynamic", "--slo", "40ms",
                     "--cores", "1", "--workers", "1")  # fmt: skip
    assert result.exit_code == 0, result.output
    (m,) = served[0].models
    assert (m.policy.name, m.slo_s, len(m.cpus), m.workers) == ("dynamic", 0.04, 1, 1)


def test_serve_plan_without_conflicting_flags_gets_to_serving(plan, monkeypatch):
    served = []
    monkeypatch.setattr(serve_cmds, "_run", lambda config, *a: served.append(config))
    result = run_cli("serve", "--plan", plan, "--port", "0", "--max-batch", "32")
    assert result.exit_code == 0, result.output
    (m,) = served[0].models
    assert (m.policy.name, m.policy.params, m.slo_s, len(m.cpus), m.workers, m.max_batch) == (
        "slo",
        {"max_batch_size": 16},
        0.05,
        1,
        1,
        32,
    )


def test_deploy_refuses_a_plan_with_status_or_shutdown_and_cpus_with_address(plan):
    for flag in ("--status", "--shutdown"):
        assert_one_line_error(
            run_cli("deploy", plan, flag, "--address", "auto"), "not on a plan file; drop the plan"
        )
    assert_one_line_error(
        run_cli("deploy", plan, "--address", "auto", "--cpus", "2"), "--cpus sizes the local Ray"
    )


def _must_not_serve(*args: object) -> None:
    raise AssertionError("serve got past its argument checks")
