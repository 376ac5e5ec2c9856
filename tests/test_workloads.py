"""Workload specs, arrival processes, SLO generators and the trace CSV."""

from __future__ import annotations

import numpy as np
import pytest

from qosbatch.core.errors import UserError
from qosbatch.workloads import Trace, parse_workload, read_trace, write_trace
from qosbatch.workloads.slos import MIN_BUDGET_MS


def draw(text, seed=0, model="m"):
    return parse_workload(text).generate(np.random.default_rng(seed), model)


def mean_rate(trace, duration_s):
    return len(trace) / duration_s


# ---- arrival processes -------------------------------------------------------------


def test_poisson_rate_and_exponential_gaps():
    spec = parse_workload("poisson:rate=200,duration_s=50,slo_ms=100")
    assert (spec.kind, spec.params, spec.slo, spec.slo_params) == (
        "poisson",
        {"rate": 200.0, "duration_s": 50.0},
        "fixed",
        {"slo_ms": 100.0},
    )
    assert spec.mean_rate == 200.0
    trace = spec.generate(np.random.default_rng(0), "m")
    assert mean_rate(trace, 50) == pytest.approx(200, rel=0.03)
    assert trace.time_s.min() >= 0 and trace.time_s.max() < 50
    assert np.all(np.diff(trace.time_s) >= 0)
    gaps = np.diff(trace.time_s)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)  # exponential: cv 1
    assert trace.models == ("m",) and np.all(trace.slo_ms == 100.0)


def test_poisson_by_count():
    trace = draw("poisson:rate=100,requests=500,slo_ms=50")
    assert len(trace) == 500
    assert mean_rate(trace, trace.duration_s) == pytest.approx(100, rel=0.15)


def test_mmpp_mean_rate_and_burstiness():
    spec = parse_workload("mmpp:rates=50/400,switch_s=5/1,duration_s=6000,slo_ms=100")
    assert spec.params["rates"] == [50.0, 400.0] and spec.params["switch_s"] == [5.0, 1.0]
    assert spec.mean_rate == pytest.approx((50 * 5 + 400 * 1) / 6)  # 108.3
    trace = spec.generate(np.random.default_rng(1), "m")
    assert mean_rate(trace, 6000) == pytest.approx(spec.mean_rate, rel=0.08)
    counts = np.bincount(trace.time_s.astype(int), minlength=6000)
    assert counts.var() / counts.mean() > 5  # far burstier than Poisson (index 1)


def test_diurnal_mean_rate_and_shape():
    spec = parse_workload("diurnal:rate=100,amplitude=0.5,period_s=10,duration_s=200,slo_ms=80")
    trace = spec.generate(np.random.default_rng(2), "m")
    assert mean_rate(trace, 200) == pytest.approx(100, rel=0.03)
    phase = trace.time_s % 10
    rising, falling = np.count_nonzero(phase < 5), np.count_nonzero(phase >= 5)
    # integral of 1 + 0.5 sin over the two half periods: 5 + 10/(2 pi) vs 5 - 10/(2 pi)
    assert rising / falling == pytest.approx((5 + 5 / np.pi) / (5 - 5 / np.pi), rel=0.06)
    # amplitude defaults to 0.5; amplitude 0 is a flat Poisson process
    flat = draw("diurnal:rate=100,amplitude=0,period_s=10,duration_s=200,slo_ms=80", 2)
    phase = flat.time_s % 10
    assert np.count_nonzero(phase < 5) / np.count_nonzero(phase >= 5) == pytest.approx(1, rel=0.06)


def test_step_rates_per_segment():
    spec = parse_workload("step:rates=50/200/50,at_s=0/20/40,duration_s=60,slo_ms=100")
    assert spec.mean_rate == pytest.approx(100)
    trace = spec.generate(np.random.default_rng(3), "m")
    seg = np.searchsorted([20, 40], trace.time_s, side="right")
    counts = np.bincount(seg, minlength=3)
    assert counts / 20 == pytest.approx([50, 200, 50], rel=0.12)


def test_load_factor_scales_the_rate():
    spec = parse_workload("poisson:rate=100,duration_s=40,slo_ms=100")
    double = spec.scaled(2.0)
    assert double.mean_rate == 200.0
    assert mean_rate(double.generate(np.random.default_rng(0), "m"), 40) == pytest.approx(
        200, rel=0.05
    )
    with pytest.raises(UserError, match="load factor must be > 0"):
        spec.scaled(0)


