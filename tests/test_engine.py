"""The driver core both clocks share: a batch's life in the queue, and broken decisions."""

from __future__ import annotations

import pytest

from qosbatch.core.requests import Request
from qosbatch.policies.base import PolicyContractError, Reject
from qosbatch.testing import make_queue


def queue_of(n: int, cores: int = 2):
    reqs = [Request(i, "m", 0.01 * i, 1.0 - 0.1 * i) for i in range(n)]
    return make_queue(reqs, now_s=0.1, worker_cores=(cores,))


def test_a_batch_holds_its_worker_and_cores_until_it_finishes_and_counts_its_late():
    q = queue_of(4)
    q.edf(4)  # (build the EDF order, as slo does)
    q.start_batch([3, 2], worker=0, cores=2, now=0.1)
    w = q.workers[0]
    assert len(q) == 2 and q.edf(4) == [1, 0] and q.fifo(4) == [0, 1]
    assert not w.idle and w.running_cores == 2 and q.free_cores == 0 and q.idle_workers == 0
    assert w.busy_until_s == pytest.approx(0.1 + q.latency.s(2, 2))
    done = q.finish_batch(0, now=0.75)  # request 3's deadline (0.7) passed, request 2's (0.8) not
    assert done.requests == [3, 2] and done.cores == 2 and done.dispatch_s == 0.1
    assert done.late == 1 and done.completion_s == 0.75
    assert w.idle and q.free_cores == 2 and q.idle_workers == 1 and not w.batch


def test_a_worker_that_died_with_its_batch_stays_out_until_the_driver_says():
    q = queue_of(1)
    q.start_batch([0], worker=0, cores=1, now=0.1)
    q.finish_batch(0, now=0.2, back=False)
    assert not q.workers[0].idle and q.idle_workers == 0 and q.free_cores == 2


@pytest.mark.parametrize("ids", [[0, 1, 0], [0, 1, 99]], ids=["twice", "not waiting"])
def test_a_decision_naming_a_request_twice_or_not_waiting_changes_nothing(ids):
    q = queue_of(3)
    before = (q.fifo(3), q.edf(3), q.free_cores, q.idle_workers)
    with pytest.raises(PolicyContractError, match="not waiting"):
        q.start_batch(ids, worker=0, cores=1, now=0.1)
    with pytest.raises(PolicyContractError, match="not waiting"):
        q.reject(Reject(ids, "why"))
    assert (q.fifo(3), q.edf(3), q.free_cores, q.idle_workers) == before
    assert [q.deadline_s(r) for r in (0, 1, 2)] == [1.0, 0.9, 0.8]


def test_a_dispatch_to_a_busy_worker_is_refused_before_any_change():
    q = queue_of(3)
    q.start_batch([0], worker=0, cores=2, now=0.1)
    with pytest.raises(PolicyContractError, match="busy"):
        q.start_batch([1], worker=0, cores=1, now=0.1)
    assert len(q) == 2
    with pytest.raises(PolicyContractError, match="a Reject naming no request"):
        q.reject(Reject([], "nothing"))
