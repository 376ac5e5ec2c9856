"""Every metric a policy is judged by, computed from per-request records only.

One module, used by the simulator's reports today and by the live server later,
so both are judged by the same code. Definitions (docs/policies.md explains them):

- requests = on_time + late + rejected, always (every request has one record);
- attainment = on_time / requests (a rejection counts as a miss);
- span_s = from the first arrival to the last answer; rates are per second of it:
  goodput = on_time / span, throughput = served (on_time + late) / span;
- p50/p95/p99_ms: latency (answer - arrival) of served requests;
- mean_batch: mean size of the batches that ran (each batch counted once; nan when the
  server does not say its batch sizes);
- core_seconds: sum over batches of cores x service time;
- utility (of the BCEdge kind: throughput rewarded, latency penalised):
  goodput x (1 - 0.5 x mean(latency / budget) over on-time requests). An answer
  at once earns a full point, one at its deadline half a point, a late or rejected
  request nothing; a policy that answers well inside budgets scores higher than
  one that skims every deadline at the same goodput.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from qosbatch.core.requests import LATE, ON_TIME, REJECTED, Record, RecordTable

UTILITY_LATENCY_WEIGHT = 0.5


@dataclass(frozen=True)
class Metrics:
    """The summary of one run (or one model of it)."""

    requests: int
    on_time: int
    late: int
    rejected: int
    attainment: float  # on_time / requests
    goodput: float  # on-time answers per second
    throughput: float  # served (on-time or late) answers per second
    p50_ms: float  # latency of served requests; nan when none was served
    p95_ms: float
    p99_ms: float
    mean_batch: float
    core_seconds: float
    utility: float
    span_s: float

    def to_json(self) -> dict[str, Any]:
        return {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in asdict(self).items()
        }


def summarize(records: RecordTable | Iterable[Record], span_s: float | None = None) -> Metrics:
    """Metrics of ``records``; ``span_s`` overrides the first-arrival-to-last-answer span."""
    table = records if isinstance(records, RecordTable) else RecordTable.from_records(records)
    n = len(table)
    outcome = table.outcome
    on_time = int(np.count_nonzero(outcome == ON_TIME))
    late = int(np.count_nonzero(outcome == LATE))
    rejected = int(np.count_nonzero(outcome == REJECTED))
    served = outcome != REJECTED
    latency = table.completion_s[served] - table.arrival_s[served]
    if span_s is None:
        span_s = (
            float(max(table.completion_s.max(), table.arrival_s.max()) - table.arrival_s.min())
            if n
            else 0.0
        )
    per_s = 1.0 / span_s if span_s > 0 else 0.0
    if latency.size:
        p50, p95, p99 = (float(x) * 1e3 for x in np.percentile(latency, [50, 95, 99]))
        sizes = table.batch_size[served].astype(float)
        # A server that does not say its batch sizes (a peer measured live) has none here.
        mean_batch = float(latency.size / np.sum(1.0 / sizes)) if sizes.min() > 0 else math.nan
        service = table.completion_s[served] - table.dispatch_s[served]
        core_seconds = float(np.sum(table.cores[served] * service / np.maximum(sizes, 1.0)))
    else:
        p50 = p95 = p99 = mean_batch = math.nan
        core_seconds = 0.0
    good = outcome == ON_TIME
    if on_time:
        budget = table.deadline_s[good] - table.arrival_s[good]
        used = (table.completion_s[good] - table.arrival_s[good]) / np.maximum(budget, 1e-12)
        penalty = UTILITY_LATENCY_WEIGHT * float(np.mean(np.clip(used, 0.0, 1.0)))
    else:
        penalty = 0.0
    return Metrics(
        requests=n,
        on_time=on_time,
        late=late,
        rejected=rejected,
        attainment=on_time / n if n else math.nan,
        goodput=on_time * per_s,
        throughput=(on_time + late) * per_s,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        mean_batch=mean_batch,
        core_seconds=core_seconds,
        utility=on_time * per_s * (1.0 - penalty),
        span_s=span_s,
    )


def mean_latency_ms(records: RecordTable) -> float:
    """Mean latency of the served requests (nan when none was): what the queueing model
    predicts, so the benchmarks that check it against runs compare this, not p50."""
    served = records.outcome != REJECTED
    latency = records.completion_s[served] - records.arrival_s[served]
    return float(latency.mean() * 1e3) if latency.size else math.nan


def rejection_reasons(records: RecordTable, top: int = 5) -> list[tuple[str, int]]:
    """The most frequent rejection reasons (numbers stripped, so alike reasons group)."""
    import re

    reasons = records.reason[records.outcome == REJECTED]
    counts: dict[str, int] = {}
    for text in reasons:
        key = re.sub(r"-?\d+(\.\d+)?", "#", str(text))
        counts[key] = counts.get(key, 0) + 1
    return sorted(counts.items(), key=lambda kv: -kv[1])[:top]
