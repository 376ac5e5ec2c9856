"""Per-request latency budgets (SLOs) in milliseconds, one per arrival.

Fixed, uniform in [lo, hi], or network-delay style as in dynamic-SLO serving
(Sponge): every request has the same end-to-end budget ``base_ms``, but the
network already spent a lognormal delay of it before the request reached the
server, so the server sees ``base_ms - delay``. A budget the network ate whole
is kept tiny but positive (``MIN_BUDGET_MS``): the request still arrives and must
still be answered (by a rejection, with a good policy).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

MIN_BUDGET_MS = 1e-3


def fixed(n: int, slo_ms: float) -> NDArray[np.float64]:
    return np.full(n, float(slo_ms))


def uniform(rng: np.random.Generator, n: int, lo_ms: float, hi_ms: float) -> NDArray[np.float64]:
    return rng.uniform(lo_ms, hi_ms, n)


def netdelay(
    rng: np.random.Generator, n: int, base_ms: float, delay_ms: float, delay_sigma: float
) -> NDArray[np.float64]:
    """``base_ms`` minus a lognormal delay with median ``delay_ms`` and log-sd ``delay_sigma``."""
    delay = delay_ms * np.exp(delay_sigma * rng.standard_normal(n))
    return np.maximum(base_ms - delay, MIN_BUDGET_MS)
