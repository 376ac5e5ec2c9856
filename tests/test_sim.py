"""The simulator: accounting, the dynamic batcher's delay bound, determinism, queueing theory,
several models and workers, bad input, broken policies, and the capacity search."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from qosbatch.core.errors import UserError
from qosbatch.core.requests import LATE, ON_TIME, REJECTED
from qosbatch.latency import AmdahlModel
from qosbatch.metrics import summarize
from qosbatch.policies import Dispatch, PolicyContractError, Wait, parse_policy
from qosbatch.sim import LEFT_WAITING, Deployment, simulate
from qosbatch.sim.capacity import find_capacity, trace_at, tune
from qosbatch.sim.frontend import FrontEnd, parse_frontend
from qosbatch.testing import peak_cores, poisson_trace, records_digest, synthetic_table
from qosbatch.workloads import parse_workload
from qosbatch.workloads.trace import Trace

# The baselines and ours (queue-optimal has its own tests: it solves a queueing model).
NAMES = ("single", "fixed", "dynamic", "aimd", "slo")
# The example CNN on 2 cores: s(1, 2) = 21.7 ms, s(8, 2) = 89 ms; a batch of 1 on one core 29 ms.
TABLE = synthetic_table(max_batch=64, max_cores=4, cv=0.05)
CONSTANT_10MS = synthetic_table(AmdahlModel(0.0, 0.0, 0.0, 0.010), max_batch=8, max_cores=1)


def run(policy, trace, cores=2, workers=1, table=TABLE, **kw):
    dep = Deployment(trace.models[0], table, cores, workers)
    return simulate(trace, [dep], parse_policy(policy).factory(), **kw)


def batches(records):
    """One row per batch: (worker, dispatch, completion, size, cores, oldest arrival)."""
    served = records.outcome != REJECTED
    keys = {}
    for i in np.flatnonzero(served):
        key = (int(records.model[i]), int(records.worker[i]), float(records.dispatch_s[i]))
        row = keys.setdefault(
            key, [float(records.completion_s[i]), 0, int(records.cores[i]), math.inf]
        )
        row[1] += 1
        row[3] = min(row[3], float(records.arrival_s[i]))
    return sorted((k[0], k[1], k[2], *v) for k, v in keys.items())


# ---- accounting --------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("rate", "duration_s"), [(5.0, 40.0), (400.0, 4.0)])
def test_every_request_ends_exactly_once(name, rate, duration_s):
    trace = poisson_trace(rate, duration_s, slo_ms=100, seed=1)
    records = run(name, trace).records
    m = summarize(records)
    assert m.requests == len(trace) == m.on_time + m.late + m.rejected
    assert sorted(records.request_id.tolist()) == list(range(len(trace)))
    served = records.outcome != REJECTED
    assert np.all(records.dispatch_s[served] >= records.arrival_s[served])
    assert np.all(records.completion_s[served] > records.dispatch_s[served])
    assert np.all(np.isnan(records.dispatch_s[~served]))
    assert np.all(records.reason[~served] != "") and np.all(records.reason[served] == "")
    assert np.all((records.batch_size[served] >= 1) & (records.batch_size[served] <= 64))
    on_time = records.outcome == ON_TIME
    assert np.all(records.completion_s[on_time] <= records.deadline_s[on_time])
    assert np.all(records.completion_s[records.outcome == LATE] > records.deadline_s[
        records.outcome == LATE])  # fmt: skip
    if rate > 100:  # 4x what the node can carry: somebody misses
        assert m.attainment < 0.9
        if name == "slo":
            assert m.rejected > 0  # slo sheds; the baselines serve late instead
            assert all("deadline" in r for r in records.reason[~served])
        else:
            assert m.rejected == 0 and m.late > 0
    elif name != "fixed":  # fixed without a timeout waits for 8 at 5 req/s: late
        assert m.attainment > 0.95


def test_slo_sheds_rather_than_serving_late_under_overload():
    trace = poisson_trace(400.0, 4.0, slo_ms=100, seed=1)
    slo = summarize(run("slo", trace).records)
    dynamic = summarize(run("dynamic", trace).records)
    assert slo.on_time > dynamic.on_time
    assert slo.late < 0.05 * slo.requests


# ---- the dynamic batcher's delay bound ---------------------------------------------


def test_dynamic_never_holds_a_batch_past_max_queue_delay_while_a_worker_is_idle():
    delay = 0.005
    trace = poisson_trace(25.0, 60.0, slo_ms=200, seed=3)
    records = run("dynamic:max_batch_size=4,max_queue_delay_ms=5", trace).records
    last_arrival = float(trace.time_s[-1])
    rows = batches(records)
    assert len(rows) > 100
    assert any(size > 1 for *_, size, _, _ in rows)
    previous_end = -math.inf
    for _, _, start, end, size, _, oldest in rows:
        if size < 4 and start < last_arrival:
            # A partial batch goes only once its oldest member has waited the delay...
            assert start >= oldest + delay - 1e-12
        if start > oldest + delay + 1e-12:
            # ...and later than that only because the worker was busy until then.
            assert start == pytest.approx(previous_end, abs=1e-12)
        previous_end = end
    waited = records.dispatch_s - records.arrival_s
    assert np.nanmax(waited) > delay  # the bound is not trivially met: it was busy sometimes


# ---- feedback ----------------------------------------------------------------------


class _Recording:
    """Wraps a policy and keeps every CompletedBatch it is told about."""

    def __init__(self, inner):
        self.inner, self.name, self.seen = inner, inner.name, []

    def decide(self, view):
        return self.inner.decide(view)

    def observe(self, done):
        self.seen.append(done)
        self.inner.observe(done)


def test_observe_is_told_exactly_what_ran_and_how_many_were_late():
    trace = poisson_trace(120.0, 5.0, slo_ms=60, seed=6)  # overloaded: many late batches
    made = []

    def factory(rng):
        made.append(_Recording(parse_policy("dynamic:max_batch_size=4").factory()(rng)))
        return made[-1]

    records = simulate(trace, [Deployment("m", TABLE, 2)], factory, seed=1).records
    (policy,) = made
    assert len(policy.seen) == len(batches(records)) > 50
    late_batches = 0
    for done in policy.seen:
        ids = list(done.requests)
        assert np.all(records.dispatch_s[ids] == done.dispatch_s)
        assert np.all(records.completion_s[ids] == done.completion_s)
        assert np.all(records.cores[ids] == done.cores) and np.all(records.worker[ids] == 0)
        assert np.all(records.batch_size[ids] == done.size)
        assert done.late == np.count_nonzero(records.outcome[ids] == LATE)
        late_batches += done.late > 0
    assert late_batches > 10


# ---- tie order ---------------------------------------------------------------------

# Binary fractions, so that "at the same time" is exact: a batch takes 1/64 s, the
# dynamic batcher holds a partial batch 1/128 s (7.8125 ms).
EXACT = synthetic_table(AmdahlModel(0.0, 0.0, 0.0, 1 / 64), max_batch=8, max_cores=1)
HOLD = "max_queue_delay_ms=7.8125"


def dispatches(policy, times):
    trace = Trace.of(times, 1000.0, "m")
    records = run(policy, trace, cores=1, table=EXACT, deterministic=True).records
    pairs = zip(records.dispatch_s.tolist(), records.batch_size.tolist(), strict=True)
    return sorted(set(pairs))


def test_an_arrival_at_the_moment_a_wait_expires_joins_the_batch():
    # Wait(1/128) for the first; the second arrives at 1/128: arrivals before wake-ups.
    assert dispatches(f"dynamic:max_batch_size=4,{HOLD}", [0.0, 1 / 128]) == [(1 / 128, 2)]


def test_a_completion_at_the_moment_of_an_arrival_comes_first():
    # First batch 1/128 .. 3/128. The second request (at 2/128) is due at 3/128, when the
    # third arrives and the worker frees up: the completion is handled first, so the
    # worker takes the second alone, and the third waits for the next batch.
    got = dispatches(f"dynamic:max_batch_size=2,{HOLD}", [0.0, 2 / 128, 3 / 128])
    assert got == [(1 / 128, 1), (3 / 128, 1), (5 / 128, 1)]


# ---- determinism -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["slo", "dynamic"])
def test_a_seed_determines_the_run(name):
    trace = poisson_trace(60.0, 5.0, slo_ms=80, seed=2)
    table = synthetic_table(max_batch=64, max_cores=2, cv=0.2)
    a, b, c = (run(name, trace, table=table, seed=s).records for s in (7, 7, 8))
    for col in ("dispatch_s", "completion_s", "outcome", "batch_size", "cores", "worker"):
        assert np.array_equal(getattr(a, col), getattr(b, col), equal_nan=True), col
    assert list(a.reason) == list(b.reason)
    assert not np.array_equal(a.completion_s, c.completion_s)


def test_deterministic_service_times_are_the_table_means():
    trace = poisson_trace(10.0, 5.0, slo_ms=500, seed=2)
    records = run("single", trace, table=TABLE, deterministic=True).records
    service = records.completion_s - records.dispatch_s
    assert service == pytest.approx(np.full(len(trace), TABLE.s(1, 2)), rel=1e-12)


def test_lognormal_service_times_keep_the_table_mean_and_cv():
    trace = poisson_trace(10.0, 400.0, slo_ms=1e6, seed=2)
    table = synthetic_table(max_batch=8, max_cores=2, cv=0.3)
    records = run("single", trace, table=table).records
    service = records.completion_s - records.dispatch_s
    assert service.mean() == pytest.approx(table.s(1, 2), rel=0.03)
    assert service.std() / service.mean() == pytest.approx(0.3, rel=0.1)


# ---- queueing theory ---------------------------------------------------------------


def test_single_with_deterministic_service_is_md1():
    # M/D/1, S = 10 ms, rate 60/s (rho 0.6): Pollaczek-Khinchine mean wait
    # rho S / (2 (1 - rho)) = 7.5 ms.
    rate, service = 60.0, 0.010
    rho = rate * service
    expected = rho * service / (2 * (1 - rho))
    trace = poisson_trace(rate, 1500.0, slo_ms=1e6, seed=11)
    records = run("single", trace, cores=1, table=CONSTANT_10MS, deterministic=True).records
    wait = records.dispatch_s - records.arrival_s
    assert wait.mean() == pytest.approx(expected, rel=0.04)
    assert (records.completion_s - records.arrival_s).mean() == pytest.approx(
        expected + service, rel=0.03
    )
    # PASTA: the fraction of arrivals that find the server idle is 1 - rho.
    assert np.mean(wait == 0) == pytest.approx(1 - rho, abs=0.02)


# ---- several models, several workers -----------------------------------------------


def two_model_trace(seed=5):
    rng = np.random.default_rng(seed)
    a = np.sort(rng.uniform(0, 10, 600))
    b = np.sort(rng.uniform(0, 10, 300))
    times = np.concatenate([a, b])
    codes = np.concatenate([np.zeros(len(a), int), np.ones(len(b), int)])
    order = np.argsort(times, kind="stable")
    slo = np.where(codes == 0, 150.0, 300.0)
    return Trace(times[order], codes[order], ("a", "b"), slo[order])


@pytest.mark.parametrize("name", ["dynamic", "slo", "single"])
def test_several_models_and_workers(name):
    trace = two_model_trace()
    deps = [
        Deployment("a", TABLE, cores=4, workers=2),  # two workers of 2 cores
        Deployment("b", synthetic_table(max_batch=64, max_cores=2, cv=0.05), 2, workers=2),
    ]
    records = simulate(trace, deps, parse_policy(name).factory(), seed=1).records
    assert records.models == ("a", "b")
    for m, pool, nominal in ((0, 4, 2), (1, 2, 1)):
        mine = records.where(records.model == m)
        served = mine.outcome != REJECTED
        assert len(mine) == np.count_nonzero(trace.model == m)
        assert set(mine.worker[served].tolist()) == {0, 1}  # both replicas worked
        assert peak_cores(records, m) <= pool
        if name != "slo":
            assert set(mine.cores[served].tolist()) == {nominal}  # baselines: nominal cores
        assert summarize(mine).attainment > 0.9


def test_slo_scales_cores_per_batch_within_the_pool():
    trace = poisson_trace(30.0, 20.0, slo_ms=60, seed=4)
    records = run("slo", trace, cores=4, workers=2).records
    served = records.outcome != REJECTED
    used = set(records.cores[served].tolist())
    assert len(used) > 1 and max(used) <= 4  # not just the nominal 2
    assert peak_cores(records, 0) <= 4


def shifting_two_model_trace(seed=3):
    """Model a busy in the first half, b in the second: a static split of cores idles."""
    rng = np.random.default_rng(seed)
    parts = [  # (model, rate, start, end)
        (0, 60.0, 0.0, 10.0),
        (1, 5.0, 0.0, 10.0),
        (0, 5.0, 10.0, 20.0),
        (1, 60.0, 10.0, 20.0),
    ]
    times, codes = [], []
    for m, rate, t0, t1 in parts:
        t = np.sort(rng.uniform(t0, t1, rng.poisson(rate * (t1 - t0))))
        times.append(t)
        codes.append(np.full(len(t), m))
    times_a, codes_a = np.concatenate(times), np.concatenate(codes)
    order = np.argsort(times_a, kind="stable")
    return Trace(times_a[order], codes_a[order], ("a", "b"), np.full(len(order), 100.0))


@pytest.mark.parametrize("name", ["dynamic", "slo", "single"])
def test_models_sharing_the_node_never_hold_more_than_its_cores(name):
    trace = shifting_two_model_trace()
    deps = [Deployment("a", TABLE, cores=2, workers=2), Deployment("b", TABLE, 2, workers=2)]
    records = simulate(trace, deps, parse_policy(name).factory(), seed=1, node_cores=2).records
    assert len(records) == len(trace)
    assert peak_cores(records) <= 2  # each alone could hold 2: together still 2
    for m in (0, 1):
        assert peak_cores(records, m) == 2  # and each did take the whole node when busy


def test_sharing_the_node_beats_a_static_split_when_load_moves_between_models():
    trace = shifting_two_model_trace()
    shared = [Deployment("a", TABLE, cores=2, workers=2), Deployment("b", TABLE, 2, workers=2)]
    split = [Deployment("a", TABLE, cores=1), Deployment("b", TABLE, cores=1)]
    slo = parse_policy("slo").factory
    together = summarize(simulate(trace, shared, slo(), seed=1, node_cores=2).records)
    apart = summarize(simulate(trace, split, slo(), seed=1).records)
    assert together.attainment > apart.attainment + 0.1


def test_a_node_pool_needs_a_core():
    trace = poisson_trace(10.0, 1.0, slo_ms=100)
    with pytest.raises(UserError, match="node cores must be >= 1"):
        simulate(trace, [Deployment("m", TABLE, 2)], parse_policy("slo").factory(), node_cores=0)


# ---- bad input and broken policies --------------------------------------------------


def test_a_trace_for_a_model_without_a_deployment_is_a_user_error():
    trace = poisson_trace(10.0, 1.0, slo_ms=100, model="resnet18")
    with pytest.raises(UserError, match="'resnet18', which has no profile"):
        simulate(trace, [Deployment("m", TABLE, 2)], parse_policy("single").factory())


def test_bad_deployments():
    with pytest.raises(UserError, match="workers must be between 1 and the cores"):
        Deployment("m", TABLE, cores=2, workers=3)
    with pytest.raises(UserError, match="covers 4 cores, fewer than the 8"):
        Deployment("m", TABLE, cores=8)
    trace = poisson_trace(10.0, 1.0, slo_ms=100)
    with pytest.raises(UserError, match="two deployments of the same model"):
        simulate(trace, [Deployment("m", TABLE, 2)] * 2, parse_policy("single").factory())


class _Broken:
    """A policy that breaks the contract in the way it is told to."""

    name = "broken"

    def __init__(self, how):
        self.how = how

    def decide(self, view):
        if not len(view):
            return []
        if self.how == "wait in the past":
            return [Wait(view.now_s)]
        if self.how == "busy worker":
            return [Dispatch(view.fifo(1), 0, 1)]  # worker 0, idle or not
        if self.how == "too many cores":
            return [Dispatch(view.fifo(1), 0, view.max_cores + 1)]
        if self.how == "empty batch" and view.idle_workers:
            return [Dispatch([], view.idle_worker().id, 1)]
        if self.how == "not a decision":
            return ["go"]
        if self.how == "wait forever":
            return [Wait(view.now_s + 1.0)]
        return []  # "never decides"

    def observe(self, done):
        pass


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("wait in the past", "is not in the future"),
        ("busy worker", "dispatch to worker 0, which is busy"),
        ("too many cores", "dispatch on 3 cores with 2 free"),
        ("empty batch", "a batch of 0"),
        ("not a decision", "is not a Dispatch, Reject or Wait"),
        ("never decides", "neither dispatched nor rejected"),
        ("wait forever", "keeps waiting"),
    ],
)
def test_a_policy_that_breaks_the_contract_is_stopped(how, message):
    trace = poisson_trace(200.0, 0.2, slo_ms=100, seed=1)
    with pytest.raises(PolicyContractError, match=message):
        simulate(trace, [Deployment("m", TABLE, 2)], lambda rng: _Broken(how))


def test_outside_strict_mode_what_a_policy_left_waiting_is_rejected_with_a_reason():
    trace = poisson_trace(200.0, 0.2, slo_ms=100, seed=1)
    records = simulate(
        trace, [Deployment("m", TABLE, 2)], lambda rng: _Broken("never decides"), strict=False
    ).records
    assert np.all(records.outcome == REJECTED)
    assert set(records.reason) == {LEFT_WAITING}


# ---- capacity ----------------------------------------------------------------------


def capacity(slo_ms, policy="single", **kw):
    spec = parse_workload(f"poisson:rate=50,duration_s=30,slo_ms={slo_ms}")
    deps = [Deployment("m", CONSTANT_10MS, 1)]
    return find_capacity(
        trace_at(spec, 0, "m"), deps, parse_policy(policy), rel_tol=0.03, deterministic=True, **kw
    )


def test_a_looser_slo_carries_more_load():
    tight, loose = capacity(30), capacity(100)
    assert 0 < tight.rate < loose.rate < 100  # an M/D/1 with S = 10 ms saturates at 100/s
    for cap in (tight, loose):
        assert cap.metrics is not None and cap.metrics.attainment >= 0.99
        # The bracket is tight: a load a few % higher failed.
        failed = [r for r, a in cap.points if a < 0.99]
        assert failed and min(failed) <= cap.rate * 1.04
        assert all(a >= 0.99 for r, a in cap.points if r <= cap.rate)


def test_capacity_target_and_tuning():
    with pytest.raises(UserError, match="target attainment"):
        capacity(30, target=1.5)
    spec = parse_workload("poisson:rate=50,duration_s=20,slo_ms=100")
    tuned = tune(
        trace_at(spec, 0, "m"),
        [Deployment("m", TABLE, 2)],
        parse_policy("dynamic"),
        grid={"max_batch_size": (1, 8), "max_queue_delay_ms": (0, 20)},
        rel_tol=0.05,
    )
    assert len(tuned.tried) == 4
    assert tuned.best.rate == max(rate for _, rate in tuned.tried)
    assert tuned.spec.label in dict(tuned.tried)
    assert tuned.spec.params["max_batch_size"] == 8  # batching carries more than batch 1
    with pytest.raises(UserError, match="only dynamic is tunable"):
        tune(trace_at(spec, 0, "m"), [Deployment("m", TABLE, 2)], parse_policy("slo"))


def test_overhead_shifts_the_queue_and_judges_at_the_client():
    from qosbatch.sim.overhead import client_side, server_side

    table = synthetic_table(AmdahlModel(0.0, 0.0, 0.0, 0.010), max_batch=1, max_cores=1)
    trace = Trace.of([0.0, 1.0], [10.5, 14.0], "m")  # each takes 10 ms alone
    shifted = server_side(trace, 0.002)
    assert shifted.time_s.tolist() == [0.002, 1.002]
    res = simulate(shifted, [Deployment("m", table, 1)], parse_policy("single").factory(),
                   deterministic=True)  # fmt: skip
    assert res.records.outcome.tolist() == [ON_TIME, ON_TIME]  # on time at the server
    seen = client_side(res.records, 0.002, 0.001)
    assert seen.arrival_s.tolist() == [0.0, 1.0]
    # 2 + 10 + 1 = 13 ms at the client: late for a 10.5 ms budget, on time for 14 ms.
    assert seen.outcome.tolist() == [LATE, ON_TIME]
    assert seen.completion_s[0] == pytest.approx(0.013)


# ---- the front end's CPU -----------------------------------------------------------

CONSTANT_2MS = synthetic_table(AmdahlModel(0.0, 0.0, 0.0, 0.002), max_batch=8, max_cores=2)
EVERY_128TH = [k / 128 for k in range(384)]  # 128 req/s for 3 s, exact in binary


def service_times(records):
    return (records.completion_s - records.dispatch_s).tolist()


@pytest.mark.parametrize("name", ["slo", "dynamic", "single"])
def test_a_free_front_end_changes_nothing(name):
    trace = two_model_trace()
    deps = [Deployment("a", TABLE, 2, 2), Deployment("b", TABLE, 2)]
    for node in (None, 3):
        today = simulate(trace, deps, parse_policy(name).factory(), seed=4, node_cores=node)
        for frontend in (None, FrontEnd(0.0, 0.0)):
            res = simulate(
                trace, deps, parse_policy(name).factory(), seed=4, node_cores=node,
                frontend=frontend,
            )  # fmt: skip
            assert records_digest(res.records) == records_digest(today.records)


def test_the_front_end_stretches_a_batch_by_its_share_of_the_cores():
    # One request every 1/128 s, each served alone in 2 ms on one core, well before the
    # next. At the k-th dispatch the last second holds k + 1 arrivals (k itself
    # included) and k results, up to 128 of each once a second has passed: with 1 ms of
    # CPU for each, the front end takes (2k + 1) ms of every 1000, at most 256.
    trace = Trace.of(EVERY_128TH, 1000.0, "m")
    fe = FrontEnd(request_s=0.001, result_s=0.001)
    res = run("single", trace, cores=1, table=CONSTANT_2MS, deterministic=True, frontend=fe)
    expected = [0.002 / (1 - min(2 * k + 1, 256) / 1000) for k in range(len(trace))]
    assert service_times(res.records) == pytest.approx(expected, rel=1e-12)
    assert expected[-1] == pytest.approx(0.002 / 0.744)


@pytest.mark.parametrize(("cores", "most"), [(1, 2.0), (2, 1.5)])
def test_the_front_end_takes_at_most_a_fair_share_of_the_cores(cores, most):
    # 10 ms per request at 128 req/s asks for 1.28 cores: one thread among `cores` busy
    # ones gets 1 / (cores + 1) of their time, so batches take at most (cores + 1) / cores.
    trace = Trace.of(EVERY_128TH, 1000.0, "m")
    fe = FrontEnd(request_s=0.010)
    res = run("single", trace, cores=cores, table=CONSTANT_2MS, deterministic=True, frontend=fe)
    service = service_times(res.records)
    assert max(service) == pytest.approx(0.002 * most, rel=1e-12)
    assert service[128:] == pytest.approx([0.002 * most] * (len(trace) - 128), rel=1e-12)


@pytest.mark.parametrize("node", [None, 2])
def test_one_front_end_serves_every_model_on_all_the_cores(node):
    # Model a: 128 req/s until t = 2 (255/128); model b: one request at t = 2, which
    # finds 127 of a's and its own in the last second: 128 ms of CPU over 2 cores (each
    # model's 1, or a shared pool of 2), a share of 0.064.
    times = [*EVERY_128TH[:256], 2.0]
    codes = np.array([0] * 256 + [1], dtype=np.int64)
    trace = Trace(np.array(times), codes, ("a", "b"), np.full(257, 1000.0))
    deps = [Deployment("a", CONSTANT_2MS, 1), Deployment("b", CONSTANT_2MS, 1)]
    res = simulate(
        trace, deps, parse_policy("single").factory(), deterministic=True, node_cores=node,
        frontend=FrontEnd(request_s=0.001),
    )  # fmt: skip
    assert service_times(res.records)[-1] == pytest.approx(0.002 / (1 - 0.064), rel=1e-12)


def test_the_front_end_costs_goodput_under_overload_and_little_below_it():
    # TABLE's limit on 2 cores is about 100 req/s (b / s(b, 2) at b = 64).
    limit = max(b / TABLE.s(b, 2) for b in range(1, TABLE.max_batch + 1))
    fe = FrontEnd(request_s=0.0008, result_s=0.0005)
    # At 3x, 0.8 ms for each of ~300 req/s and 0.5 ms for each of ~65 results take about
    # 14% of the 2 cores: 17% of the goodput is lost. At 0.3x, 2%: nothing is lost.
    for load, lost in ((3.0, (0.1, 0.3)), (0.3, (0.0, 0.001))):
        trace = poisson_trace(load * limit, 30.0, slo_ms=300, seed=3)
        free, busy = (summarize(run("slo", trace, frontend=f).records) for f in (None, fe))
        assert lost[0] <= 1 - busy.goodput / free.goodput <= lost[1], (load, free, busy)


def test_front_end_specs():
    assert parse_frontend("request=0.6ms,result=0.4ms") == FrontEnd(0.0006, 0.0004)
    assert parse_frontend(" request = 600us ") == FrontEnd(0.0006, 0.0)
    assert parse_frontend("request=0.5,result=0,window=2s") == FrontEnd(0.0005, 0.0, 2.0)
    assert parse_frontend("request=0ms") == FrontEnd(0.0)
    fe = FrontEnd(0.0008, 0.0005, 0.5)
    assert parse_frontend(fe.spec) == fe


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "give request=DURATION"),
        ("result=0.4ms", "give request=DURATION"),
        ("request=0.6ms,reply=1ms", "unknown key 'reply'"),
        ("request", "expected key=duration"),
        ("request=fast", "--frontend request: expected a duration"),
        ("request=-1ms", "--frontend request: expected a duration"),
        ("request=1ms,request=2ms", "given twice"),
        ("request=1ms,window=0", "--frontend window: expected a duration > 0"),
    ],
)
def test_bad_front_end_specs(text, message):
    with pytest.raises(UserError, match=re.escape(message)):
        parse_frontend(text)


def test_bad_front_ends():
    with pytest.raises(UserError, match="request_s must be a finite number >= 0"):
        FrontEnd(-0.001)
    with pytest.raises(UserError, match="result_s must be a finite number >= 0"):
        FrontEnd(0.001, math.nan)
    with pytest.raises(UserError, match="window_s must be > 0"):
        FrontEnd(0.001, 0.0, 0.0)


@pytest.mark.parametrize("policy", ["slo", "dynamic:max_batch_size=8,max_queue_delay_ms=5"])
def test_a_simulation_run_in_pieces_gives_the_records_of_one_run(policy):
    from qosbatch.sim.kernel import Simulation

    table = synthetic_table(max_batch=32, max_cores=2, cv=0.1)
    trace = poisson_trace(rate=150.0, duration_s=13.0, slo_ms=60.0, seed=4)
    deps = [Deployment("m", table, 2, 2)]
    whole = simulate(trace, deps, parse_policy(policy).factory(), seed=9)
    pieces = Simulation(trace, deps, parse_policy(policy).factory(), seed=9)
    t = 0.0
    while pieces.run(until=t):
        assert pieces.now == t
        t += 0.37
    stepped = Simulation(trace, deps, parse_policy(policy).factory(), seed=9)
    steps = 0
    while stepped.step():
        steps += 1
    assert steps > len(trace)  # (every arrival, completion and wake-up instant)
    for other in (pieces, stepped):
        result = other.result()
        assert records_digest(result.records) == records_digest(whole.records)
        assert result.events == whole.events and result.batches == whole.batches
    with pytest.raises(RuntimeError, match="ended"):
        pieces.run()


class _PausingEveryDecision:
    """Wraps a policy: pauses the run before each event's decision (never a re-ask)."""

    def __init__(self, inner):
        self.inner, self.name, self.answered = inner, inner.name, None

    def decide(self, view):
        from qosbatch.sim.kernel import PAUSE

        key = (view.model, view.now_s)
        if key != self.answered:  # (a re-ask within one decision has the key just answered)
            self.answered = key
            return PAUSE
        return self.inner.decide(view)

    def observe(self, done):
        self.inner.observe(done)

    def __getattr__(self, name):  # admit, idle_only: the inner policy's
        return getattr(self.inner, name)


