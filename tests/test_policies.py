"""Each policy on tiny hand-computed scenarios, called directly on a QueueView.

The latency law is chosen so the arithmetic is done by hand in the comments:
``s(b, c) = 0.004 b / c + 0.006`` seconds, so on one core a batch of 1 takes
10 ms, 2 take 14 ms, 3 take 18 ms, 4 take 22 ms and 8 take 38 ms. With no
spread (cv = 0) the slo policy's safe time is ``s * ratio``.
"""

from __future__ import annotations

import pytest

from qosbatch.core.errors import UserError
from qosbatch.latency import AmdahlModel
from qosbatch.metrics import summarize
from qosbatch.policies import (
    CompletedBatch,
    Dispatch,
    PolicyContractError,
    Reject,
    Wait,
    parse_policy,
    parse_policy_list,
)
from qosbatch.policies.aimd import AimdPolicy
from qosbatch.policies.dynamic import DynamicPolicy
from qosbatch.policies.fixed import FixedPolicy
from qosbatch.policies.single import SinglePolicy
from qosbatch.policies.slo import SloPolicy
from qosbatch.sim.check import check_policy
from qosbatch.sim.kernel import Deployment, simulate
from qosbatch.testing import make_queue, make_request, poisson_trace, synthetic_table

# The baselines and ours (queue-optimal has its own tests: it solves a queueing model).
NAMES = ("single", "fixed", "dynamic", "aimd", "slo")
LAW = AmdahlModel(alpha=0.004, beta=0.0, gamma=0.0, delta=0.006)


def table(max_cores=1, max_batch=8):
    return synthetic_table(LAW, max_batch=max_batch, max_cores=max_cores)


def queue(requests, now, workers=(1,), **kw):
    """One-core workers by default, the pool their sum, the hand-computed table."""
    pool = kw.pop("max_cores", sum(workers))
    return make_queue(
        requests, now, worker_cores=workers, max_cores=pool, latency=table(pool), **kw
    )


def done(requests, service_s, late=0, cores=1, worker=0):
    return CompletedBatch("m", worker, cores, list(requests), 0.0, service_s, late)


def test_the_hand_computed_table():
    t = table(2)
    assert [round(t.s(b, 1) * 1e3, 9) for b in (1, 2, 3, 4, 8)] == [10, 14, 18, 22, 38]
    assert t.s(1, 2) == pytest.approx(0.008)


# ---- single ------------------------------------------------------------------------


def test_single_gives_each_idle_worker_the_oldest_request_alone():
    reqs = [make_request(7, 0.000), make_request(3, 0.001), make_request(5, 0.002)]
    q = queue(reqs, 0.002, workers=(1, 1))
    assert SinglePolicy().decide(q) == [Dispatch([7], 0, 1), Dispatch([3], 1, 1)]


def test_single_skips_busy_workers_and_empty_queues():
    reqs = [make_request(0, 0.0), make_request(1, 0.001)]
    assert SinglePolicy().decide(queue(reqs, 0.002, workers=(1, 1), busy=(0,))) == [
        Dispatch([0], 1, 1)
    ]
    assert SinglePolicy().decide(queue(reqs, 0.002, workers=(1, 1), busy=(0, 1))) == []
    assert SinglePolicy().decide(queue([], 0.0)) == []


# ---- fixed -------------------------------------------------------------------------


def test_fixed_waits_for_exactly_batch_size():
    p = FixedPolicy(batch_size=3)
    two = [make_request(0, 0.0), make_request(1, 0.001)]
    assert p.decide(queue(two, 0.002)) == []  # no timeout: wait for the next event
    three = [*two, make_request(2, 0.002)]
    assert p.decide(queue(three, 0.002)) == [Dispatch([0, 1, 2], 0, 1)]
    four = [*three, make_request(3, 0.003)]
    assert p.decide(queue(four, 0.003)) == [Dispatch([0, 1, 2], 0, 1)]


def test_fixed_releases_a_partial_batch_after_its_timeout_or_when_draining():
    p = FixedPolicy(batch_size=3, timeout_ms=10)
    two = [make_request(0, 0.001), make_request(1, 0.002)]
    (wait,) = p.decide(queue(two, 0.004))
    assert isinstance(wait, Wait) and wait.until_s == pytest.approx(0.011)  # oldest + 10 ms
    assert p.decide(queue(two, 0.011)) == [Dispatch([0, 1], 0, 1)]
    assert FixedPolicy(batch_size=3).decide(queue(two, 0.004, draining=True)) == [
        Dispatch([0, 1], 0, 1)
    ]


