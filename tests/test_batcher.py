"""The live batcher's accounting with a fake worker: every request ends in exactly one Answer."""

from __future__ import annotations

import asyncio
import json

import looptime
import numpy as np
import pytest

from qosbatch.latency import AmdahlModel
from qosbatch.policies.base import Dispatch
from qosbatch.policies.dynamic import DynamicPolicy
from qosbatch.policies.slo import SloPolicy
from qosbatch.serve.batcher import Batcher
from qosbatch.serve.telemetry import Telemetry
from qosbatch.testing import FakeWorker, synthetic_table

LAW = AmdahlModel(alpha=0.004, beta=0.0, gamma=0.0, delta=0.006)  # s(b) = 4b + 6 ms


def make(policy, max_queue=100, workers=1, cores=1, clock=None):
    fakes = [FakeWorker() for _ in range(workers)]
    batcher = Batcher(
        "m",
        policy,
        synthetic_table(LAW, max_batch=8, max_cores=cores),
        fakes,
        tuple(range(cores)),
        Telemetry(),
        max_queue=max_queue,
        clock=clock,
    )
    return batcher, fakes


def run(coro):
    """Run a scenario in virtual time (looptime): the clock jumps when every task waits.

    The batcher reads the loop's clock, so its timers, the policies' waits and the
    deadlines all live in that virtual time: nothing here sleeps for real, and a
    scenario's timing is the same on a loaded machine as on an idle one.
    """
    loop = looptime.new_event_loop(start=0.0)
    try:
        return loop.run_until_complete(asyncio.wait_for(coro, 10))
    finally:
        loop.close()


async def settle(seconds: float = 0.0001):
    """Let everything due within ``seconds`` of virtual time run (0.1 ms: what is ready)."""
    await asyncio.sleep(seconds)


def test_requests_are_stacked_into_one_batch_and_split_back():
    async def scenario():
        b, (w,) = make(DynamicPolicy(max_batch_size=4, max_queue_delay_ms=50))
        await b.start()
        xs = [np.full((1, 2), i, np.float32) for i in range(3)] + [np.ones((2, 2), np.float32)]
        futures = [b.submit(x, budget_s=1.0) for x in xs]
        await settle()
        assert len(w.batches) == 1  # four requests: a full batch at once
        batch, cpus, _ = w.batches[0]
        assert batch.shape == (5, 2) and cpus == (0,)
        w.finish()
        answers = await asyncio.gather(*futures)
        for x, a in zip(xs, answers, strict=True):
            assert a.status == 200 and a.outcome == "on_time" and a.batch_size == 4
            np.testing.assert_array_equal(a.output, x * 2)
        await b.stop()

    run(scenario())


def test_a_full_queue_answers_503_with_a_reason():
    async def scenario():
        b, (w,) = make(DynamicPolicy(max_batch_size=1, max_queue_delay_ms=0), max_queue=2)
        await b.start()
        x = np.zeros((1, 2), np.float32)
        first = b.submit(x, 1.0)
        await settle()  # the first runs; two wait; the fourth finds the queue full
        waiting = [b.submit(x, 1.0) for _ in range(2)]
        full = await b.submit(x, 1.0)
        assert full.status == 503 and "queue full: 2 requests waiting" in full.reason
        for _ in range(3):
            w.finish()
            await settle()
        assert all(a.status == 200 for a in await asyncio.gather(first, *waiting))
        await b.stop()

    run(scenario())


def test_slo_sheds_a_hopeless_request_with_429_at_once():
    async def scenario():
        b, (w,) = make(SloPolicy())
        await b.start()
        answer = await b.submit(np.zeros((1, 2), np.float32), budget_s=0.002)  # 10 ms alone
        assert answer.status == 429 and answer.outcome == "rejected"
        assert "deadline cannot be met" in answer.reason
        assert not w.batches
        await b.stop()

    run(scenario())


def test_a_dead_worker_fails_its_batch_and_is_restarted():
    async def scenario():
        b, (w,) = make(DynamicPolicy(max_batch_size=2, max_queue_delay_ms=0))
        await b.start()
        x = np.zeros((1, 2), np.float32)
        futures = [b.submit(x, 1.0) for _ in range(2)]
        await settle()
        w.die(0, "died mid-batch: SIGKILL")
        answers = await asyncio.gather(*futures)
        assert all(a.status == 500 and "died mid-batch" in a.reason for a in answers)
        await settle()
        assert w.starts == 2  # started, then restarted
        after = b.submit(x, 1.0)
        await settle()
        w.finish()
        assert (await after).status == 200
        await b.stop()

    run(scenario())


