"""The side-by-side harness's logic (benchmarks/peers/harness.py) with fake servers.

A fake "system" has a true capacity per knob setting: a run at or below it puts
every request on time, above it only 90%. Tuning must find the best setting and
its capacity within the coarse tolerance. The rounds' statistics (rounds.py), the
budget and the trace store are checked on numbers whose answer is known.
"""

import contextlib
import math

import numpy as np
import pytest

from benchmarks.peers.harness import SearchSettings, evaluate
from qosbatch.metrics import Metrics
from qosbatch.sim.capacity import bisect_load, mean_rate
from qosbatch.workloads import parse_workload

SPEC = parse_workload("poisson:rate=100,duration_s=20,slo_ms=50")


def traces(factor):
    return SPEC.scaled(factor).generate(np.random.default_rng(0), "m")


def fake_metrics(n, attainment):
    on_time = round(n * attainment)
    return Metrics(
        requests=n, on_time=on_time, late=n - on_time, rejected=0, attainment=on_time / n,
        goodput=0.0, throughput=0.0, p50_ms=10.0, p95_ms=20.0, p99_ms=30.0,
        mean_batch=math.nan, core_seconds=0.0, utility=0.0, span_s=20.0,
    )  # fmt: skip


class FakeSystem:
    """Capacities per setting; records every server start and every run."""

    def __init__(self, capacity, broken=()):
        self.capacity = capacity
        self.broken = broken
        self.starts = []
        self.runs = []

    @contextlib.contextmanager
    def serve(self, knobs):
        self.starts.append(knobs["k"])
        if knobs["k"] in self.broken:
            raise RuntimeError(f"setting {knobs['k']} would not start")

        def run(trace):
            rate = mean_rate(trace)
            self.runs.append((knobs["k"], rate))
            return fake_metrics(len(trace), 1.0 if rate <= self.capacity[knobs["k"]] else 0.9)

        yield run


def test_the_best_setting_wins_and_a_setting_failing_where_another_passed_is_not_searched():
    system = FakeSystem({1: 80.0, 2: 260.0, 3: 150.0})
    grid = [{"k": 1}, {"k": 2}, {"k": 3}]
    out = evaluate("fake", grid, system.serve, traces, SearchSettings())
    assert out.error is None
    assert out.chosen.knobs == {"k": 2}
    # Coarse: within the tuning tolerance of the true capacity (factor 2.6 of rate 100).
    assert 2.6 / (1 + SearchSettings().coarse_tol) ** 2 <= out.factor <= 2.6
    assert system.starts == [1, 2, 3]  # each setting served once
    # Setting 3 failed at the load setting 2 had passed: one run, no search of its own.
    assert len(out.tuning[2].points) == 1 and not out.tuning[2].points[0].passed
    assert out.tuning[2].points[0].factor == out.tuning[1].factor


def test_a_setting_that_cannot_be_served_loses_and_says_why():
    system = FakeSystem({1: 120.0, 2: 500.0}, broken={2})
    out = evaluate("fake", [{"k": 1}, {"k": 2}], system.serve, traces, SearchSettings())
    assert out.chosen.knobs == {"k": 1}
    assert "would not start" in out.tuning[1].error
    assert 1.0 / 1.25**2 <= out.factor <= 1.2


def test_a_system_none_of_whose_settings_serve_reports_the_error():
    system = FakeSystem({1: 100.0}, broken={1})
    out = evaluate("fake", [{"k": 1}], system.serve, traces, SearchSettings())
    assert out.chosen is None and out.factor == 0.0
    assert "would not start" in out.error


def test_a_system_that_never_reaches_the_target_has_capacity_zero():
    system = FakeSystem({1: 0.0})
    out = evaluate("fake", [{"k": 1}], system.serve, traces, SearchSettings())
    assert out.factor == 0.0


def test_bisect_load_starts_below_a_known_failure_and_stays_there():
    tried = []

    def passes(f):
        tried.append(f)
        return f <= 1.3

    got = bisect_load(passes, start=1.0, fails_at=1.5, rel_tol=0.02, max_runs=20)
    assert 1.3 / 1.02 <= got <= 1.3
    assert max(tried) < 1.5


def test_bisect_load_without_a_bracket_doubles_and_halves():
    assert bisect_load(lambda f: f <= 5.0, rel_tol=0.01) == pytest.approx(5.0, rel=0.011)
    assert bisect_load(lambda f: f <= 0.2, rel_tol=0.01) == pytest.approx(0.2, rel=0.011)
    assert bisect_load(lambda f: False, max_runs=5) == 0.0


def test_rounds_rotate_so_that_every_system_goes_first_once():
    from benchmarks.peers.rounds import rotations

    assert rotations(["a", "b", "c"], 3) == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]


def test_capacity_is_interpolated_per_repeat_and_censored_at_the_ladder_ends():
    from benchmarks.peers.rounds import capacity, crossing

    # Passes 1.0 and 2.0, fails 3.0 at 0.97: crossing 0.99 at 2 + (1 - 0.99)/(1 - 0.97).
    c = crossing([1.0, 2.0, 3.0], [1.0, 0.995, 0.97], 0.99)
    assert c.censored == "" and c.factor == pytest.approx(2.0 + 0.005 / 0.025)
    assert crossing([1.0, 2.0], [0.9, 0.5], 0.99).censored == "<"
    assert crossing([1.0, 2.0], [1.0, 1.0], 0.99).censored == ">"
    # A load that fails, then one above that passes: the first fall counts.
    assert crossing([1.0, 2.0, 3.0], [1.0, 0.5, 1.0], 0.99).factor < 2.0
    interval, note = capacity([crossing([1.0, 2.0], v, 0.99) for v in ([1, 0], [1, 0.5])])
    assert interval.n == 2 and interval.lo < interval.mean < interval.hi and note == ""
    _, note = capacity([crossing([1.0, 2.0], [1.0, 1.0], 0.99)])
    assert "lower bound" in note