# ---- dynamic -----------------------------------------------------------------------


def test_dynamic_holds_a_partial_batch_until_the_oldest_waited_max_queue_delay():
    p = DynamicPolicy(max_batch_size=4, max_queue_delay_ms=5)
    two = [make_request(0, 0.0), make_request(1, 0.0)]
    assert p.decide(queue(two, 0.0)) == [Wait(0.005)]
    assert p.decide(queue(two, 0.005)) == [Dispatch([0, 1], 0, 1)]
    later = [make_request(0, 0.001), make_request(1, 0.003)]
    (wait,) = p.decide(queue(later, 0.003))
    assert wait.until_s == pytest.approx(0.006)  # the oldest's arrival + 5 ms, not the newest's


def test_dynamic_dispatches_a_full_batch_at_once_oldest_first():
    p = DynamicPolicy(max_batch_size=4, max_queue_delay_ms=5)
    four = [make_request(i, 0.0) for i in range(4)]
    assert p.decide(queue(four, 0.0)) == [Dispatch([0, 1, 2, 3], 0, 1)]
    # Five waiting, ids not in arrival order: the four that arrived first go.
    five = [make_request(9, 0.000), *(make_request(i, 0.001 * i) for i in range(1, 5))]
    assert p.decide(queue(five, 0.004)) == [Dispatch([9, 1, 2, 3], 0, 1)]


def test_dynamic_does_nothing_while_busy_and_never_waits_when_draining_or_with_zero_delay():
    two = [make_request(0, 0.0), make_request(1, 0.0)]
    p = DynamicPolicy(max_batch_size=4, max_queue_delay_ms=5)
    assert p.decide(queue(two, 0.0, busy=(0,))) == []
    assert p.decide(queue(two, 0.0, draining=True)) == [Dispatch([0, 1], 0, 1)]
    assert DynamicPolicy(4, 0).decide(queue(two, 0.0)) == [Dispatch([0, 1], 0, 1)]


def test_dynamic_uses_the_workers_nominal_cores():
    two = [make_request(0, 0.0), make_request(1, 0.0)]
    q = queue(two, 0.005, workers=(2, 2))
    assert DynamicPolicy(4, 5).decide(q) == [Dispatch([0, 1], 0, 2)]


def test_baselines_never_form_a_batch_larger_than_the_table_allows():
    many = [make_request(i, 0.0) for i in range(12)]
    q = make_queue(many, 0.0, worker_cores=(1,), latency=table(1, max_batch=8))
    (d,) = DynamicPolicy(max_batch_size=32).decide(q)
    assert len(d.requests) == 8
    (d,) = FixedPolicy(batch_size=10).decide(q)
    assert len(d.requests) == 8
    (d,) = AimdPolicy(initial_batch_size=16).decide(q)
    assert len(d.requests) == 8


# ---- aimd --------------------------------------------------------------------------


def test_aimd_grows_by_step_on_full_on_time_batches_and_backs_off_on_a_miss():
    p = AimdPolicy(step=1, backoff=0.5, initial_batch_size=2, max_batch_size=4)
    five = [make_request(i, 0.001 * i) for i in range(5)]
    q = queue(five, 0.005)
    assert p.decide(q) == [Dispatch([0, 1], 0, 1)]
    p.observe(done([0, 1], 0.014))  # a full batch of 2, on time: 2 -> 3
    assert p.decide(q) == [Dispatch([0, 1, 2], 0, 1)]
    p.observe(done([0], 0.010))  # a partial batch says nothing about 4: stays 3
    assert p.batch_size == 3
    p.observe(done([0, 1, 2], 0.018))  # 3 -> 4
    p.observe(done([0, 1, 2, 3], 0.022))  # capped at max_batch_size 4
    assert p.batch_size == 4
    p.observe(done([0, 1, 2, 3], 0.022, late=1))  # a miss: 4 * 0.5 = 2
    assert p.decide(q) == [Dispatch([0, 1], 0, 1)]
    p.observe(done([0, 1], 0.014, late=2))  # 1
    p.observe(done([0], 0.010, late=1))  # never below 1
    assert p.batch_size == 1
    assert p.decide(q) == [Dispatch([0], 0, 1)]


