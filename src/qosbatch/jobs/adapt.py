"""Drift: measured batch times against the profile's, judged over a window of batches.

A job planned from a profile relies on its batch times; a machine busier or
slower than when it was profiled (or another machine altogether) breaks the
plan silently. The watch compares the median of the last ``window`` full
batches with the prediction and reports the ratio once it leaves
[1 - threshold, 1 + threshold]; the runner then scales every prediction by it
and re-plans. The first batches after a change of batch size or cores are
skipped: a new thread count or tensor shape pays one-time costs (thread pool,
kernel selection) that are no part of the steady state.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field


@dataclass
class DriftWatch:
    threshold: float = 0.2
    window: int = 8
    warmup: int = 2
    _skip: int = field(default=0, init=False)
    _ratios: list[float] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self._skip = self.warmup

    def reset(self) -> None:
        """Start over: the configuration changed."""
        self._skip = self.warmup
        self._ratios.clear()

    def observe(self, measured_s: float, predicted_s: float) -> float | None:
        """Add one full batch; the measured/predicted ratio when it has drifted, else None."""
        if self._skip > 0:
            self._skip -= 1
            return None
        self._ratios.append(measured_s / predicted_s)
        if len(self._ratios) < self.window:
            return None
        ratio = statistics.median(self._ratios[-self.window :])
        if abs(ratio - 1.0) > self.threshold:
            self.reset()
            return ratio
        del self._ratios[: -self.window]
        return None
