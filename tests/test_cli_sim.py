"""``qosbatch simulate`` and ``qosbatch workload generate`` end to end, through the CLI."""

from __future__ import annotations

import json

import pytest

from conftest import assert_one_line_error
from conftest import run_cli as run
from qosbatch.core.profile import save_profile
from qosbatch.testing import synthetic_profile

WORKLOAD = "poisson:rate=40,duration_s=10,slo_ms=150"
SHORT = "poisson:rate=40,duration_s=3,slo_ms=150"
KEYS = {
    "policy",
    "requests",
    "on_time",
    "late",
    "rejected",
    "attainment",
    "goodput",
    "throughput",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "mean_batch",
}


def sim(profile, *args):
    return run("simulate", "--profile", profile, *args)


def ok_json(result):
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def profile(tmp_path):
    path = tmp_path / "m1.json"
    save_profile(synthetic_profile(name="m1"), path)
    return path


def test_simulate_prints_one_json_row_per_policy(profile):
    rows = ok_json(
        sim(profile, "--policy", "slo,dynamic,aimd,single", "--workload", WORKLOAD, "--json")
    )
    assert [r["policy"] for r in rows] == ["slo", "dynamic", "aimd", "single"]
    for r in rows:
        assert set(r) >= KEYS
        assert r["requests"] == r["on_time"] + r["late"] + r["rejected"] > 300
        assert r["attainment"] == pytest.approx(r["on_time"] / r["requests"])
        assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
        assert r["goodput"] <= r["throughput"] + 1e-9
        assert r["mean_batch"] >= 1
    assert len({r["requests"] for r in rows}) == 1  # the same workload for every policy
    # 40 req/s at ~22 ms each keeps one unbatched worker 87% busy: its queue makes some
    # requests late, while the batching policies keep every request on time.
    *batching, single = rows
    assert single["mean_batch"] == 1 and single["late"] > 0
    for r in batching:
        assert r["mean_batch"] > 1
        assert r["attainment"] >= 0.99 > single["attainment"]


def test_simulate_default_policies_and_knobs_in_the_label(profile):
    rows = ok_json(sim(profile, "--workload", SHORT, "--json"))
    assert [r["policy"] for r in rows] == ["slo", "dynamic", "aimd", "single"]
    dynamic = "dynamic:max_batch_size=16,max_queue_delay_ms=5"
    rows = ok_json(
        sim(profile, "--workload", SHORT, "--json", "--policy", dynamic, "--policy", "single")
    )
    assert [r["policy"] for r in rows] == [dynamic, "single"]


def test_simulate_prints_a_table_without_json(profile):
    rows = ok_json(sim(profile, "--workload", SHORT, "--policy", "slo,single", "--json"))
    result = sim(profile, "--workload", SHORT, "--policy", "slo,single")
    assert result.exit_code == 0, result.output
    # Not cut to fit a narrow (or piped, 80-column) console: every name and number whole.
    assert "…" not in result.stdout
    lines = [line for line in result.stdout.splitlines() if "single" in line or "slo " in line]
    assert len(lines) == 2
    for row, line in zip(rows, lines, strict=True):
        assert row["policy"] in line
        assert f"{row['p99_ms']:.1f}" in line and f"{row['goodput']:.1f}" in line


def test_simulate_writes_a_plot(profile, tmp_path):
    out = tmp_path / "att.png"
    result = sim(profile, "--policy", "slo,single", "--workload", SHORT, "--json", "--plot", out)
    rows = ok_json(result)
    assert len(rows) == 2
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_gives_a_capacity_per_policy(profile):
    sweep = ("--sweep", "--json", "--deterministic")
    rows = ok_json(sim(profile, "--policy", "slo,single", "--workload", SHORT, *sweep))
    assert [r["policy"] for r in rows] == ["slo", "single"]
    for r in rows:
        assert r["capacity_rps"] > 0 and r["target"] == 0.99
        assert r["attainment"] >= 0.99  # the metrics at the capacity
        assert r["curve"]
    # Batching carries more than one request at a time (single: at most 1 / 21.7 ms).
    assert rows[0]["capacity_rps"] > rows[1]["capacity_rps"]
    assert rows[1]["capacity_rps"] < 1 / 0.0217


