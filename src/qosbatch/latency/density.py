"""The flops(NN) * p / c representation: latency from work, density and compute power.

From the CPU batch-inference profiler paper: a batch of b samples takes
``flops * b * p(b) / c`` seconds, where flops is one sample's forward-pass FLOPs
(counted), c the node's float32 GEMM throughput at the given core count (measured
by a micro-benchmark in FLOP/s) and p the model's *processing density*: how many
times slower than that GEMM the model turns its FLOPs into results. p depends on
the batch (small batches use the hardware poorly) but not, to first order, on the
node, which is what lets a profile taken on one node predict another from that
node's c alone. Pure numpy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.interpolate import PchipInterpolator


def compute_power_flops(gflops_by_cores: Mapping[int, float], cores: ArrayLike) -> NDArray:
    """c in FLOP/s for each core count; unmeasured counts scale from the nearest measured."""
    known = np.array(sorted(gflops_by_cores), dtype=float)
    values = np.array([gflops_by_cores[int(k)] for k in known], dtype=float)
    c = np.atleast_1d(np.asarray(cores, dtype=float))
    nearest = known[np.abs(known[None, :] - c[:, None]).argmin(axis=1)]
    at_nearest = values[np.searchsorted(known, nearest)]
    exact = np.isin(c, known)
    out = np.where(exact, at_nearest, at_nearest * c / nearest) * 1e9
    return out.reshape(np.shape(cores))


def _interp_log_log(x: NDArray, xs: NDArray, log_ys: NDArray) -> NDArray:
    """exp of a monotone cubic (PCHIP) through (log2 b, log p), flat outside the fitted sizes.

    PCHIP never overshoots between points, so a prediction stays between its
    neighbours' densities; in log-log space a power law between two sizes is exact.
    """
    if len(xs) == 1:
        return np.full_like(x, np.exp(log_ys[0]))
    clipped = np.clip(x, xs[0], xs[-1])
    return np.exp(PchipInterpolator(xs, log_ys)(clipped))


@dataclass(frozen=True)
class DensityModel:
    """s(b, c) = flops_per_sample * b * p(b, cores) / c(cores).

    p is fitted per batch size at each profiled core count and interpolated
    smoothly in log-log space between fitted sizes (flat beyond them). At a core count
    that was not profiled, the p of the nearest profiled count is used with that
    count's compute power: this is the representation's prediction for an
    unseen configuration, and its error is reported as the cross-core error.
    """

    flops_per_sample: float
    gflops_by_cores: Mapping[int, float]  # the node's c, per core count, GFLOP/s
    # p per profiled core count: cores -> ((batch sizes ascending), (p at each))
    density_table: Mapping[int, tuple[tuple[int, ...], tuple[float, ...]]]

    name = "density"

    def density(self, batch: ArrayLike, cores: ArrayLike) -> NDArray[np.float64]:
        b, c = np.broadcast_arrays(np.asarray(batch, dtype=float), np.asarray(cores, dtype=float))
        known = np.array(sorted(self.density_table), dtype=float)
        nearest = known[np.abs(known[None, :] - c.reshape(-1)[:, None]).argmin(axis=1)]
        out = np.empty(b.size)
        flat_b = np.log2(b.reshape(-1))
        for k in np.unique(nearest):
            sizes, dens = self.density_table[int(k)]
            sel = nearest == k
            out[sel] = _interp_log_log(flat_b[sel], np.log2(sizes), np.log(dens))
        return out.reshape(b.shape)

    def predict_s(self, batch: ArrayLike, cores: ArrayLike) -> NDArray[np.float64]:
        b = np.asarray(batch, dtype=float)
        c = compute_power_flops(self.gflops_by_cores, cores)
        return self.flops_per_sample * b * self.density(b, cores) / c

    def on_node(self, gflops_by_cores: Mapping[int, float]) -> DensityModel:
        """The same model and density on another node: only its compute power changes."""
        return DensityModel(self.flops_per_sample, dict(gflops_by_cores), self.density_table)

    @classmethod
    def fit(
        cls,
        flops_per_sample: float,
        gflops_by_cores: Mapping[int, float],
        batch: ArrayLike,
        cores: ArrayLike,
        seconds: ArrayLike,
    ) -> DensityModel:
        """p at each measured (batch, cores): the measured time over the ideal GEMM time."""
        if not flops_per_sample or flops_per_sample <= 0:
            raise ValueError("flops*p/c needs the model's FLOPs per sample, which were not counted")
        b = np.asarray(batch, dtype=float)
        c = np.asarray(cores, dtype=int)
        s = np.asarray(seconds, dtype=float)
        p = s * compute_power_flops(gflops_by_cores, c) / (flops_per_sample * b)
        table: dict[int, tuple[tuple[int, ...], tuple[float, ...]]] = {}
        for k in np.unique(c):
            sel = c == k
            sizes = np.unique(b[sel])
            # Geometric mean over repeated sizes: it minimises squared log (relative) error.
            dens = [float(np.exp(np.mean(np.log(p[sel][b[sel] == size])))) for size in sizes]
            table[int(k)] = (tuple(int(x) for x in sizes), tuple(dens))
        return cls(float(flops_per_sample), dict(gflops_by_cores), table)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.name,
            "flops_per_sample": self.flops_per_sample,
            "gflops_by_cores": {str(k): v for k, v in sorted(self.gflops_by_cores.items())},
            "density": {
                str(c): {str(b): p for b, p in zip(*self.density_table[c], strict=True)}
                for c in sorted(self.density_table)
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DensityModel:
        table = {}
        for c, by_batch in data["density"].items():
            pairs = sorted((int(b), float(p)) for b, p in by_batch.items())
            table[int(c)] = (tuple(b for b, _ in pairs), tuple(p for _, p in pairs))
        return cls(
            float(data["flops_per_sample"]),
            {int(k): float(v) for k, v in data["gflops_by_cores"].items()},
            table,
        )
