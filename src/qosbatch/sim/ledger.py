"""The run's ledger turned into records: one row per request, built after the run."""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import chain

import numpy as np

from qosbatch.core.requests import LATE, ON_TIME, REJECTED, RecordTable
from qosbatch.workloads.trace import Trace


@dataclass(frozen=True)
class Rejections:
    """Rejected requests (``ids``), each with the index (``codes``) of its reason and time."""

    ids: list[int]
    codes: list[int]
    reasons: list[str]
    times_s: list[float]


def build_records(
    trace: Trace,
    batches: list[tuple[float, float, int, int, int]],
    batch_of: list[int],
    rejections: Rejections,
) -> RecordTable:
    """Every request's record, assembled with numpy once the run is over.

    During the run a request is only a slot: the index of its batch in ``batches``
    (dispatch, completion, size, cores, worker), or of its rejection. Nothing per
    request is built while events are processed; this turns the slots into columns.
    """
    n = len(trace)
    batch_of_ = np.array(batch_of, dtype=np.int64)
    served = batch_of_ >= 0
    count = len(batches)
    table = np.fromiter(chain.from_iterable(batches), dtype=float, count=5 * count).reshape(
        count, 5
    )  # (integers up to 2**53 are exact as floats)

    def per_batch(column: int, fill: float) -> np.ndarray:
        # The batch's value per request; fill (appended last: index -1) if not served.
        return np.append(table[:, column], fill)[batch_of_]

    dispatch_s = per_batch(0, math.nan)
    completion_s = per_batch(1, 0.0)
    reason = np.full(n, "", dtype=object)
    if rejections.ids:
        rejected = np.array(rejections.ids, dtype=np.int64)
        codes = np.array(rejections.codes, dtype=np.int64)
        completion_s[rejected] = np.array(rejections.times_s, dtype=float)[codes]
        reason[rejected] = np.array(rejections.reasons, dtype=object)[codes]
    deadline_s = trace.deadline_s  # (the values the run's deadlines were listed from)
    outcome = np.where(served, np.where(completion_s <= deadline_s, ON_TIME, LATE), REJECTED)
    return RecordTable(
        models=trace.models,
        request_id=np.arange(n, dtype=np.int64),
        model=trace.model.astype(np.int64),
        arrival_s=trace.time_s.astype(float),
        deadline_s=deadline_s,
        dispatch_s=dispatch_s,
        completion_s=completion_s,
        outcome=outcome.astype(np.int64),
        batch_size=per_batch(2, 0).astype(np.int64),
        cores=per_batch(3, 0).astype(np.int64),
        worker=per_batch(4, -1).astype(np.int64),
        reason=reason,
    )