def test_aimd_truncates_a_fractional_size_and_waits_for_nothing():
    p = AimdPolicy(backoff=0.9, initial_batch_size=4)
    p.observe(done([0, 1, 2, 3], 0.022, late=1))  # 3.6 -> batches of 3
    q = queue([make_request(i, 0.0) for i in range(5)], 0.0)
    assert p.decide(q) == [Dispatch([0, 1, 2], 0, 1)]
    assert p.decide(queue([make_request(0, 0.0)], 0.0)) == [Dispatch([0], 0, 1)]


# ---- slo ---------------------------------------------------------------------------


def test_slo_serves_a_lone_feasible_request_at_once():
    # 10 ms alone <= 50 ms budget; at ~1 req/s a larger batch is not worth waiting for.
    q = queue([make_request(0, 0.0, slo_ms=50)], 0.0)
    assert SloPolicy().decide(q) == [Dispatch([0], 0, 1)]


def test_slo_dispatches_earliest_deadlines_first_not_arrival_order():
    reqs = [
        make_request(0, 0.000, slo_ms=100),  # deadline 0.100
        make_request(1, 0.001, slo_ms=30),  # deadline 0.031
        make_request(2, 0.002, slo_ms=60),  # deadline 0.062
    ]
    q = queue(reqs, 0.002)
    assert SloPolicy(max_batch_size=1).decide(q) == [Dispatch([1], 0, 1)]
    # A batch of two EDF heads is done at 0.002 + 14 ms <= 0.031; the last at +10 ms more.
    assert SloPolicy(max_batch_size=2).decide(q) == [Dispatch([1, 2], 0, 1)]


def test_slo_sizes_the_batch_by_the_tightest_deadline_in_it():
    # Four with 30 ms: all four fit (22 ms). Four with 20 ms: three fit (18 ms), and the
    # fourth cannot be saved either way (18 + 10 > 20), so the three go now; the fourth
    # is not shed yet (10 ms alone still fits), only left for the next decision.
    four = [make_request(i, 0.0, slo_ms=30) for i in range(4)]
    assert SloPolicy().decide(queue(four, 0.0)) == [Dispatch([0, 1, 2, 3], 0, 1)]
    tight = [make_request(i, 0.0, slo_ms=20) for i in range(4)]
    assert SloPolicy().decide(queue(tight, 0.0)) == [Dispatch([0, 1, 2], 0, 1)]


def test_slo_rejects_a_hopeless_request_at_once_with_the_numbers():
    reqs = [make_request(0, 0.0, slo_ms=5), make_request(1, 0.0, slo_ms=100)]
    decisions = SloPolicy().decide(queue(reqs, 0.0))
    assert len(decisions) == 2
    reject, dispatch = decisions
    assert isinstance(reject, Reject) and list(reject.requests) == [0]
    assert "deadline" in reject.reason
    assert "10.0 ms alone" in reject.reason and "5.0 ms left" in reject.reason
    assert dispatch == Dispatch([1], 0, 1)


def test_slo_sheds_when_the_worker_frees_up_too_late_even_if_now_would_do():
    # The only worker is busy until now + 10 ms. 15 ms budget: 10 + 10 > 15, shed now.
    # 25 ms budget: 10 + 10 <= 25, keep it waiting.
    reqs = [make_request(0, 0.0, slo_ms=15), make_request(1, 0.0, slo_ms=25)]
    decisions = SloPolicy().decide(queue(reqs, 0.0, busy=(0,)))
    assert len(decisions) == 1 and isinstance(decisions[0], Reject)
    assert list(decisions[0].requests) == [0]
    assert "deadline cannot be met" in decisions[0].reason
    assert SloPolicy().decide(queue(reqs[1:], 0.0, busy=(0,))) == []
    # In serve-late mode nothing is shed.
    assert SloPolicy(shed=False).decide(queue(reqs, 0.0, busy=(0,))) == []


def test_slo_serve_late_mode_still_serves_the_hopeless():
    q = queue([make_request(0, 0.0, slo_ms=5)], 0.0)
    assert SloPolicy(shed=False).decide(q) == [Dispatch([0], 0, 1)]


