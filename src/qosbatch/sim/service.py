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

from math import exp

import numpy as np

from qosbatch.latency.table import LatencyTable

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
        self._rng = rng
        sigma = np.sqrt(np.log1p((np.asarray(table.cv) * cv_scale) ** 2))
        shift = (-0.5 * sigma**2).tolist()  # keeps the mean at s(b, c)
        if deterministic:
            sigma = np.zeros_like(sigma)  # (a spread of 0: the mean, exactly)
        # (mean, sigma, shift) of each (c, b): one lookup per batch.
        self._params = [
            list(zip(means, sigmas, shifts, strict=True))
            for means, sigmas, shifts in zip(table.service_s, sigma.tolist(), shift, strict=True)
        ]
        self._z: list[float] = []  # draws left in the current chunk, last one next

    def sample(self, b: int, c: int) -> float:
        mean, sigma, shift = self._params[c][b]
        if sigma == 0.0:
            return mean
        z = self._z
        if not z:
            # A chunk is consumed from its end: reversed, it yields the draws in order.
            z = self._z = self._rng.standard_normal(_CHUNK).tolist()[::-1]
        return mean * exp(sigma * z.pop() + shift)
