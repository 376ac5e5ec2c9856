"""A server's per-request overhead in simulation: the time between a client and the queue.

Live, a request reaches the policy's queue only after its bytes arrived and were
decoded, and its answer reaches the client only after it was encoded and sent;
the server judges deadlines from its own arrival, the client from its send.
The simulator's queue is the server's, so to compare with a client's view
(``qosbatch bench``) the trace is shifted by the inbound overhead before it is
simulated, and the records are shifted back and judged at the client after:
the same request, late by the same rule, as the live run judges it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from qosbatch.core.requests import LATE, ON_TIME, REJECTED, RecordTable
from qosbatch.workloads.trace import Trace


def server_side(trace: Trace, inbound_s: float) -> Trace:
    """The trace as the server's queue sees it: every request ``inbound_s`` later."""
    return dataclasses.replace(trace, time_s=trace.time_s + inbound_s)


def client_side(records: RecordTable, inbound_s: float, outbound_s: float) -> RecordTable:
    """Records of a ``server_side`` simulation as the client sees them, outcomes re-judged."""
    arrival = records.arrival_s - inbound_s
    deadline = records.deadline_s - inbound_s
    served = records.outcome != REJECTED
    completion = records.completion_s + outbound_s  # (a rejection travels back too)
    outcome = np.where(served, np.where(completion <= deadline, ON_TIME, LATE), REJECTED)
    return dataclasses.replace(
        records,
        arrival_s=arrival,
        deadline_s=deadline,
        completion_s=completion,
        outcome=outcome.astype(np.int64),
    )