def test_model_mix():
    trace = draw("poisson:rate=1000,duration_s=5,slo_ms=100,model=a/b,mix=0.7/0.3")
    assert trace.models == ("a", "b")
    assert np.mean(trace.model == 0) == pytest.approx(0.7, abs=0.03)
    even = draw("poisson:rate=1000,duration_s=5,slo_ms=100,model=a/b")
    assert np.mean(even.model == 0) == pytest.approx(0.5, abs=0.03)
    with pytest.raises(UserError, match="does not name its model"):
        parse_workload("poisson:rate=10,duration_s=1,slo_ms=100").generate(np.random.default_rng(0))


def test_a_seed_determines_the_trace():
    text = "mmpp:rates=10/100,switch_s=2/1,duration_s=30,slo=uniform,lo_ms=50,hi_ms=150"
    a, b, c = draw(text, 5), draw(text, 5), draw(text, 6)
    assert np.array_equal(a.time_s, b.time_s) and np.array_equal(a.slo_ms, b.slo_ms)
    assert len(a) != len(c) or not np.array_equal(a.time_s, c.time_s)


# ---- per-request SLOs --------------------------------------------------------------


def test_fixed_slo():
    trace = draw("poisson:rate=100,duration_s=5,slo=fixed,slo_ms=75")
    assert np.all(trace.slo_ms == 75.0)
    assert trace.deadline_s == pytest.approx(trace.time_s + 0.075)


def test_uniform_slo():
    spec = parse_workload("poisson:rate=500,duration_s=10,slo=uniform,lo_ms=50,hi_ms=150")
    assert spec.slo == "uniform" and spec.slo_params == {"lo_ms": 50.0, "hi_ms": 150.0}
    slo = spec.generate(np.random.default_rng(0), "m").slo_ms
    assert slo.min() >= 50 and slo.max() <= 150
    assert slo.mean() == pytest.approx(100, rel=0.02)
    assert slo.std() == pytest.approx(100 / np.sqrt(12), rel=0.05)


@pytest.mark.parametrize(
    "text",
    [
        "poisson:rate=500,duration_s=10,slo=netdelay,base_ms=200,delay_ms=30,delay_sigma=0.5",
        "poisson:rate=500,duration_s=10,slo=netdelay:base_ms=200,delay_ms=30,delay_sigma=0.5",
        "poisson:rate=500,duration_s=10,base_ms=200,delay_ms=30",  # kind from its keys
    ],
)
def test_netdelay_slo(text):
    spec = parse_workload(text)
    assert spec.slo == "netdelay"
    assert spec.slo_params == {"base_ms": 200.0, "delay_ms": 30.0, "delay_sigma": 0.5}
    slo = spec.generate(np.random.default_rng(0), "m").slo_ms
    assert slo.max() < 200 and slo.min() > 0
    assert np.median(slo) == pytest.approx(200 - 30, rel=0.01)  # the delay's median is 30


def test_netdelay_that_eats_the_whole_budget_leaves_a_tiny_positive_one():
    slo = draw("poisson:rate=500,duration_s=2,slo=netdelay,base_ms=20,delay_ms=30").slo_ms
    assert np.any(slo == MIN_BUDGET_MS) and np.all(slo > 0)


# ---- trace replay as a spec --------------------------------------------------------


