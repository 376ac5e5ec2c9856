"""Drift: measured batch times against the profile's, judged over windows of batches.

A job planned from a profile relies on its batch times; a machine busier or
slower than when it was profiled (or another machine altogether) breaks the
plan silently. The watch compares the median of a window of full batches (at
least ``window`` of them and ``min_seconds`` of their time) with the prediction
and reports the ratio once it leaves [1 - threshold, 1 + threshold]; the runner
then scales every prediction by it and re-plans. The first batches after a
change are skipped: a new thread count or tensor shape pays one-time costs
(thread pool, kernel selection) that are no part of the steady state.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass
class DriftWatch:
    threshold: float = 0.2
    window: int = 16  # batches, at least
    min_seconds: float = 5.0  # of measured batch time, at least: bursts of a busy
    # machine last seconds, and a window shorter than them reports each burst as drift
    warmup: int = 2
    _skip: int = field(default=0, init=False)
    _ratios: list[float] = field(default_factory=list, init=False)
    _seconds: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self._skip = self.warmup

    def reset(self) -> None:
        """Start over: the configuration changed."""
        self._skip = self.warmup
        self._ratios.clear()
        self._seconds = 0.0

    def observe(self, measured_s: float, predicted_s: float) -> float | None:
        """Add one full batch; the measured/predicted ratio when it has drifted, else None.

        Windows do not overlap: each verdict is on batches no earlier verdict saw.
        """
        if self._skip > 0:
            self._skip -= 1
            return None
        self._ratios.append(measured_s / predicted_s)
        self._seconds += measured_s
        if len(self._ratios) < self.window or self._seconds < self.min_seconds:
            return None
        ratio = statistics.median(self._ratios)
        self._ratios.clear()
        self._seconds = 0.0
        if abs(ratio - 1.0) > self.threshold:
            self._skip = self.warmup
            return ratio
        return None