@pytest.mark.parametrize(
    "policy, shared",
    [("slo", False), ("dynamic:max_batch_size=8,max_queue_delay_ms=5", False), ("slo", True),
     ("dynamic", True)],
)  # fmt: skip
def test_a_run_paused_before_its_decisions_gives_the_records_of_one_run(policy, shared):
    from qosbatch.sim.kernel import Simulation

    factory = parse_policy(policy).factory()
    if shared:  # completions on one pool: every model may decide, each may pause
        tables = [synthetic_table(max_batch=32, max_cores=2, cv=0.1) for _ in range(2)]
        deps = [Deployment("a", tables[0], 2, 2), Deployment("b", tables[1], 2, 2)]
        spec = parse_workload("poisson:rate=60,requests=1500,slo_ms=120,model=a/b,mix=2/1")
        trace, kw = spec.generate(np.random.default_rng(8)), {"seed": 4, "node_cores": 2}
    else:
        deps = [Deployment("m", synthetic_table(max_batch=32, max_cores=2, cv=0.1), 2, 2)]
        trace, kw = poisson_trace(rate=150.0, duration_s=8.0, slo_ms=60.0, seed=4), {"seed": 9}
    whole = simulate(trace, deps, factory, **kw)
    paused = Simulation(trace, deps, lambda rng: _PausingEveryDecision(factory(rng)), **kw)
    pauses, t = 0, 0.0
    while paused.run(until=t):  # (in pieces, and paused within them)
        if not paused.paused:
            assert paused.now == t
            t += 0.37
            continue
        assert paused.peek() == paused.now <= t
        if pauses == 0:
            with pytest.raises(RuntimeError, match="paused"):
                paused.result()
        pauses += 1
    assert pauses > 100  # (dynamic is idle-only: not at every arrival)
    result = paused.result()
    assert records_digest(result.records) == records_digest(whole.records)
    assert result.events == whole.events and result.batches == whole.batches
