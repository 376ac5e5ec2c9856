"""Batch service times with the profile's measured spread.

A batch of b on c cores takes a lognormal time with mean s(b, c) and the
coefficient of variation the profiler measured at that point, so the simulator
sees the same jitter the node showed. (Lognormal: positive, right-skewed like
real latency, and fixed by its mean and cv.) ``deterministic`` turns the spread
off, which is what closed-form checks (M/D/1) need. Normal draws come in
vectorized chunks and are consumed one per batch, so the hot path is a list
lookup and one ``math.exp``.
"""

from __future__ import annotations

import math

import numpy as np

from qosbatch.policies.latency_table import LatencyTable

_CHUNK = 1 << 16


class ServiceSampler:
    """Draws the service time of a batch of ``b`` on ``c`` cores."""

    def __init__(
        self,
        table: LatencyTable,
        rng: np.random.Generator,
        deterministic: bool = False,
        cv_scale: float = 1.0,
    ) -> None:
        self._mean = table.service_s
        self._rng = rng
        self._deterministic = deterministic
        sigma = np.sqrt(np.log1p((np.asarray(table.cv) * cv_scale) ** 2))
        self._sigma = sigma.tolist()
        self._shift = (-0.5 * sigma**2).tolist()  # keeps the mean at s(b, c)
        self._z: list[float] = []
        self._i = 0

    def sample(self, b: int, c: int) -> float:
        mean = self._mean[c][b]
        if self._deterministic:
            return mean
        sigma = self._sigma[c][b]
        if sigma == 0.0:
            return mean
        if self._i >= len(self._z):
            self._z = self._rng.standard_normal(_CHUNK).tolist()
            self._i = 0
        z = self._z[self._i]
        self._i += 1
        return mean * math.exp(sigma * z + self._shift[c][b])
