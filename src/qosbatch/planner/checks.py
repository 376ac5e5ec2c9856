"""Did a model meet its target? One rule for a plan's verification and the slo search.

The ``slo`` planner finds a replica's capacity by simulating it (``slo_options``)
and ``--verify`` replays the whole plan (``verify``); both ask the same question
of a run's latencies, so a capacity the planner accepts is one the verification
would accept too. Pure numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from qosbatch.core.requests import ON_TIME, REJECTED, RecordTable
from qosbatch.planner.targets import Target

# A mean target also bounds the share turned away: a server that sheds half its load can
# keep any mean. At most 1% rejected, as an SLO-aware operator would accept.
MAX_REJECTED_FOR_MEAN = 0.01


def on_time_floor(target: Target) -> float:
    """The least share of requests a met target answers on time: its percentile (a mean
    target: the share it answers at all), so a plan's cost per on-time request is at most
    its cost over this share of the offered rate."""
    if target.percentile is None:
        return 1.0 - MAX_REJECTED_FOR_MEAN
    return target.percentile / 100


@dataclass(frozen=True)
class ModelCheck:
    """One model's simulated outcome against its target."""

    model: str
    target: Target
    requests: int
    attainment: float  # share answered within the SLO (a rejection is a miss)
    rejected: int
    mean_ms: float  # served requests
    p99_ms: float  # all requests, a rejection counted as infinitely late
    statistic_ms: float  # what the target bounds: the mean, or its percentile
    met: bool

    def line(self) -> str:
        mark = "meets" if self.met else "MISSES"
        return (
            f"{self.model}: attainment {self.attainment:.2%}, {self.target.label} "
            f"{self.statistic_ms:.1f} ms vs SLO {self.target.slo_s * 1e3:g} ms, "
            f"{self.rejected} rejected of {self.requests}: {mark} its target"
        )


def record_outcomes(
    records: RecordTable,
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.bool_]]:
    """Per record of a run: its request id, its latency (inf where it was rejected) and
    whether it was on time: what ``check_target`` reads, placed by request id."""
    served = records.outcome != REJECTED
    latency = np.where(served, records.completion_s - records.arrival_s, np.inf)
    return records.request_id, latency, records.outcome == ON_TIME


def check_target(
    model: str, target: Target, latency: NDArray[np.float64], on_time: NDArray[np.bool_]
) -> ModelCheck:
    """``latency``: seconds per request, inf where it was rejected; ``on_time`` per request.

    A percentile target is met when that share of requests is on time (a rejection is
    a miss); a mean target when the served requests' mean is within the SLO and at
    most ``MAX_REJECTED_FOR_MEAN`` were turned away.
    """
    served = np.isfinite(latency)
    mean_ms = float(latency[served].mean() * 1e3) if served.any() else math.inf
    p99_ms = float(np.percentile(latency, 99, method="higher") * 1e3)
    attainment = float(on_time.mean())
    if target.percentile is None:
        statistic = mean_ms
        met = mean_ms <= target.slo_s * 1e3 and not (~served).mean() > MAX_REJECTED_FOR_MEAN
    else:
        statistic = float(np.percentile(latency, target.percentile, method="higher") * 1e3)
        met = attainment >= target.percentile / 100
    return ModelCheck(
        model,
        target,
        int(latency.size),
        attainment,
        int((~served).sum()),
        mean_ms,
        p99_ms,
        statistic,
        met,
    )
