"""The Amdahl-like latency model s(b, c) = (alpha*b + beta)/c + gamma*b + delta.

alpha is parallel work per sample, beta parallel work per batch, gamma serial
work per sample (copies, Python), delta a fixed per-call overhead. All four are
non-negative by construction (non-negative least squares), so the model never
predicts a batch that gets faster with more samples or fewer cores, which is
what makes it safe to extrapolate from. Pure numpy/scipy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import nnls


@dataclass(frozen=True)
class AmdahlModel:
    """Batch service time in seconds from batch size and core count."""

    alpha: float  # seconds per sample, divided among cores
    beta: float  # seconds per batch, divided among cores
    gamma: float  # seconds per sample, serial
    delta: float  # seconds per batch, serial

    name = "amdahl"

    def predict_s(self, batch: ArrayLike, cores: ArrayLike) -> NDArray[np.float64]:
        b = np.asarray(batch, dtype=float)
        c = np.asarray(cores, dtype=float)
        return (self.alpha * b + self.beta) / c + self.gamma * b + self.delta

    @classmethod
    def fit(cls, batch: ArrayLike, cores: ArrayLike, seconds: ArrayLike) -> AmdahlModel:
        """Least squares on relative error, so a 2 ms batch counts as much as a 2 s one."""
        b = np.asarray(batch, dtype=float)
        c = np.asarray(cores, dtype=float)
        s = np.asarray(seconds, dtype=float)
        if b.size < 1:
            raise ValueError("cannot fit a latency model to no measurements")
        design = np.column_stack([b / c, 1.0 / c, b, np.ones_like(b)]) / s[:, None]
        coef, _ = nnls(design, np.ones_like(s))
        return cls(*(float(x) for x in coef))

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.name,
            "alpha_s": self.alpha,
            "beta_s": self.beta,
            "gamma_s": self.gamma,
            "delta_s": self.delta,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AmdahlModel:
        return cls(data["alpha_s"], data["beta_s"], data["gamma_s"], data["delta_s"])
