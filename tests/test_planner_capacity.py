"""Capacity of one replica: bisection against the queueing model, monotonicity, the tail."""

from __future__ import annotations

import numpy as np
import pytest

from qosbatch.core.errors import UserError
from qosbatch.core.requests import REJECTED
from qosbatch.planner.capacity import Curve, DeterministicKappa, default_queue_capacity
from qosbatch.planner.targets import Target, tail_factor
from qosbatch.policies.registry import parse_policy
from qosbatch.queueing import KappaTable, ServiceTime, max_rate, solve
from qosbatch.sim.kernel import Deployment, simulate
from qosbatch.testing import EXAMPLE_MODEL, poisson_trace, synthetic_table

TABLE = synthetic_table(max_batch=32, max_cores=4, cv=0.03)


def curve(b, cores=2, percentile=None, n=None):
    return Curve(TABLE.service_s[cores], TABLE.cv[cores], 1, b, percentile, n)


def test_vectorised_kappa_table_equals_the_queueing_packages():
    means = TABLE.service_s[2]
    fast = DeterministicKappa(17.0, means, 64, 16)
    slow = KappaTable(17.0, ServiceTime(lambda k: means[k]), 64, 16)
    np.testing.assert_allclose(fast.kappa, slow.kappa, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(fast.kappa_sf, slow.kappa_sf, atol=1e-12)


@pytest.mark.parametrize(
    ("b", "cores", "slo_s"), [(1, 1, 0.1), (4, 2, 0.2), (16, 2, 0.6), (8, 4, 0.3)]
)
def test_mean_capacity_matches_the_queueing_models_max_rate(b, cores, slo_s):
    c = curve(b, cores)
    exact = c.max_rate(slo_s, rel_tol=1e-4)
    ref = max_rate(1, b, c.capacity, ServiceTime(lambda k: TABLE.s(k, cores)), slo_s)
    assert exact == pytest.approx(ref, rel=2e-3)
    # At the capacity the model meets the target; 1% above it, it does not.
    service = ServiceTime(lambda k: TABLE.s(k, cores))
    at = solve(exact, 1, b, c.capacity, service)
    above = solve(exact * 1.01, 1, b, c.capacity, service)
    assert at.mean_latency <= slo_s and at.blocking_probability <= c.eps
    assert above.mean_latency > slo_s or above.blocking_probability > c.eps


def test_fast_capacity_is_safe_and_close():
    for b in (1, 4, 16):
        thresholds = [0.15, 0.25, 0.4, 0.8]
        fast = curve(b).max_rates(thresholds)
        exact = [curve(b).max_rate(t, rel_tol=1e-4) for t in thresholds]
        for f, e in zip(fast, exact, strict=True):
            assert f <= e * (1 + 1e-9)
            assert f >= 0.97 * e


def test_capacity_grows_with_the_slo_and_with_a_faster_node():
    for b in (1, 8):
        for pct in (None, 99.0):
            c = curve(b, percentile=pct)
            caps = c.max_rates([0.1, 0.15, 0.2, 0.3, 0.5, 1.0])
            assert caps == sorted(caps)
            # A node twice as fast is the same queue with halved times: target / f, rate * 1/f.
            slower = c.max_rate(0.3) / 1.0
            faster = c.max_rate(0.3 / 0.5) / 0.5
            assert faster >= slower


def test_percentile_capacity_is_below_mean_capacity():
    for b in (1, 4, 16):
        assert curve(b, percentile=99).max_rate(0.4) < curve(b).max_rate(0.4)


def test_a_full_batch_that_misses_the_slo_gives_no_capacity():
    c = curve(16)
    assert c.max_rate(0.9 * c.full_batch_s) == 0.0
    assert curve(1).max_rate(0.5 * TABLE.s(1, 2)) == 0.0  # even one request alone is too slow


def test_tail_factor_is_calibrated_only_between_known_percentiles():
    assert tail_factor(99) > 0
    lo, hi = sorted([tail_factor(95), tail_factor(99)])
    assert lo <= tail_factor(97) <= hi
    with pytest.raises(UserError, match="percentile must be between"):
        Target(0.2, 99.9)
    with pytest.raises(UserError, match="SLO"):
        Target(0.0)


def test_queue_bound_leaves_room_for_every_request_that_could_still_make_it():
    assert default_queue_capacity(16, 0.1, 1.0) == 16 * 10 + 16
    assert default_queue_capacity(1, 0.01, 0.05) == 64  # never below 64
    assert default_queue_capacity(32, 0.1, 10.0) == 256  # never above 256


@pytest.mark.parametrize(("b", "slo_ms"), [(1, 60.0), (4, 150.0), (8, 300.0)])
def test_p99_capacity_holds_in_the_simulator(b, slo_ms):
    """At the planned p99 capacity, the simulated p99 is within the SLO."""
    table = synthetic_table(EXAMPLE_MODEL, max_batch=b, max_cores=2, cv=0.05)
    means = table.service_s[2]
    n = default_queue_capacity(b, means[b], slo_ms / 1e3)
    rate = Curve(means, table.cv[2], 1, b, 99.0, n).max_rate(slo_ms / 1e3)
    assert rate > 0
    trace = poisson_trace(rate, 30_000 / rate, slo_ms, seed=3)
    spec = parse_policy(f"dynamic:max_batch_size={b},max_queue_delay_ms=0")
    rec = simulate(trace, [Deployment("m", table, 2, 1)], spec.factory(), seed=3).records
    latency = np.where(rec.outcome == REJECTED, np.inf, rec.completion_s - rec.arrival_s)
    assert np.percentile(latency, 99) <= slo_ms / 1e3 * 1.02
