"""queue-optimal: the (a, b) rule, its guards, re-planning; the queueing model vs the simulator."""

import numpy as np
import pytest

from qosbatch.core.errors import UserError
from qosbatch.latency import AmdahlModel
from qosbatch.metrics import summarize
from qosbatch.policies.base import Dispatch, Reject, Wait
from qosbatch.policies.queue_optimal import QueueOptimalPolicy
from qosbatch.policies.registry import parse_policy
from qosbatch.queueing import ServiceTime, solve
from qosbatch.sim.bulk_queue import simulate_bulk_queue
from qosbatch.sim.kernel import Deployment, simulate
from qosbatch.testing import make_queue, make_request, synthetic_table
from qosbatch.workloads import parse_workload

# s(k, 1) = 10 ms + 2 ms * k: a fixed cost per batch that batching amortizes.
SETUP_HEAVY = AmdahlModel(alpha=0.0, beta=0.0, gamma=0.002, delta=0.010)


def table(max_batch=32):
    return synthetic_table(SETUP_HEAVY, max_batch=max_batch, max_cores=1)


def test_pinned_rule_waits_for_a_then_takes_up_to_b():
    policy = QueueOptimalPolicy(a=3, b=4)
    two = [make_request(i, arrival_s=0.001 * i, slo_ms=1000) for i in range(2)]
    decision = policy.decide(make_queue(two, 0.002, (1,), latency=table()))
    # Fewer than a: hold them, until the last moment the head could still make it alone.
    assert len(decision) == 1 and isinstance(decision[0], Wait)
    assert decision[0].until_s == pytest.approx(1.0 - SETUP_HEAVY.predict_s(2, 1))
    five = [make_request(i, arrival_s=0.001 * i, slo_ms=1000) for i in range(5)]
    decision = policy.decide(make_queue(five, 0.005, (1,), latency=table()))
    assert decision == [Dispatch([0, 1, 2, 3], 0, 1)]


def test_deadline_guard_sends_a_partial_batch_rather_than_miss():
    policy = QueueOptimalPolicy(a=8, b=8)
    # s(2, 1) = 14 ms; 15 ms of budget left at now = 5 ms, so the latest start is 6 ms.
    reqs = [make_request(0, 0.0, slo_ms=20), make_request(1, 0.001, slo_ms=30)]
    assert policy.decide(make_queue(reqs, 0.005, (1,), latency=table())) == [
        Wait(pytest.approx(0.020 - 0.014))
    ]
    assert policy.decide(make_queue(reqs, 0.0061, (1,), latency=table())) == [
        Dispatch([0, 1], 0, 1)
    ]


def test_rejects_beyond_capacity_with_a_reason():
    policy = QueueOptimalPolicy(a=1, b=2, capacity=3)
    reqs = [make_request(i, arrival_s=0.001 * i, slo_ms=1000) for i in range(5)]
    decision = policy.decide(make_queue(reqs, 0.005, (1,), latency=table(), busy=(0,)))
    assert len(decision) == 1 and isinstance(decision[0], Reject)
    assert list(decision[0].requests) == [3, 4]  # the newest beyond N
    assert "queue full" in decision[0].reason


@pytest.mark.parametrize(
    "spec, message",
    [
        ("queue-optimal:a=2", "both a and b"),
        ("queue-optimal:a=4,b=2", "a <= b"),
        ("queue-optimal:a=1,b=8,capacity=4", "capacity"),
        ("queue-optimal:eps=2", "eps"),
        ("queue-optimal:omega=3", "memory_mb > 0"),
        ("queue-optimal:omega=-1,memory_mb=2", "omega >= 0"),
    ],
)
def test_bad_knobs_are_user_errors(spec, message):
    with pytest.raises(UserError, match=message):
        parse_policy(spec)


def run_steps(cycles, **knobs):
    """Rate steps 20 <-> 150 req/s, 20 s each, ``cycles`` times; the policy and its records."""
    rates = "/".join(["20/150"] * cycles)
    at = "/".join(str(20 * i) for i in range(2 * cycles))
    text = f"step:rates={rates},at_s={at},duration_s={40 * cycles},slo_ms=2000"
    trace = parse_workload(text).generate(np.random.default_rng(0), "m")
    policies = []

    def factory(rng):
        policies.append(QueueOptimalPolicy(max_batch_size=32, capacity=64, **knobs))
        return policies[-1]

    result = simulate(trace, [Deployment("m", table(), 1, 1)], factory, seed=0)
    assert summarize(result.records).requests == len(trace)
    return policies[0], result.records


def test_replans_when_the_rate_moves_and_reuses_plans():
    """Batches grow with the load; a level seen before re-uses its plan (no new solve)."""
    once, rec = run_steps(1)
    low = (rec.arrival_s > 10) & (rec.arrival_s < 20)
    high = (rec.arrival_s > 30) & (rec.arrival_s < 40)
    assert rec.batch_size[high].mean() > 2 * rec.batch_size[low].mean()
    assert once.replans >= 2
    thrice, _ = run_steps(3)
    assert thrice.replans <= once.replans + 4  # noise at the edges of buckets, no more


@pytest.mark.parametrize("deterministic", [True, False])
@pytest.mark.parametrize("a, b", [(1, 8), (4, 8)])
def test_model_mean_latency_matches_the_simulator(deterministic, a, b):
    """Moderate load, where 60k requests pin the simulated mean to about 1%."""
    lat = synthetic_table(SETUP_HEAVY, max_batch=b, max_cores=1, cv=0.0 if deterministic else 0.3)
    rate = 0.6 * b / lat.s(b, 1)
    family = "deterministic" if deterministic else "lognormal"
    model = solve(rate, a, b, 64, ServiceTime(lambda k: lat.s(k, 1), family, 0.3))
    sim = simulate_bulk_queue(lat, 1, a, b, 64, rate, 60_000, seed=1, deterministic=deterministic)
    assert sim.mean_latency_s == pytest.approx(model.mean_latency, rel=0.03)
    assert sim.blocking == pytest.approx(model.blocking_probability, abs=0.01)


def test_omega_plans_smaller_batches_that_hold_less_memory():
    """BatOpt's trade-off in the policy: weighing memory, the high-load plan's b shrinks."""
    plain, rec = run_steps(1)
    weighed, rec_w = run_steps(1, omega=50.0, memory_mb=100.0)
    high = (rec.arrival_s > 30) & (rec.arrival_s < 40)
    high_w = (rec_w.arrival_s > 30) & (rec_w.arrival_s < 40)
    assert rec_w.batch_size[high_w].mean() < rec.batch_size[high].mean()
    assert max(b for _, b in weighed._plans.values()) < max(b for _, b in plain._plans.values())
