import numpy as np
import pytest

from qosbatch.queueing import ServiceTime, max_rate, optimize_ab, solve
from qosbatch.queueing.solver import KappaTable, solve_many, solve_with_table


def linear(k):
    return 0.005 + 0.002 * k


@pytest.mark.parametrize("rho", [0.2, 0.5, 0.9])
def test_md1_wait_is_pollaczek_khinchine(rho):
    s = 0.01
    rate = rho / s
    res = solve(rate, 1, 1, 3000, lambda k: s)
    assert res.mean_wait == pytest.approx(rate * s * s / (2 * (1 - rho)), rel=1e-6)
    assert res.mean_latency == pytest.approx(res.mean_wait + s, rel=1e-9)
    assert res.utilization == pytest.approx(rho, rel=1e-6)


@pytest.mark.parametrize("rho", [0.2, 0.5, 0.9])
def test_mm1_wait_is_pollaczek_khinchine(rho):
    s = 0.01
    res = solve(rho / s, 1, 1, 3000, ServiceTime(lambda k: s, "exponential"))
    assert res.mean_wait == pytest.approx(rho * s / (1 - rho), rel=1e-6)


def test_gamma_with_cv_one_is_exponential():
    g = solve(50, 2, 8, 64, ServiceTime(linear, "gamma", 1.0))
    e = solve(50, 2, 8, 64, ServiceTime(linear, "exponential"))
    assert g.mean_latency == pytest.approx(e.mean_latency, rel=1e-9)


def test_lognormal_with_tiny_spread_is_deterministic():
    ln = solve(80, 1, 8, 64, ServiceTime(linear, "lognormal", 1e-4))
    det = solve(80, 1, 8, 64, linear)
    assert ln.mean_latency == pytest.approx(det.mean_latency, rel=1e-4)


@pytest.mark.parametrize(
    ("rate", "a", "b", "n"), [(50, 1, 8, 32), (300, 3, 16, 40), (900, 2, 4, 8)]
)
def test_flow_balance_and_distributions(rate, a, b, n):
    res = solve(rate, a, b, n, ServiceTime(linear, "lognormal", 0.5))
    assert res.throughput == pytest.approx(rate * (1 - res.blocking_probability), rel=1e-9)
    assert res.queue_length_distribution.sum() == pytest.approx(1)
    assert res.departure_distribution.sum() == pytest.approx(1)
    assert a <= res.mean_batch_size <= b
    assert 0 <= res.utilization <= 1


def test_overload_with_finite_capacity_still_solves_and_blocks():
    # Capacity is b / s(b) = 16 / 0.037 = 432/s; offer 5x that.
    res = solve(2000, 1, 16, 64, linear)
    assert res.blocking_probability > 0.7
    assert res.throughput == pytest.approx(16 / linear(16), rel=0.02)
    assert res.mean_batch_size == pytest.approx(16, rel=1e-3)


def test_waiting_for_a_full_batch_costs_latency_at_low_load():
    eager = solve(10, 1, 16, 64, linear)
    lazy = solve(10, 8, 16, 64, linear)
    assert lazy.mean_wait > eager.mean_wait + 0.3  # ~ 7 arrivals x 0.1 s / 2


def test_memory_is_time_weighted_over_busy_periods():
    res = solve(100, 1, 8, 32, linear, memory=lambda k: 1e6 * k)
    assert 0 < res.mean_memory < 8e6 * res.utilization + 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 0}, "rate must be a number > 0"),
        ({"rate": -5}, "rate must be a number > 0"),
        ({"a": 0}, "a must be an integer >= 1"),
        ({"a": 5, "b": 4}, "b must be >= a"),
        ({"b": 20, "N": 10}, r"N \(capacity\) must be >= b"),
        ({"a": 1.5}, "a must be an integer"),
        ({"service_time": lambda k: 0.0}, "service_time must be positive"),
        ({"service_time": lambda k: -1.0}, "service_time must be positive"),
        ({"service_time": 3}, "service_time must be a callable"),
    ],
)
def test_invalid_arguments_name_the_argument(kwargs, message):
    args = {"rate": 10.0, "a": 1, "b": 4, "N": 16, "service_time": linear} | kwargs
    with pytest.raises(ValueError, match=message):
        solve(**args)


def test_many_values_of_a_agree_with_one_at_a_time():
    table = KappaTable(300.0, ServiceTime(linear, "lognormal", 0.4), 96, 32)
    for b in (6, 32):
        for res in solve_many(table, list(range(1, b + 1)), b):
            one = solve_with_table(table, res.a, b)
            assert res.mean_latency == pytest.approx(one.mean_latency, rel=1e-8)
            assert res.blocking_probability == pytest.approx(one.blocking_probability, abs=1e-10)
            np.testing.assert_allclose(
                res.queue_length_distribution, one.queue_length_distribution, atol=1e-10
            )


def test_optimizer_meets_its_bounds_and_beats_the_extremes():
    choice = optimize_ab(300, linear, 128, 32, latency_bound_s=0.2, eps=1e-3)
    assert choice.feasible
    assert choice.considered == 32 * 33 // 2
    res = choice.result
    assert res.mean_latency <= 0.2 and res.blocking_probability <= 1e-3
    for a, b in ((1, 1), (32, 32), (1, 32)):
        other = solve(300, a, b, 128, linear)
        if other.blocking_probability <= 1e-3:
            assert res.mean_latency <= other.mean_latency + 1e-12


def test_optimizer_trades_memory_when_asked():
    memory = lambda k: 50e6 * k  # noqa: E731
    fast = optimize_ab(200, linear, 128, 32, memory=memory)
    lean = optimize_ab(200, linear, 128, 32, omega=1e-8, memory=memory)
    assert lean.result.mean_memory < fast.result.mean_memory
    assert lean.result.mean_latency >= fast.result.mean_latency


def test_optimizer_reports_infeasible_with_the_best_it_found():
    choice = optimize_ab(100, linear, 64, 8, latency_bound_s=0.001)  # below any service time
    assert not choice.feasible
    assert choice.result.mean_latency > 0.001


def test_max_rate_is_monotone_in_the_target_and_sits_on_the_boundary():
    rates = [max_rate(1, 16, 128, linear, target) for target in (0.02, 0.05, 0.1, 0.3)]
    assert rates == sorted(rates) and rates[0] > 0
    top = rates[2]
    assert solve(top, 1, 16, 128, linear).mean_latency <= 0.1
    assert solve(top * 1.01, 1, 16, 128, linear).mean_latency > 0.1 or (
        solve(top * 1.01, 1, 16, 128, linear).blocking_probability > 1e-3
    )


def test_max_rate_is_zero_when_the_target_is_below_one_batch():
    assert max_rate(1, 4, 32, linear, 0.001) == 0.0
