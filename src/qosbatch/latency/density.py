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


@dataclass(frozen=True)
class DensityModel:
    """s(b, c) = flops_per_sample * b * p(b) / c(cores), p interpolated in log2(b)."""

    flops_per_sample: float
    gflops_by_cores: Mapping[int, float]  # the node's c, per core count, GFLOP/s
    batches: tuple[int, ...]  # batch sizes p was fitted at, ascending
    densities: tuple[float, ...]  # p at each of those batch sizes

    name = "density"

    def density(self, batch: ArrayLike) -> NDArray[np.float64]:
        """p(b): piecewise linear in log2(b) between fitted sizes, flat beyond them."""
        x = np.log2(np.asarray(batch, dtype=float))
        return np.interp(x, np.log2(self.batches), self.densities)

    def predict_s(self, batch: ArrayLike, cores: ArrayLike) -> NDArray[np.float64]:
        b = np.asarray(batch, dtype=float)
        c = compute_power_flops(self.gflops_by_cores, cores)
        return self.flops_per_sample * b * self.density(b) / c

    def on_node(self, gflops_by_cores: Mapping[int, float]) -> DensityModel:
        """The same model and density on another node: only its compute power changes."""
        return DensityModel(
            self.flops_per_sample, dict(gflops_by_cores), self.batches, self.densities
        )

    @classmethod
    def fit(
        cls,
        flops_per_sample: float,
        gflops_by_cores: Mapping[int, float],
        batch: ArrayLike,
        cores: ArrayLike,
        seconds: ArrayLike,
    ) -> DensityModel:
        """p per batch size as the geometric mean over the core counts measured at it.

        The geometric mean minimises squared log error, the relative error users
        read latency predictions in.
        """
        if not flops_per_sample or flops_per_sample <= 0:
            raise ValueError("flops*p/c needs the model's FLOPs per sample, which were not counted")
        b = np.asarray(batch, dtype=float)
        s = np.asarray(seconds, dtype=float)
        c = compute_power_flops(gflops_by_cores, cores)
        p = s * c / (flops_per_sample * b)
        sizes = np.unique(b)
        dens = [float(np.exp(np.mean(np.log(p[b == size])))) for size in sizes]
        return cls(
            float(flops_per_sample),
            dict(gflops_by_cores),
            tuple(int(x) for x in sizes),
            tuple(dens),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.name,
            "flops_per_sample": self.flops_per_sample,
            "gflops_by_cores": {str(k): v for k, v in sorted(self.gflops_by_cores.items())},
            "density_by_batch": {
                str(b): p for b, p in zip(self.batches, self.densities, strict=True)
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DensityModel:
        by_batch = sorted((int(k), float(v)) for k, v in data["density_by_batch"].items())
        return cls(
            float(data["flops_per_sample"]),
            {int(k): float(v) for k, v in data["gflops_by_cores"].items()},
            tuple(b for b, _ in by_batch),
            tuple(p for _, p in by_batch),
        )
