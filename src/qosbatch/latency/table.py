"""s(b, c) and its spread as a lookup table of Python floats.

Policies ask for the service time of a batch many times per decision; a numpy
call costs microseconds per scalar, a list lookup tens of nanoseconds. So the
fitted latency model is evaluated once, over every batch size up to
``max_batch`` and every core count up to ``max_cores``, and kept as lists:
``service_s[c][b]`` seconds and ``cv[c][b]`` (coefficient of variation measured
by the profiler, interpolated in log2(b) between measured sizes, nearest core
count where that count was not measured). Index 0 of each is unused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qosbatch.core.errors import UserError
from qosbatch.core.profile import Profile
from qosbatch.latency import LatencyModel, latency_model

DEFAULT_MAX_BATCH = 128


@dataclass(frozen=True)
class LatencyTable:
    """Mean batch service time (seconds) and its cv, for b <= max_batch and c <= max_cores."""

    service_s: list[list[float]]  # [cores][batch]
    cv: list[list[float]]  # [cores][batch]
    max_batch: int
    max_cores: int

    def s(self, batch: int, cores: int) -> float:
        return self.service_s[cores][batch]

    def spread(self, batch: int, cores: int) -> float:
        return self.cv[cores][batch]

    def scaled(self, factor: float) -> LatencyTable:
        """Every service time times ``factor`` (a slower or faster node; drift in tests)."""
        return LatencyTable(
            [[s * factor for s in row] for row in self.service_s],
            self.cv,
            self.max_batch,
            self.max_cores,
        )

    @classmethod
    def from_function(
        cls,
        predict_s: Callable[[NDArray[np.float64], NDArray[np.float64]], ArrayLike],
        max_batch: int,
        max_cores: int,
        cv: float | Callable[[NDArray[np.float64], NDArray[np.float64]], ArrayLike] = 0.0,
    ) -> LatencyTable:
        """Tabulate ``predict_s(batch, cores)`` (vectorized) and a cv (constant or function)."""
        if max_batch < 1 or max_cores < 1:
            raise UserError(f"max_batch and max_cores must be >= 1, got {max_batch}, {max_cores}")
        b, c = np.meshgrid(np.arange(max_batch + 1.0), np.arange(max_cores + 1.0))
        b[:, 0] = 1.0  # index 0 is padding; keep it finite
        c[0, :] = 1.0
        # Models are called on flat arrays: not every one broadcasts over 2-D grids.
        flat_b, flat_c = b.ravel(), c.ravel()
        s = np.asarray(predict_s(flat_b, flat_c), dtype=float).reshape(b.shape)
        spread = np.broadcast_to(
            np.asarray(cv(flat_b, flat_c) if callable(cv) else cv, dtype=float), flat_b.shape
        ).reshape(b.shape)
        if not np.all(np.isfinite(s[1:, 1:])) or np.any(s[1:, 1:] <= 0):
            raise UserError("the latency model predicts a non-positive or infinite service time")
        # Measured batch times are not always monotone in b (oneDNN picks kernels per
        # shape: a batch of 7 can take longer than one of 8). A batch can always be
        # padded up to a faster larger size, so s(b) is the cheapest s(b') with b' >= b;
        # policies may then assume "bigger never finishes sooner".
        s[:, 1:] = np.minimum.accumulate(s[:, :0:-1], axis=1)[:, ::-1]
        return cls(s.tolist(), np.clip(spread, 0.0, None).tolist(), max_batch, max_cores)

    @classmethod
    def from_model(
        cls, model: LatencyModel, max_batch: int, max_cores: int, cv: float = 0.0
    ) -> LatencyTable:
        return cls.from_function(model.predict_s, max_batch, max_cores, cv)

    @classmethod
    def from_profile(
        cls,
        profile: Profile,
        max_cores: int,
        max_batch: int = DEFAULT_MAX_BATCH,
        kind: str = "auto",
    ) -> LatencyTable:
        """The profile's fitted latency model with its measured spread."""
        model = latency_model(profile, kind)  # type: ignore[arg-type]
        return cls.from_function(model.predict_s, max_batch, max_cores, _cv_function(profile))


def _cv_function(
    profile: Profile,
) -> Callable[[NDArray[np.float64], NDArray[np.float64]], NDArray[np.float64]]:
    """cv at (b, c): linear in log2(b) between measured sizes at the nearest measured c."""
    by_cores: dict[int, tuple[NDArray[np.float64], NDArray[np.float64]]] = {}
    for cores in profile.core_counts:
        pts = sorted((m.batch, m.cv) for m in profile.measurements if m.cores == cores)
        by_cores[cores] = (
            np.log2([float(p[0]) for p in pts]),
            np.array([max(float(p[1]), 0.0) for p in pts]),
        )
    measured = np.array(sorted(by_cores))

    def cv(b: NDArray[np.float64], c: NDArray[np.float64]) -> NDArray[np.float64]:
        out = np.zeros(np.shape(b))
        nearest = measured[np.abs(measured[None, :] - np.ravel(c)[:, None]).argmin(axis=1)]
        nearest = nearest.reshape(np.shape(c))
        for cores, (xs, ys) in by_cores.items():
            sel = nearest == cores
            out[sel] = np.interp(np.log2(b[sel]), xs, ys)
        return out

    return cv