def test_t_interval_matches_the_textbook():
    from benchmarks.peers.rounds import t_interval

    iv = t_interval([1.0, 2.0, 3.0])
    # mean 2, sd 1, n 3: half-width t(0.975, 2) / sqrt(3) = 4.303 / 1.732
    assert iv.mean == 2.0 and iv.hi - iv.mean == pytest.approx(4.3027 / math.sqrt(3), rel=1e-3)
    assert math.isnan(t_interval([5.0]).lo) and t_interval([5.0]).text() == "5.000"


def test_the_budget_grows_from_the_minimum_and_refuses_what_cannot_fit():
    from benchmarks.peers.rounds import fit_budget

    grids = {"qosbatch": 1, "triton": 8}
    small = fit_budget(60, grids, ["a"], 3)
    assert small.repeats >= 3 and small.points >= 3 and small.run_s["a"] >= 60
    assert small.minutes <= 60
    big = fit_budget(300, grids, ["a"], 3)
    assert (big.points, big.run_s["a"], big.repeats) > (small.points, small.run_s["a"], 3)
    with pytest.raises(ValueError, match="needs about"):
        fit_budget(10, grids, ["a", "b"], 3)


def test_a_trace_is_generated_once_and_replayed_byte_for_byte(tmp_path):
    from benchmarks.peers.traces import TraceStore

    store = TraceStore(tmp_path, {"a": "poisson:rate=50,duration_s=4,slo_ms=100"}, "m", seed=3)
    first = store.get("a", 0.5, 1)
    mtime = store.path("a", 0.5, 1).stat().st_mtime_ns
    again = store.get("a", 0.5, 1)
    assert store.path("a", 0.5, 1).stat().st_mtime_ns == mtime  # read back, not redrawn
    assert np.array_equal(first.time_s, again.time_s) and len(first) > 50
    other = store.get("a", 0.5, 2)  # another repeat: another draw
    assert not np.array_equal(first.time_s[:10], other.time_s[:10])
    assert len(store.digests) == 2
    # Nominal load: twice the factor, about twice the requests, from the same seed.
    assert 1.5 < len(store.get("a", 1.0, 1)) / len(first) < 2.5


def test_grids_follow_the_profile_and_triton_gets_its_deadline_knobs():
    from benchmarks.peers.calibrate import GRIDS, Calibration

    # A model whose batches of 8 reach 90% of the limit: s(b) = 10 ms + 5 ms * b.
    cal = Calibration("m", {b: 0.010 + 0.005 * b for b in (1, 2, 4, 8, 16, 32, 64)}, 400.0)
    assert cal.best_batch == 64 and cal.b90 == 16
    small, big = cal.batch_sizes()
    assert (small, big) == (16, 32)  # s(32) = 170 ms fits half the SLO, s(64) = 330 does not
    triton = GRIDS["triton"](cal)
    assert len(triton) == 16
    assert [k["instances"] for k in triton] == [2] * 8 + [1] * 8
    first = triton[0]
    assert first["max_batch_size"] == 32 and first["timeout_margin_ms"] == pytest.approx(170.0)
    assert first["preferred_batch_size"] == [16, 32] and first["max_queue_size"] > 32
    assert {k["max_queue_size"] for k in triton} >= {0}
    dynamic = GRIDS["qosbatch-dynamic"](cal)
    assert dynamic[0] == {"policy": "dynamic:max_batch_size=32,max_queue_delay_ms=8"}
    assert GRIDS["qosbatch"](cal) == [{"policy": "slo"}]


def test_triton_timeout_is_the_budget_less_the_batch_time():
    from benchmarks.peers.triton import Triton

    t = Triton()
    assert t.request_parameters(400.0, {"timeout_margin_ms": 170.0}) == {"timeout": 230_000}
    assert t.request_parameters(400.0) == {"timeout": 400_000}


def test_a_reused_run_keeps_what_was_measured_and_tunes_only_what_it_lacks():
    from benchmarks.peers.__main__ import reuse

    before = {
        "command": "python -m benchmarks.peers --scenarios a,c",
        "tuning": {"a": [{"system": "triton"}]}, "ladders": {"a": [0.8, 0.9, 1.0]},
        "runs": [{"scenario": "c", "factor": 2.0}], "digests": {"a-0.8-0": "x"},
        "overload": [1.5, 2.0, 3.0],
        "budget": {"tune_s": {"a": 20.0}, "run_s": {"a": 60.0}, "repeats": 3, "points": 3},
    }  # fmt: skip
    report = {
        "command": "python -m benchmarks.peers --scenarios b", "tuning": {}, "ladders": {},
        "runs": [], "digests": {}, "overload": [],
        "budget": {"tune_s": {"b": 60.0}, "run_s": {"b": 180.0}, "repeats": 3, "points": 3},
    }  # fmt: skip
    reuse(report, before)
    assert report["tuning"] == before["tuning"] and "b" not in report["tuning"]
    assert report["overload"] == [1.5, 2.0, 3.0]  # (c)'s rows stay in the report
    assert report["budget"]["run_s"] == {"a": 60.0, "b": 180.0}
    assert report["budget"]["tune_s"] == {"a": 20.0, "b": 60.0}
    report["runs"].append({"scenario": "b"})
    assert len(before["runs"]) == 1  # the earlier results are not changed in place
    assert report["command"].endswith("; then python -m benchmarks.peers --scenarios b")