def test_slo_priority_levels_come_before_deadlines():
    reqs = [make_request(0, 0.0, slo_ms=30), make_request(1, 0.0, slo_ms=90, priority=1)]
    assert SloPolicy(max_batch_size=1).decide(queue(reqs, 0.0)) == [Dispatch([1], 0, 1)]


def test_slo_learns_that_the_node_is_slower_and_becomes_conservative():
    p = SloPolicy()  # correction 0.1 per batch
    four = [make_request(i, 0.0, slo_ms=30) for i in range(4)]
    assert p.decide(queue(four, 0.0)) == [Dispatch([0, 1, 2, 3], 0, 1)]  # 22 ms <= 30
    lone = [make_request(9, 0.0, slo_ms=15)]
    assert p.decide(queue(lone, 0.0)) == [Dispatch([9], 0, 1)]  # 10 ms <= 15
    for _ in range(30):
        p.observe(done([0], 0.020))  # every batch of 1 took 2x its predicted 10 ms
    assert p.ratio == pytest.approx(2 - 0.9**30)  # ~1.96
    # Now a batch of 2 takes ~27 ms, of 3 ~35 ms: only two of the four fit in 30 ms.
    assert p.decide(queue(four, 0.0)) == [Dispatch([0, 1], 0, 1)]
    # And ~19.6 ms alone > 15 ms: the lone request is shed instead of served late.
    (reject,) = p.decide(queue(lone, 0.0))
    assert isinstance(reject, Reject) and list(reject.requests) == [9]
    assert "19.6 ms alone" in reject.reason


def test_slo_one_freak_batch_does_not_make_every_request_look_hopeless():
    # A batch of 1 predicted at 10 ms took 1 s (a cold start, a busy neighbour). Unbounded,
    # the ratio would jump to 10.9 and a 60 ms budget would be shed, and so on forever.
    p = SloPolicy()
    lone = [make_request(9, 0.0, slo_ms=60)]
    p.decide(queue(lone, 0.0))
    p.observe(done([0], 1.0))
    assert p.ratio == pytest.approx(1 + 0.1 * (4 - 1))  # the sample counts as 4x at most
    assert p.decide(queue(lone, 0.0)) == [Dispatch([9], 0, 1)]  # 13 ms <= 60


def test_slo_without_correction_ignores_feedback():
    p = SloPolicy(correction=0)
    lone = [make_request(9, 0.0, slo_ms=15)]
    p.decide(queue(lone, 0.0))
    for _ in range(30):
        p.observe(done([0], 0.020))
    assert p.ratio == 1.0
    assert p.decide(queue(lone, 0.0)) == [Dispatch([9], 0, 1)]


def busy_queue(requests, rate_per_s):
    """A queue whose measured arrival rate is ``rate_per_s`` (that many just came and went)."""
    q = queue(requests, 0.0)
    for i in range(int(rate_per_s) - len(requests)):
        q.push(10_000 + i, 0.0, 1.0)
        q.take([10_000 + i])
    return q


def test_slo_waits_for_company_only_within_the_slack():
    # At 100 req/s (x1.2 headroom = 120) one worker needs batches of 2 to keep up
    # (1 / 10 ms = 100 < 120 <= 2 / 14 ms = 143). One request with a loose budget
    # waits for the expected second one, 1/120 s away.
    (wait,) = SloPolicy().decide(busy_queue([make_request(0, 0.0, slo_ms=500)], 100))
    assert isinstance(wait, Wait) and wait.until_s == pytest.approx(1 / 120)
    # Its deadline 500 ms bounds the wait: it would have to go by 500 - 14 ms.
    (wait,) = SloPolicy().decide(busy_queue([make_request(0, 0.0, slo_ms=20)], 100))
    assert wait.until_s == pytest.approx(0.020 - 0.014)
    # A budget of 12 ms leaves no slack for a batch of 2 (14 ms): it goes now.
    q = busy_queue([make_request(0, 0.0, slo_ms=12)], 100)
    assert SloPolicy().decide(q) == [Dispatch([0], 0, 1)]
    # wait=false never waits.
    q = busy_queue([make_request(0, 0.0, slo_ms=500)], 100)
    assert SloPolicy(wait=False).decide(q) == [Dispatch([0], 0, 1)]