def test_trace_spec_replays_the_file(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("time_s,model,slo_ms\n0.5,a,100\n1.0,b,50\n2.0,a,80\n")
    spec = parse_workload(f"trace:path={path}")
    assert spec.kind == "trace" and spec.slo is None and spec.mean_rate is None
    trace = spec.generate(np.random.default_rng(0))
    assert trace.time_s.tolist() == [0.5, 1.0, 2.0]
    assert trace.models == ("a", "b") and trace.model.tolist() == [0, 1, 0]
    assert trace.slo_ms.tolist() == [100, 50, 80]
    faster = spec.scaled(2).generate(np.random.default_rng(0))
    assert faster.time_s.tolist() == [0.25, 0.5, 1.0]
    override = parse_workload(f"trace:path={path},slo_ms=30").generate(np.random.default_rng(0))
    assert override.slo_ms.tolist() == [30, 30, 30]


def test_trace_spec_with_a_model_keeps_the_files_budgets(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("time_s,model,slo_ms,priority\n0.5,a,100,1\n1.0,a,50,0\n")
    trace = parse_workload(f"trace:path={path},model=b").generate(np.random.default_rng(0))
    assert trace.models == ("b",)
    assert trace.slo_ms.tolist() == [100, 50]
    assert trace.priority.tolist() == [1, 0]
    fixed = parse_workload(f"trace:path={path},model=b,slo_ms=20").generate(
        np.random.default_rng(0)
    )
    assert fixed.slo_ms.tolist() == [20, 20]


# ---- spec errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("zipf:rate=10", ["unknown workload kind 'zipf'", "poisson", "mmpp"]),
        ("poisson:rate=10,duration_s=5,slo_ms=100,burst=3", ["unknown key 'burst'"]),
        ("poisson:rate=fast,duration_s=5,slo_ms=100", ["rate must be a number", "'fast'"]),
        ("poisson:rate=10,duration_s=5,slo_ms=inf", ["slo_ms must be a number"]),
        ("poisson:rate=10,requests=0,slo_ms=100", ["requests must be", "'0'"]),
        ("poisson:rate=10,slo_ms=100", ["missing duration_s (or requests)"]),
        ("poisson:duration_s=5,slo_ms=100", ["missing rate"]),
        ("poisson:rate=10,duration_s=5", ["no latency budget", "slo_ms"]),
        ("poisson:rate=10,duration_s=5,slo_ms", ["expected key=value"]),
        ("poisson:rate=10,duration_s=5,slo_ms=1,slo_ms=2", ["'slo_ms' given twice"]),
        ("poisson:rate=-1,duration_s=5,slo_ms=100", ["rate must be > 0"]),
        ("poisson:rate=1,duration_s=0,slo_ms=100", ["duration_s must be > 0"]),
        ("poisson:rate=1,duration_s=5,slo_ms=0", ["slo_ms must be > 0"]),
        ("poisson:rate=1,duration_s=5,slo=gauss,slo_ms=5", ["unknown slo 'gauss'"]),
        ("poisson:rate=1,duration_s=5,slo_ms=5,lo_ms=1,hi_ms=2", ["fixed and uniform mixed"]),
        ("poisson:rate=1,duration_s=5,slo=uniform,lo_ms=1", ["slo=uniform needs hi_ms"]),
        ("poisson:rate=1,duration_s=5,slo=uniform,lo_ms=9,hi_ms=2", ["0 < lo_ms <= hi_ms"]),
        ("poisson:rate=1,duration_s=5,slo=fixed,base_ms=2", ["slo=fixed does not take"]),
        ("poisson:rate=1,duration_s=5,slo=netdelay,delay_ms=2", ["netdelay needs base_ms"]),
        ("mmpp:rates=1/2,switch_s=1,duration_s=5,slo_ms=9", ["switch_s needs one value per rate"]),
        ("mmpp:rates=1/x,switch_s=1/1,duration_s=5,slo_ms=9", ["rates must be a list"]),
        ("mmpp:rates=0/0,switch_s=1/1,duration_s=5,slo_ms=9", ["not all 0"]),
        ("mmpp:rates=1/2,switch_s=0/1,duration_s=5,slo_ms=9", ["switch_s", "> 0"]),
        ("diurnal:rate=1,amplitude=2,period_s=1,duration_s=5,slo_ms=9", ["amplitude", "[0, 1]"]),
        ("diurnal:rate=1,duration_s=5,slo_ms=9", ["missing period_s"]),
        ("step:rates=1/2,at_s=5/10,duration_s=20,slo_ms=9", ["at_s must start at 0"]),
        ("step:rates=1/2,at_s=0/0,duration_s=20,slo_ms=9", ["at_s must start at 0 and increase"]),
        ("poisson:rate=1,duration_s=5,slo_ms=9,model=a/b,mix=1", ["one weight per model"]),
        ("trace:slo_ms=9", ["missing path"]),
    ],
)
def test_bad_specs_name_the_key(text, fragments):
    with pytest.raises(UserError) as err:
        parse_workload(text)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_a_spec_that_draws_nothing_or_points_at_no_file():
    with pytest.raises(UserError, match="produced no requests"):
        draw("poisson:rate=0.001,duration_s=0.001,slo_ms=100")
    with pytest.raises(UserError, match="trace not found"):
        parse_workload("trace:path=/nonexistent/t.csv").generate(np.random.default_rng(0))


# ---- the trace CSV -----------------------------------------------------------------


def test_trace_csv_round_trip(tmp_path):
    trace = draw("poisson:rate=300,duration_s=5,slo=uniform,lo_ms=20,hi_ms=200,model=a/b")
    path = write_trace(trace, tmp_path / "sub" / "t.csv")
    assert path.read_text().splitlines()[0] == "time_s,model,slo_ms"
    back = read_trace(path)
    assert len(back) == len(trace)
    assert back.time_s == pytest.approx(trace.time_s, abs=1e-9)
    assert np.all(np.diff(back.time_s) >= 0)
    names = np.array(trace.models)[trace.model]
    assert (np.array(back.models)[back.model] == names).all()
    assert back.slo_ms == pytest.approx(trace.slo_ms, rel=1e-9)
    assert back.priority is None