def faults(b) -> float:
    return b.telemetry.registry.get_sample_value(
        "qosbatch_policy_faults_total", {"model": "m", "policy": "broken"}
    )


def test_a_policy_that_raises_is_replaced_by_the_fallback_and_nothing_is_lost():
    class Broken(DynamicPolicy):
        name = "broken"

        def decide(self, view):
            raise ZeroDivisionError("oops")

    async def scenario():
        b, (w,) = make(Broken())
        await b.start()
        future = b.submit(np.zeros((1, 2), np.float32), 1.0)
        await settle(0.01)  # (dynamic's default delay is 5 ms)
        assert b.policy.name == "dynamic" and faults(b) == 1
        assert len(w.batches) == 1  # the fallback ran it: it named no request, none failed
        w.finish()
        assert (await future).status == 200
        await b.stop()

    run(scenario())


@pytest.mark.parametrize("named", ["twice", "not waiting"])
def test_a_broken_dispatch_fails_the_requests_it_named_and_strands_none(named):
    """The hang the contract check used to cause: ids half taken, never answered."""

    class Broken(DynamicPolicy):
        name = "broken"

        def decide(self, view):
            if len(view) < 3:
                return []
            first, second = view.fifo(2)
            ids = [first, second, first] if named == "twice" else [first, second, 10_000]
            return [Dispatch(ids, 0, 1)]

    async def scenario():
        b, (w,) = make(Broken())
        await b.start()
        futures = [b.submit(np.full((1, 2), i, np.float32), 1.0) for i in range(3)]
        await settle(0.01)
        assert faults(b) == 1 and b.policy.name == "dynamic"
        first, second = futures[0].result(), futures[1].result()
        for answer in (first, second):
            assert answer.status == 500 and "policy broken failed" in answer.reason
            assert "not waiting" in answer.reason
        assert len(w.batches) == 1  # the third, untouched, runs under the fallback
        w.finish()
        third = await futures[2]
        assert third.status == 200 and third.output[0, 0] == 4.0
        assert not b._waiting and not len(b.queue)
        await b.stop()

    run(scenario())


def test_stop_answers_what_still_waits():
    async def scenario():
        b, (w,) = make(DynamicPolicy(max_batch_size=8, max_queue_delay_ms=10_000))
        await b.start()
        waiting = b.submit(np.zeros((1, 2), np.float32), 100.0)
        await settle()
        assert not w.batches  # the policy holds it for a fuller batch
        await b.stop()
        answer = await waiting
        assert answer.status == 503 and "stopped" in answer.reason

    run(scenario())


def test_drain_stops_waiting_for_arrivals_that_will_not_come():
    async def scenario():
        b, (w,) = make(DynamicPolicy(max_batch_size=8, max_queue_delay_ms=10_000))
        await b.start()
        pending = b.submit(np.zeros((1, 2), np.float32), 100.0)
        await settle()
        assert not w.batches
        b.drain()
        await settle()
        assert len(w.batches) == 1  # draining: the partial batch goes now
        w.finish()
        assert (await pending).status == 200
        refused = await b.submit(np.zeros((1, 2), np.float32), 1.0)
        assert refused.status == 503 and "shutting down" in refused.reason
        await b.stop()

    run(scenario())


@pytest.mark.parametrize("cores", [2])
def test_in_place_scaling_hands_the_batch_the_cpus_the_policy_chose(cores):
    now = [0.0]

    async def scenario():
        b, (w,) = make(SloPolicy(), cores=cores, clock=lambda: now[0])
        await b.start()
        b.submit(np.zeros((1, 2), np.float32), 1.0)
        await settle()
        _, cpus, _ = w.batches[0]
        assert 1 <= len(cpus) <= cores and set(cpus) <= set(range(cores))
        assert b.queue.free_cores == cores - len(cpus)
        now[0] = 0.25
        w.finish()
        await settle()
        assert b.queue.free_cores == cores
        # The cores it held, for as long as it held them: what a per-core node bills.
        billed = b.telemetry.registry.get_sample_value(
            "qosbatch_core_seconds_total", {"model": "m"}
        )
        assert billed == pytest.approx(len(cpus) * 0.25)
        await b.stop()

    run(scenario())


