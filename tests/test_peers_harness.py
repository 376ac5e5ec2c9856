"""The side-by-side harness's logic (benchmarks/peers/harness.py) with fake servers.

A fake "system" has a true capacity per knob setting: a run at or below it puts
every request on time, above it only 90%. The harness must find the best setting,
its capacity within the refining tolerance, and run the overload at 1.5x it.
"""

import contextlib
import math

import numpy as np
import pytest

from benchmarks.peers.harness import SearchSettings, evaluate, first_failure_above
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


def test_the_best_setting_wins_and_its_capacity_is_refined():
    system = FakeSystem({1: 80.0, 2: 260.0, 3: 150.0})
    grid = [{"k": 1}, {"k": 2}, {"k": 3}]
    out = evaluate("fake", grid, system.serve, traces, SearchSettings())
    assert out.error is None
    assert out.chosen.knobs == {"k": 2}
    true = 260.0
    assert true / (1 + SearchSettings().fine_tol) ** 2 <= out.capacity <= true
    # Each setting served once for tuning, the winner once more to refine and overload.
    assert system.starts == [1, 2, 3, 2]
    # Setting 3 failed at the load setting 2 had passed: one run, no search of its own.
    assert len(out.tuning[2].points) == 1 and not out.tuning[2].points[0].passed
    assert out.tuning[2].points[0].factor == out.tuning[1].factor
    assert out.overload is not None
    assert out.overload.factor == pytest.approx(1.5 * out.chosen.factor)
    assert out.overload.metrics.attainment < 0.99
    # The refining search never re-ran a load the coarse one had already seen failing.
    coarse_fail = first_failure_above(out.tuning[1])
    assert coarse_fail < math.inf
    assert all(p.factor < coarse_fail for p in out.chosen.points)


def test_a_setting_that_cannot_be_served_loses_and_says_why():
    system = FakeSystem({1: 120.0, 2: 500.0}, broken={2})
    out = evaluate("fake", [{"k": 1}, {"k": 2}], system.serve, traces, SearchSettings())
    assert out.chosen.knobs == {"k": 1}
    assert "would not start" in out.tuning[1].error
    assert 100.0 <= out.capacity <= 120.0


def test_a_system_none_of_whose_settings_serve_reports_the_error():
    system = FakeSystem({1: 100.0}, broken={1})
    out = evaluate("fake", [{"k": 1}], system.serve, traces, SearchSettings())
    assert out.chosen is None and out.capacity == 0.0
    assert "would not start" in out.error


def test_a_system_that_never_reaches_the_target_has_capacity_zero():
    system = FakeSystem({1: 0.0})
    out = evaluate("fake", [{"k": 1}], system.serve, traces, SearchSettings())
    assert out.capacity == 0.0
    assert out.overload is None  # no capacity: nothing to overload


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