def test_trace_csv_round_trip_with_priorities_and_extra_columns(tmp_path):
    trace = Trace(
        np.array([0.0, 0.0, 1.5]),
        np.array([0, 1, 0]),
        ("x", "y"),
        np.array([10.0, 20.0, 30.5]),
        np.array([0, 2, 1]),
    )
    back = read_trace(write_trace(trace, tmp_path / "p.csv"))
    assert back.priority.tolist() == [0, 2, 1]
    assert back.slo_ms.tolist() == [10.0, 20.0, 30.5]
    extra = tmp_path / "extra.csv"
    extra.write_text("id,slo_ms,time_s,model,note\n1,100,0.1,m,hi\n\n2,50,0.2,m,\n")
    loaded = read_trace(extra)  # columns in any order, extra ones ignored, blank lines skipped
    assert loaded.time_s.tolist() == [0.1, 0.2] and loaded.slo_ms.tolist() == [100, 50]


def test_empty_trace_writes_a_header_only(tmp_path):
    empty = Trace.of([], 100.0)
    path = write_trace(empty, tmp_path / "e.csv")
    assert path.read_text() == "time_s,model,slo_ms\n"
    with pytest.raises(UserError, match="has no requests"):
        read_trace(path)


GOOD = "time_s,model,slo_ms\n0.1,m,100\n"


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        (GOOD + "-0.5,m,100\n", [":3:", "time_s must be >= 0", "-0.5"]),
        (GOOD + "0.3,m,100\n0.2,m,100\n", [":4:", "goes back in time"]),
        (GOOD + "0.3,m,fast\n", [":3:", "slo_ms 'fast' is not a number"]),
        (GOOD + "abc,m,100\n", [":3:", "time_s 'abc' is not a number"]),
        (GOOD + "0.3,m,nan\n", [":3:", "slo_ms must be finite"]),
        (GOOD + "0.3,m,0\n", [":3:", "slo_ms must be > 0"]),
        (GOOD + "0.3,m\n", [":3:", "expected 3 columns, got 2"]),
        (GOOD + "0.3, ,100\n", [":3:", "model is empty"]),
        ("time_s,slo_ms\n0.1,100\n", [":1:", "header lacks column(s) model"]),
        ("time_s,model,slo_ms,priority\n0.1,m,100,high\n", [":2:", "priority must be"]),
        ("", ["is empty", "time_s,model,slo_ms"]),
        ("time_s,model,slo_ms\n", ["has no requests"]),
    ],
)
def test_malformed_trace_rows_name_the_line(tmp_path, body, fragments):
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(UserError) as err:
        read_trace(path)
    for fragment in fragments:
        assert fragment in str(err.value)
    if any(f.startswith(":") for f in fragments):
        assert str(path) in str(err.value)


def test_unknown_models_in_a_trace(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(GOOD + "0.2,resnet18,100\n")
    assert read_trace(path).models == ("m", "resnet18")
    with pytest.raises(UserError, match=r":3: unknown model 'resnet18' \(known: m\)"):
        read_trace(path, known_models={"m"})


def test_unreadable_traces(tmp_path):
    with pytest.raises(UserError, match="trace not found"):
        read_trace(tmp_path / "nope.csv")
    with pytest.raises(UserError, match="is a directory"):
        read_trace(tmp_path)
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"\xff\xfe\x00\x01garbage")
    with pytest.raises(UserError, match="not a text"):
        read_trace(binary)


def test_a_jsonl_trace_with_a_bad_line_names_it(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"time_s": 0.5, "model": "m", "slo_ms": 100}\n{"time_s": 0.1, "model": "m"}\n')
    with pytest.raises(UserError, match=r"r.jsonl:2: record lacks slo_ms"):
        read_trace(path)
    path.write_text('{"time_s": 0.5, "model": "m", "slo_ms": 100}\nnot json\n')
    with pytest.raises(UserError, match=r"r.jsonl:2: not a JSON object"):
        read_trace(path)
    path.write_text(
        '{"time_s": 0.5, "model": "m", "slo_ms": -1}\n{"time_s": 0.1, "model": "m", "slo_ms": 5}\n'
    )
    with pytest.raises(UserError, match=r"r.jsonl:1: slo_ms must be > 0"):
        read_trace(path)


def test_until_keeps_each_requests_model_budget_and_priority():
    t = Trace(
        np.array([0.0, 0.5, 1.0, 1.5]), np.array([0, 1, 0, 1]), ("a", "b"),
        np.array([10.0, 20.0, 30.0, 40.0]), np.array([0, 2, 1, 0]),
    )  # fmt: skip
    head = t.until(1.0)
    assert head.time_s.tolist() == [0.0, 0.5] and head.model.tolist() == [0, 1]
    assert head.slo_ms.tolist() == [10.0, 20.0] and head.priority.tolist() == [0, 2]
    assert head.models == ("a", "b") and t.until(0.0).priority.tolist() == []
