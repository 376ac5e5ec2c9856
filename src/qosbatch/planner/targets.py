"""Latency targets and the percentile reading's pieces: L_q = S_q + tau_q * w_q.

What a replica must meet (``Target``: the mean or a percentile of latency within
an SLO), the calibrated tail factors tau_q, and the two quantile helpers the
capacity curve (``qosbatch.planner.capacity``, whose docstring derives the
formula) builds S_q and w_q from. Apart from the curve because the plan, the
workload reader and the verifier need the target without the queueing model.

Pure numpy/scipy.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from qosbatch.core.errors import UserError

# tau_q of L_q = S_q + tau_q * w_q. Calibrated by benchmarks/planner_tail.py
# (qosbatch.planner.calibrate.calibrate_tail_factors) against the simulator; see
# docs/planner.md for the grid and the date. Percentiles between these interpolate
# in log(1 - q).
TAIL_FACTORS: dict[float, float] = {90.0: 1.40, 95.0: 1.45, 99.0: 1.65}
# The calibration lets a predicted percentile capacity exceed the simulated one by this
# share (see calibrate.tail_factors); plans carry as much headroom by default.
OPTIMISM_TOLERANCE = 0.03


@dataclass(frozen=True)
class Target:
    """A latency objective: the mean, or a percentile, of latency at most ``slo_s``."""

    slo_s: float
    percentile: float | None = None  # None: the mean

    def __post_init__(self) -> None:
        if not (math.isfinite(self.slo_s) and self.slo_s > 0):
            raise UserError(f"the SLO must be a duration > 0, got {self.slo_s} s")
        if self.percentile is not None:
            tail_factor(self.percentile)  # refuse an uncalibrated percentile now

    @property
    def label(self) -> str:
        if self.percentile is None:
            return "mean"
        return f"p{self.percentile:g}"


def tail_factor(percentile: float) -> float:
    """tau_q for percentile q, interpolated in log(1 - q) between calibrated points."""
    known = sorted(TAIL_FACTORS)
    if not known[0] <= percentile <= known[-1]:
        raise UserError(
            f"percentile must be between {known[0]:g} and {known[-1]:g} "
            f"(where the tail factor is calibrated), got {percentile:g}"
        )
    xs = [math.log(1 - q / 100) for q in known][::-1]  # ascending
    ys = [TAIL_FACTORS[q] for q in known][::-1]
    return float(np.interp(math.log(1 - percentile / 100), xs, ys))


def lognormal_quantile_factor(cv: float, percentile: float) -> float:
    """The q-quantile of a lognormal time over its mean, for coefficient of variation cv."""
    if cv <= 0:
        return 1.0
    sigma = math.sqrt(math.log1p(cv * cv))
    return math.exp(_normal_quantile(percentile) * sigma - sigma * sigma / 2)


@functools.cache
def _normal_quantile(percentile: float) -> float:
    return float(norm.ppf(percentile / 100))


def exponential_wait_quantile(mean_wait_s: float, waits: float, percentile: float) -> float:
    """q-quantile of a wait that is 0 with probability 1 - ``waits``, else exponential.

    The exponential's mean is ``mean_wait_s / waits``, so that the overall mean is
    the queueing model's mean wait.
    """
    miss = 1.0 - percentile / 100
    if waits <= miss or mean_wait_s <= 0:
        return 0.0
    return mean_wait_s / waits * math.log(waits / miss)