@pytest.mark.parametrize(
    "make_policy",
    [SloPolicy, lambda: DynamicPolicy(max_batch_size=4, max_queue_delay_ms=0)],
    ids=["slo", "dynamic"],
)
def test_models_sharing_a_core_pool_wait_for_each_others_cores_and_lose_nothing(make_policy):
    """Two models, one pool of 2 CPUs: while one model's batch holds both, the other
    waits (no error, no shed while its deadline allows) and runs once they come back,
    on CPUs it now holds; the cores follow the load."""
    from qosbatch.serve.core_pool import CorePool

    async def scenario():
        pool = CorePool((0, 1))
        table = synthetic_table(LAW, max_batch=8, max_cores=2)
        a_worker, b_worker = FakeWorker(), FakeWorker()
        hog = DynamicPolicy(max_batch_size=1, max_queue_delay_ms=0)  # its worker's 2 cores
        a = Batcher("a", hog, table, [a_worker], (0, 1), Telemetry(), pool=pool)
        b = Batcher("b", make_policy(), table, [b_worker], (0, 1), Telemetry(), pool=pool)
        await a.start()
        await b.start()
        x = np.zeros((1, 2), np.float32)
        # Model a's batch takes both CPUs (its worker's nominal cores).
        fa = a.submit(x, budget_s=1.0)
        await settle()
        assert len(a_worker.batches) == 1 and a_worker.batches[0][1] == (0, 1)
        assert pool.free == 0
        fb = [b.submit(x, budget_s=5.0) for _ in range(3)]
        await settle()
        assert not b_worker.batches and not any(f.done() for f in fb)  # waiting, not failed
        a_worker.finish()
        await settle()
        assert (await fa).status == 200
        assert len(b_worker.batches) == 1  # woken by the pool when a's CPUs came back
        _, cpus, _ = b_worker.batches[0]
        assert set(cpus) <= {0, 1} and pool.free == 2 - len(cpus)
        b_worker.finish()
        answers = await asyncio.gather(*fb)
        assert [ans.status for ans in answers] == [200, 200, 200]
        assert pool.free == 2
        await a.stop()
        await b.stop()

    run(scenario())


def test_records_hold_every_answer_and_replay_as_the_trace_the_server_met(tmp_path):
    from qosbatch.serve.records import RecordWriter
    from qosbatch.workloads.trace import read_trace

    async def scenario():
        writer = RecordWriter(tmp_path / "records.jsonl", origin_s=0.0)
        b, (w,) = make(SloPolicy())
        b.records = writer
        await b.start()
        x = np.zeros((1, 2), np.float32)
        served = b.submit(x, budget_s=0.5, priority=2)
        await settle(0.001)
        shed = b.submit(x, budget_s=0.002)  # 10 ms alone: hopeless
        later = b.submit(x, budget_s=1.0)
        await settle(0.001)
        w.finish()
        await settle(0.05)
        for i in range(len(w.batches)):
            if not w.batches[i][2].done():
                w.finish(i)
        answers = await asyncio.gather(served, shed, later)
        await b.stop()
        writer.close()
        return answers

    answers = run(scenario())
    assert [a.status for a in answers] == [200, 429, 200]
    lines = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert len(lines) == 3  # every answer, in the order answered
    by_budget = {line["slo_ms"]: line for line in lines}
    first = by_budget[500.0]
    assert first["outcome"] == "on_time" and first["batch_size"] == 1 and first["cores"] == 1
    assert first["priority"] == 2 and first["worker"] == 0
    assert first["time_s"] <= first["dispatch_s"] <= first["completion_s"]
    assert by_budget[2.0]["outcome"] == "rejected" and "cannot be met" in by_budget[2.0]["reason"]
    trace = read_trace(tmp_path / "records.jsonl")
    assert len(trace) == 3 and list(trace.slo_ms) == [500.0, 2.0, 1000.0]  # in arrival order
    assert list(trace.priority) == [2, 0, 0] and np.all(np.diff(trace.time_s) >= 0)