def test_slo_in_overload_skips_the_tight_requests_for_an_efficient_batch():
    # Ten requests can only go alone (10.5 ms left: 1 takes 10 ms, 2 take 14) and seven
    # have 35 ms. Not everyone can be on time. More tight ones wait than the lookahead
    # may leave behind (8), so its best plan serves one tight request (100 req/s), then
    # 4 loose ones: 5 on time. The overload rule sends the 7 loose ones at once instead
    # (34 ms <= 35: 206 req/s, 7 on time); the tight ones are shed when hopeless.
    tight = [make_request(i, 0.0, slo_ms=10.5) for i in range(10)]
    loose = [make_request(10 + i, 0.0, slo_ms=35) for i in range(7)]
    assert SloPolicy().decide(queue(tight + loose, 0.0)) == [Dispatch(list(range(10, 17)), 0, 1)]
    assert SloPolicy(overload=False).decide(queue(tight + loose, 0.0)) == [Dispatch([0], 0, 1)]


@pytest.mark.parametrize("overload", [True, False])
def test_slo_keeps_its_goodput_and_large_batches_at_3x_overload(overload):
    """Simulated (virtual time): Poisson at 3x the limit, one worker on one core.

    s(b) = 4 b + 6 ms: the limit is 32 / 134 ms = 239 req/s at the largest batch; the
    efficient batch (16, 229 req/s) reaches 0.96x of it. Served in the small batches
    the tightest deadlines allow (the EDF trap), goodput falls far below that.
    """
    tbl = synthetic_table(LAW, max_batch=32, max_cores=1)
    limit = max(b / tbl.s(b, 1) for b in range(1, 33))
    trace = poisson_trace(3 * limit, 10.0, slo_ms=100, seed=3)
    spec = "slo" if overload else "slo:overload=false"
    records = simulate(trace, [Deployment("m", tbl, 1)], parse_policy(spec).factory()).records
    m = summarize(records)
    goodput = m.on_time / (trace.time_s[-1] - trace.time_s[0])
    if overload:
        assert goodput >= 0.85 * limit
        assert m.mean_batch >= 12
        assert m.late <= 0.001 * m.requests
    else:  # the old rule, kept behind the knob: the trap this test exists to catch
        assert goodput < 0.85 * limit


def test_slo_admission_sheds_an_arrival_only_behind_more_than_its_deadline_allows():
    """One 1-core worker, s(b) = 4 b + 6 ms up to b = 8: at best 8 / 38 ms = 211 req/s, so
    at most 21.05 requests finish within 100 ms; the efficient batch (7) takes 34 ms."""
    waiting = [make_request(i, 0.0, slo_ms=100) for i in range(40)]
    p = SloPolicy()
    hopeless = p.admit(queue(waiting, 0.0), 0.0001, 0)
    assert hopeless.startswith("deadline cannot be met")
    backlog = p.admit(queue(waiting, 0.0), 0.1, 0)
    assert backlog.startswith("shed at admission: 22+ requests ahead")
    assert p.admit(queue(waiting[:20], 0.0), 0.1, 0) == ""  # 20 ahead: it can make it
    assert p.admit(queue(waiting, 0.0), 0.1, priority=1) == ""  # a higher level: none ahead
    assert SloPolicy(admission=0).admit(queue(waiting, 0.0), 0.1, 0) == ""
    # Requests due before an efficient batch could end are passed over in overload, so
    # they do not count against a later arrival.
    tight = [make_request(i, 0.0, slo_ms=30) for i in range(40)]
    assert p.admit(queue(tight, 0.0), 0.1, 0) == ""


def test_slo_admission_in_the_simulator_sheds_early_without_losing_goodput():
    """Virtual time, 3x the limit: most shed requests never enter the queue, and the
    goodput is what shedding them later from the queue gives."""
    tbl = synthetic_table(LAW, max_batch=32, max_cores=1)
    limit = max(b / tbl.s(b, 1) for b in range(1, 33))
    trace = poisson_trace(3 * limit, 10.0, slo_ms=500, seed=4)
    runs = {}
    for spec in ("slo", "slo:admission=0"):
        sim = simulate(trace, [Deployment("m", tbl, 1)], parse_policy(spec).factory())
        runs[spec] = sim.records
    at_door = sum(r.startswith("shed at admission") for r in runs["slo"].reason)
    assert at_door > 0.5 * summarize(runs["slo"]).rejected
    assert not any(r.startswith("shed at admission") for r in runs["slo:admission=0"].reason)
    on_time = {k: summarize(v).on_time for k, v in runs.items()}
    assert on_time["slo"] >= 0.99 * on_time["slo:admission=0"]
    assert summarize(runs["slo"]).requests == len(trace)  # each ends once


