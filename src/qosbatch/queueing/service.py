"""Batch service-time distributions and the arrivals they let in.

The queueing solver needs, for each batch size k, the distribution of the
number of Poisson arrivals during one service of a batch of k:
kappa_k(j) = E[exp(-rate S_k) (rate S_k)^j / j!]. Each family below gives it in
closed form or by quadrature, with the profile's mean s(k) and coefficient of
variation. Pure numpy/scipy.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy import special, stats

Family = Literal["deterministic", "exponential", "gamma", "lognormal"]
FAMILIES: tuple[str, ...] = ("deterministic", "exponential", "gamma", "lognormal")
_HERMITE_NODES = 48  # Gauss-Hermite points for lognormal mixing: exact to ~1e-10 at cv <= 1


@functools.cache
def _hermite() -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    return np.polynomial.hermite.hermgauss(_HERMITE_NODES)


@dataclass(frozen=True)
class ServiceTime:
    """Service time of a batch of k: its mean s(k) in seconds and its family and spread."""

    mean_s: Callable[[int], float]
    family: Family = "deterministic"
    cv: float | Callable[[int], float] = 0.0  # ignored by deterministic (0) and exponential (1)

    def cv_at(self, k: int) -> float:
        if self.family == "deterministic":
            return 0.0
        if self.family == "exponential":
            return 1.0
        return float(self.cv(k) if callable(self.cv) else self.cv)


def as_service_time(service_time: ServiceTime | Callable[[int], float]) -> ServiceTime:
    """A bare callable k -> mean seconds means deterministic service."""
    if isinstance(service_time, ServiceTime):
        if service_time.family not in FAMILIES:
            raise ValueError(
                f"service_time family must be one of {', '.join(FAMILIES)}, "
                f"got {service_time.family!r}"
            )
        return service_time
    if callable(service_time):
        return ServiceTime(service_time)
    raise ValueError(
        f"service_time must be a callable k -> seconds or a ServiceTime, got {service_time!r}"
    )


def arrivals_during_service(
    rate: float, mean_s: float, family: Family, cv: float, n: int
) -> NDArray[np.float64]:
    """kappa(j) for j = 0..n-1: P(j Poisson(rate) arrivals during one service)."""
    j = np.arange(n)
    x = rate * mean_s
    if family == "deterministic" or (cv == 0 and family != "exponential"):
        return np.exp(j * np.log(x) - x - special.gammaln(j + 1))
    if family == "exponential":
        return stats.geom.pmf(j + 1, 1.0 / (1.0 + x))  # geometric on 0, 1, 2, ...
    if family == "gamma":
        shape = 1.0 / cv**2
        return stats.nbinom.pmf(j, shape, shape / (shape + x))
    # lognormal: mix the Poisson pmf over log S by Gauss-Hermite quadrature.
    sigma2 = np.log1p(cv**2)
    mu = np.log(x) - sigma2 / 2
    nodes, weights = _hermite()
    lam = np.exp(mu + np.sqrt(2 * sigma2) * nodes)  # rate * S at each node
    log_pmf = j[:, None] * np.log(lam)[None, :] - lam[None, :] - special.gammaln(j + 1)[:, None]
    return np.exp(log_pmf) @ (weights / np.sqrt(np.pi))
