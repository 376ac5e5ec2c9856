"""Arrival processes: when requests arrive, as sorted numpy arrays of seconds.

Every generator takes a numpy Generator (the only randomness) and returns arrival
times in [0, duration_s), sorted, vectorized: a million arrivals take milliseconds.
Rates are requests per second.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray


def _uniform_sorted(rng: np.random.Generator, rate: float, start: float, end: float) -> NDArray:
    """A homogeneous Poisson process on [start, end): a Poisson count, uniformly placed."""
    if rate <= 0 or end <= start:
        return np.empty(0)
    n = rng.poisson(rate * (end - start))
    return np.sort(rng.uniform(start, end, n))


def poisson(rng: np.random.Generator, rate: float, duration_s: float) -> NDArray[np.float64]:
    """Poisson arrivals at ``rate`` for ``duration_s`` seconds."""
    return _uniform_sorted(rng, rate, 0.0, duration_s)


def poisson_count(rng: np.random.Generator, rate: float, requests: int) -> NDArray[np.float64]:
    """Exactly ``requests`` Poisson arrivals at ``rate`` (cumulated exponential gaps)."""
    return np.cumsum(rng.exponential(1.0 / rate, requests))


def mmpp(
    rng: np.random.Generator,
    rates: Sequence[float],
    mean_dwell_s: Sequence[float],
    duration_s: float,
) -> NDArray[np.float64]:
    """Markov-modulated Poisson: state i lasts Exp(mean_dwell_s[i]) at rate rates[i].

    States follow each other cyclically (0, 1, ..., k-1, 0, ...), which for two
    states is the usual on/off burst model; the run starts in state 0. The long-run
    mean rate is sum(rate_i * dwell_i) / sum(dwell_i) (see ``mmpp_mean_rate``).
    """
    parts = []
    t, state = 0.0, 0
    while t < duration_s:
        end = min(duration_s, t + rng.exponential(mean_dwell_s[state]))
        parts.append(_uniform_sorted(rng, rates[state], t, end))
        t, state = end, (state + 1) % len(rates)
    return np.concatenate(parts) if parts else np.empty(0)


def mmpp_mean_rate(rates: Sequence[float], mean_dwell_s: Sequence[float]) -> float:
    return float(np.dot(rates, mean_dwell_s) / np.sum(mean_dwell_s))


def diurnal(
    rng: np.random.Generator, rate: float, amplitude: float, period_s: float, duration_s: float
) -> NDArray[np.float64]:
    """Rate ``rate * (1 + amplitude * sin(2 pi t / period_s))``, by thinning a faster process."""
    peak = rate * (1.0 + amplitude)
    t = _uniform_sorted(rng, peak, 0.0, duration_s)
    keep = rng.uniform(0.0, peak, len(t)) < rate * (
        1.0 + amplitude * np.sin(2 * math.pi * t / period_s)
    )
    return t[keep]


def step(
    rng: np.random.Generator, rates: Sequence[float], at_s: Sequence[float], duration_s: float
) -> NDArray[np.float64]:
    """Piecewise-constant Poisson: ``rates[i]`` from ``at_s[i]`` until the next change."""
    ends = [*at_s[1:], duration_s]
    parts = [
        _uniform_sorted(rng, r, a, min(e, duration_s))
        for r, a, e in zip(rates, at_s, ends, strict=True)
    ]
    return np.concatenate(parts) if parts else np.empty(0)


def step_mean_rate(rates: Sequence[float], at_s: Sequence[float], duration_s: float) -> float:
    ends = [*at_s[1:], duration_s]
    spans = [max(0.0, min(e, duration_s) - a) for a, e in zip(at_s, ends, strict=True)]
    return float(np.dot(rates, spans) / duration_s)