# ---- specs -------------------------------------------------------------------------


def test_parse_one_spec_converts_knobs_to_the_constructors_types():
    spec = parse_policy("dynamic:max_batch_size=16,max_queue_delay_ms=5")
    assert spec.name == "dynamic"
    assert spec.params == {"max_batch_size": 16, "max_queue_delay_ms": 5.0}
    assert isinstance(spec.params["max_batch_size"], int)
    assert spec.label == "dynamic:max_batch_size=16,max_queue_delay_ms=5"
    import numpy as np

    policy = spec.factory()(np.random.default_rng(0))
    assert isinstance(policy, DynamicPolicy)
    assert policy.max_batch_size == 16 and policy.max_queue_delay_s == pytest.approx(0.005)
    assert parse_policy(" slo ").params == {}
    assert parse_policy("slo:shed=false").params == {"shed": False}
    assert parse_policy("fixed:timeout_ms=none").params == {"timeout_ms": None}
    assert parse_policy("fixed:batch_size=4,timeout_ms=2.5").params["timeout_ms"] == 2.5


def test_parse_a_list_attaches_knobs_to_the_policy_before_them():
    specs = parse_policy_list("slo,dynamic:max_batch_size=16,max_queue_delay_ms=5,aimd")
    assert [s.name for s in specs] == ["slo", "dynamic", "aimd"]
    assert specs[1].params == {"max_batch_size": 16, "max_queue_delay_ms": 5.0}
    assert specs[0].params == specs[2].params == {}
    assert [s.name for s in parse_policy_list("single, fixed:batch_size=2 ,")] == [
        "single",
        "fixed",
    ]


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("triton", ["unknown policy 'triton'", "single", "slo"]),
        ("dynamic:max_delay=5", ["dynamic", "no knob 'max_delay'", "max_queue_delay_ms"]),
        ("dynamic:max_batch_size=big", ["max_batch_size must be an integer", "'big'"]),
        ("dynamic:max_queue_delay_ms=soon", ["max_queue_delay_ms must be a number", "'soon'"]),
        ("dynamic:max_batch_size=0", ["max_batch_size must be an integer >= 1, got 0"]),
        ("dynamic:max_queue_delay_ms=-1", ["max_queue_delay_ms must be >= 0"]),
        ("slo:shed=maybe", ["shed must be true or false", "'maybe'"]),
        ("aimd:backoff=1.5", ["backoff must be in (0, 1)"]),
        ("fixed:batch_size", ["expected knob=value", "'batch_size'"]),
        ("fixed:batch_size=2,batch_size=3", ["'batch_size' given twice"]),
        ("single:max_batch_size=4", ["policy single has no knob", "none"]),
    ],
)
def test_bad_specs_are_user_errors_naming_the_problem(text, fragments):
    with pytest.raises(UserError) as err:
        parse_policy_list(text)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_bad_policy_lists():
    with pytest.raises(UserError, match="no policy given"):
        parse_policy_list(" , ")
    with pytest.raises(UserError, match="starts with a knob"):
        parse_policy_list("max_batch_size=4,dynamic")


# ---- the contract checker ----------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_every_policy_passes_the_contract_checker(name):
    report = check_policy(name)
    assert report.ok, str(report)
    assert len(report.scenarios) >= 5


class _DispatchesTwice:
    name = "twice"

    def __init__(self, rng=None):
        pass

    def decide(self, view):
        if not len(view) or view.idle_workers < 1:
            return []
        rid = view.fifo(1)[0]
        w = view.idle_worker()
        return [Dispatch([rid], w.id, 1), Reject([rid], "again")]

    def observe(self, done):
        pass


def test_the_checker_reports_a_broken_policy_and_raises_when_asked():
    report = check_policy(_DispatchesTwice)
    assert not report.ok
    assert any("not waiting" in p for p in report.problems)
    with pytest.raises(PolicyContractError, match="broke its contract"):
        check_policy(_DispatchesTwice, raise_on_error=True)
