"""``qosbatch recommend`` and ``qosbatch plan``: one line, plans on disk, errors as one line."""

from __future__ import annotations

import pytest
import yaml

from conftest import assert_one_line_error, make_profile
from conftest import run_cli as run
from qosbatch.core.profile import save_profile


def law(b, c):
    return (0.01 * b + 0.004) / c + 0.001 * b + 0.003


@pytest.fixture
def profile_file(tmp_path):
    path = tmp_path / "m.json"
    save_profile(make_profile(law, name="m"), path)
    return path


@pytest.fixture
def catalogue_file(tmp_path):
    path = tmp_path / "nodes.yaml"
    path.write_text(
        "as_of: '2024-06'\n"
        "node_types:\n"
        "  - {name: small, cores: 2, memory_gib: 4, price_per_hour: 0.1}\n"
        "  - {name: large, cores: 8, memory_gib: 16, price_per_hour: 0.38}\n"
    )
    return path


@pytest.mark.parametrize(
    ("policy", "spec"), [("slo", "slo:max_batch_size="), ("dynamic", "dynamic:max_batch_size=")]
)
def test_recommend_prints_one_actionable_line(profile_file, policy, spec):
    result = run(
        "recommend", profile_file, "--slo", "200ms", "--rate", 20, "--percentile", 99,
        "--policy", policy,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    line = lines[0]
    for fragment in (spec, "core", "replica", "p99", "ms", "20 req/s"):
        assert fragment in line


def test_recommend_with_a_catalogue_prices_it(profile_file, catalogue_file):
    result = run(
        "recommend", profile_file, "--slo", "0.2s", "--rate", 50, "--nodes", catalogue_file
    )
    assert result.exit_code == 0, result.output
    assert len(result.stdout.strip().splitlines()) == 1
    assert "$" in result.stdout and "/h" in result.stdout and "predicted" in result.stdout


def test_recommend_with_the_default_catalogue(profile_file):
    result = run("recommend", profile_file, "--slo", "300ms", "--rate", 5, "--nodes", "default")
    assert result.exit_code == 0, result.output
    assert any(f in result.stdout for f in ("c6i", "c7i", "m6i", "fargate"))


def test_unreachable_slo_exits_2_with_one_line(profile_file):
    result = run(
        "recommend", profile_file, "--slo", "2ms", "--rate", 20, "--percentile", 99,
        "--serve-via", "none",
    )  # fmt: skip
    assert_one_line_error(result, "fastest batch-1 latency", "model m")
    result = run("recommend", profile_file, "--slo", "6ms", "--rate", 20, "--percentile", 99)
    assert_one_line_error(result, "the local path alone takes 8 ms", "model m")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--slo", "soon", "--rate", 1), "--slo"),
        (("--slo", "1s", "--rate", 0), "--rate"),
        (("--slo", "1s", "--rate", 1, "--percentile", 99.9), "percentile must be between"),
        (("--slo", "1s", "--rate", 1, "--max-batch", "0"), "--max-batches"),
        (("--slo", "1s", "--rate", 1, "--policy", "aimd"), "--policy must be slo or dynamic"),
        (("--slo", "1s", "--rate", 1, "--serve-via", "k8s"), "--serve-via must be one of"),
        (("--slo", "1s", "--rate", 1, "--path-overhead", "x"), "--path-overhead takes"),
        (("--slo", "1s", "--rate", 1, "--frontend", "request=x"), "--frontend"),
        (
            ("--slo", "1s", "--rate", 1, "--policy", "dynamic", "--frontend", "request=1ms"),
            "--frontend is for --policy slo",
        ),
    ],
)
def test_bad_options_exit_2_with_one_line(profile_file, args, fragment):
    assert_one_line_error(run("recommend", profile_file, *args), fragment)


def test_malformed_catalogue_names_the_field(profile_file, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("node_types:\n  - {name: x, cores: 2, memory_gib: 4, price_per_hour: cheap}\n")
    result = run("recommend", profile_file, "--slo", "1s", "--rate", 1, "--nodes", bad)
    assert_one_line_error(result, "node_types[0].price_per_hour", "cheap")
    broken = tmp_path / "broken.yaml"
    broken.write_text("node_types: [\n")
    result = run("recommend", profile_file, "--slo", "1s", "--rate", 1, "--nodes", broken)
    assert_one_line_error(result, "not valid YAML")


def workload_file(tmp_path, profile_file, **extra):
    path = tmp_path / "models.yaml"
    model = {"profile": profile_file.name, "rate": 30, "slo": "150ms", "percentile": 99, **extra}
    path.write_text(yaml.safe_dump({"models": [model]}))
    return path


def test_plan_writes_a_plan_and_verifies_it(tmp_path, profile_file, catalogue_file):
    out = tmp_path / "plan.yaml"
    models = workload_file(tmp_path, profile_file)
    result = run(
        "plan",
        "--workload",
        models,
        "--nodes",
        catalogue_file,
        "-o",
        out,
        "--verify",
        "--requests",
        5000,
    )
    assert result.exit_code == 0, result.output
    plan = yaml.safe_load(out.read_text())
    assert plan["schema"] == "qosbatch.plan" and plan["cost_per_hour"] > 0
    assert plan["nodes"] and plan["nodes"][0]["replicas"][0]["model"] == "m"
    assert "attainment" in result.stdout and "meets its target" in result.stdout


def test_plan_workload_errors_name_the_field(tmp_path, profile_file):
    models = workload_file(tmp_path, profile_file, rate="lots")
    result = run("plan", "--workload", models, "-o", tmp_path / "p.yaml")
    assert_one_line_error(result, "models[0].rate", "lots")
    models.write_text(yaml.safe_dump({"models": [{"profile": "nope.json", "rate": 1, "slo": 1}]}))
    result = run("plan", "--workload", models, "-o", tmp_path / "p.yaml")
    assert_one_line_error(result, "models[0].profile", "not found")


def test_plan_that_node_limits_cannot_hold_names_the_model(tmp_path, profile_file):
    nodes = tmp_path / "one.yaml"
    nodes.write_text(
        "node_types:\n"
        "  - {name: tiny, cores: 2, memory_gib: 4, price_per_hour: 0.1, max_nodes: 1}\n"
    )
    models = workload_file(tmp_path, profile_file, rate=5000)
    result = run("plan", "--workload", models, "--nodes", nodes, "-o", tmp_path / "p.yaml")
    assert_one_line_error(result, "model m", "node limits")