def test_tune_replaces_dynamic_with_its_best_setting(profile):
    args = ("--workload", SHORT, "--json", "--deterministic", "--tune", "dynamic")
    result = sim(profile, "--policy", "slo,dynamic,single", *args)
    rows = ok_json(result)
    labels = [r["policy"] for r in rows]
    assert labels[0] == "slo" and labels[2] == "single"
    assert labels[1].startswith("dynamic:max_batch_size=") and "max_queue_delay_ms=" in labels[1]
    assert "tuned dynamic" in result.stderr and "best of 42 settings" in result.stderr
    rows = ok_json(sim(profile, "--policy", "slo", *args))  # no dynamic listed: added
    assert [r["policy"] for r in rows][1:] == labels[1:2]


def test_generate_a_trace_then_replay_it(profile, tmp_path):
    out = tmp_path / "t.csv"
    result = run("workload", "generate", WORKLOAD, "-o", out, "--model", "m1", "--seed", 3)
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stdout
    lines = out.read_text().splitlines()
    assert lines[0] == "time_s,model,slo_ms"
    assert 300 < len(lines) - 1 < 500
    assert all(line.split(",")[1] == "m1" for line in lines[1:])
    common = ("--seed", 3, "--json", "--policy", "slo,dynamic")
    replay = ok_json(sim(profile, "--trace", out, *common))
    direct = ok_json(sim(profile, "--workload", WORKLOAD, *common))
    assert replay[0]["requests"] == len(lines) - 1
    for a, b in zip(replay, direct, strict=True):  # the same workload, replayed
        for key in ("requests", "on_time", "late", "rejected"):
            assert a[key] == b[key], key
        assert a["p99_ms"] == pytest.approx(b["p99_ms"], rel=1e-6)


def test_generate_names_the_default_model(tmp_path):
    out = tmp_path / "t.csv"
    assert run("workload", "generate", SHORT, "-o", out).exit_code == 0
    assert out.read_text().splitlines()[1].split(",")[1] == "model"


# ---- bad input: one line, exit 2 ---------------------------------------------------


def test_missing_profile(tmp_path):
    result = run("simulate", "--profile", tmp_path / "nope.json", "--workload", SHORT)
    assert_one_line_error(result, "profile not found", "nope.json")


def test_bad_policy_spec(profile):
    result = sim(profile, "--workload", SHORT, "--policy", "dynamic:max_delay=5")
    assert_one_line_error(result, "no knob 'max_delay'")
    result = sim(profile, "--workload", SHORT, "--policy", "clipper")
    assert_one_line_error(result, "unknown policy 'clipper'")


def test_unknown_workload_kind_and_bad_keys(profile):
    result = sim(profile, "--workload", "zipf:rate=10")
    assert_one_line_error(result, "unknown workload kind 'zipf'")
    result = sim(profile, "--workload", "poisson:rate=x,duration_s=1")
    assert_one_line_error(result, "rate must be a number")
    result = sim(profile, "--workload", SHORT + ",model=resnet50")
    assert_one_line_error(result, "'resnet50' has no profile")
    result = run("workload", "generate", "zipf:rate=10", "-o", "never.csv")
    assert_one_line_error(result, "unknown workload kind 'zipf'")


def test_bad_traces(profile, tmp_path):
    back = tmp_path / "back.csv"
    back.write_text("time_s,model,slo_ms\n0.1,m1,100\n0.3,m1,100\n0.2,m1,100\n")
    assert_one_line_error(sim(profile, "--trace", back), "back.csv:4:", "goes back in time")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert_one_line_error(sim(profile, "--trace", empty), "is empty")
    header = tmp_path / "header.csv"
    header.write_text("time_s,model,slo_ms\n")
    assert_one_line_error(sim(profile, "--trace", header), "no requests")
    other = tmp_path / "other.csv"
    other.write_text("time_s,model,slo_ms\n0.1,m1,100\n0.2,resnet18,100\n")
    assert_one_line_error(
        sim(profile, "--trace", other),
        "other.csv:3:",
        "unknown model 'resnet18'",
    )
    result = sim(profile, "--trace", tmp_path / "missing.csv")
    assert_one_line_error(result, "trace not found")


def test_exactly_one_of_trace_or_workload(profile, tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("time_s,model,slo_ms\n0.1,m1,100\n")
    both = sim(profile, "--trace", trace, "--workload", SHORT)
    assert_one_line_error(both, "exactly one of --trace FILE or --workload SPEC")
    neither = run("simulate", "--profile", profile)
    assert_one_line_error(neither, "exactly one of --trace FILE or --workload SPEC")


def test_bad_numbers(profile):
    base = ("--workload", SHORT)
    assert_one_line_error(sim(profile, *base, "--target", 1.5), "--target must be in (0, 1]")
    assert_one_line_error(sim(profile, *base, "--max-batch", 0), "--max-batch must be >= 1")
    assert_one_line_error(sim(profile, *base, "--tune", "aimd"), "--tune supports dynamic only")
    assert_one_line_error(
        sim(profile, *base, "--workers", 3), "workers must be between 1 and the cores"
    )
    assert_one_line_error(sim(profile, *base, "--cores", 0), "--cores must be >= 1")


def test_frontend_costs_goodput_under_overload(profile):
    overload = "poisson:rate=300,duration_s=5,slo_ms=300"
    args = ("--policy", "slo", "--workload", overload, "--json", "--deterministic")
    (free,) = ok_json(sim(profile, *args))
    (busy,) = ok_json(sim(profile, *args, "--frontend", "request=0.8ms,result=0.5ms"))
    assert busy["requests"] == free["requests"]
    assert busy["goodput"] < 0.95 * free["goodput"]


def test_frontend_with_a_sweep(profile):
    args = ("--policy", "single", "--workload", SHORT, "--sweep", "--json")
    (free,) = ok_json(sim(profile, *args))
    (busy,) = ok_json(sim(profile, *args, "--frontend", "request=3ms,result=2ms"))
    assert busy["capacity_rps"] < free["capacity_rps"]


def test_bad_frontend_specs(profile):
    base = ("--workload", SHORT)
    assert_one_line_error(
        sim(profile, *base, "--frontend", "result=1ms"), "--frontend", "give request=DURATION"
    )
    assert_one_line_error(
        sim(profile, *base, "--frontend", "request=1ms,encode=1ms"), "unknown key 'encode'"
    )
    assert_one_line_error(
        sim(profile, *base, "--frontend", "request=slow"), "--frontend request: expected a duration"
    )


def test_simulate_prices_each_on_time_request(profile):
    """$ per million on-time: busy core-seconds (pay-per-use) or the span (a node-hour)."""
    per_core, = ok_json(sim(profile, "--policy", "slo", "--workload", WORKLOAD, "--json",
                            "--price", "0.04/core-hour"))  # fmt: skip
    busy = 0.04 / 3600 * per_core["core_seconds"]
    assert per_core["usd_per_million_on_time"] == pytest.approx(busy / per_core["on_time"] * 1e6)
    per_node, = ok_json(sim(profile, "--policy", "slo", "--workload", WORKLOAD, "--json",
                            "--price", "0.085/node-hour"))  # fmt: skip
    held = 0.085 / 3600 * per_node["span_s"]
    assert per_node["usd_per_million_on_time"] == pytest.approx(held / per_node["on_time"] * 1e6)
    table = sim(profile, "--policy", "slo", "--workload", WORKLOAD, "--price", "0.04/core-hour")
    assert "$/M on time" in table.output


def test_simulate_refuses_a_price_without_a_unit(profile):
    assert_one_line_error(sim(profile, "--workload", WORKLOAD, "--price", "3usd"), "AMOUNT/UNIT")
    assert_one_line_error(
        sim(profile, "--workload", WORKLOAD, "--price", "warp9"), "node type of the default"
    )


def test_simulate_prices_by_a_catalogue_node_as_the_catalogue_bills_it(profile):
    """c6i.large rents by the node-hour ($0.085); fargate bills each core ($0.04937/h)."""
    by_name, = ok_json(sim(profile, "--policy", "slo", "--workload", WORKLOAD, "--json",
                           "--price", "c6i.large"))  # fmt: skip
    held = 0.085 / 3600 * by_name["span_s"]
    assert by_name["usd_per_million_on_time"] == pytest.approx(held / by_name["on_time"] * 1e6)
    assert by_name["price"] == "0.085/node-hour"
    serverless, = ok_json(sim(profile, "--policy", "slo", "--workload", WORKLOAD, "--json",
                              "--price", "fargate"))  # fmt: skip
    assert serverless["price"] == "0.04937/core-hour"
