"""Calibrating the tail factor tau_q against the simulator.

The planner predicts a percentile as L_q = S_q + tau_q * w_q (capacity.py, targets.py). For
a scenario (a latency law, its spread, a max batch b and an SLO), the simulator
gives the *simulated capacity*: the highest Poisson rate at which the q-th
percentile of latency stays within the SLO, with the dynamic batcher
(a = 1, no delay) and lognormal batch times of the profile's spread. The model's
capacity with factor tau does not exceed it exactly when, at that rate, the
prediction is at least the SLO, i.e. tau >= tau* (found by bisection: the
prediction grows with tau). The calibrated tau_q is the smallest factor on
``TAU_GRID`` that is at most ``OPTIMISM_TOLERANCE`` optimistic on every scenario
(``tail_factors`` says why not simply the largest tau*). The spread of tau*
and the model/simulation capacity ratio it leaves show how conservative that
is (docs/planner.md).

Each (law, spread, b) is simulated once over a grid of rates, with the same
random numbers at every rate (arrival times scaled), and every SLO and
percentile is read from the same runs; the dynamic batcher ignores deadlines,
so the SLO does not change what is simulated. Used by benchmarks/planner_tail.py
and, on a small grid, by the tests. Sits above the simulator, like verify.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from qosbatch.core.requests import REJECTED
from qosbatch.latency import AmdahlModel
from qosbatch.latency.table import LatencyTable
from qosbatch.planner.capacity import Curve, default_queue_capacity
from qosbatch.planner.targets import OPTIMISM_TOLERANCE
from qosbatch.policies.registry import parse_policy
from qosbatch.sim.kernel import Deployment, simulate
from qosbatch.workloads import arrivals
from qosbatch.workloads.trace import Trace

# Latency laws of the grid, s(b, 1 core) = alpha*b + beta + gamma*b + delta (seconds):
LAWS: dict[str, AmdahlModel] = {
    # AlexNet-like: 12 ms fixed per call, so batching pays off strongly.
    "alexnet-like": AmdahlModel(alpha=0.0141, beta=0.0, gamma=0.0026, delta=0.0124),
    # compute-bound: nearly proportional to the batch, batching gains little.
    "linear": AmdahlModel(alpha=0.02, beta=0.0, gamma=0.0005, delta=0.001),
    # overhead-bound: a fixed 20 ms per call and 2 ms per sample.
    "overhead": AmdahlModel(alpha=0.002, beta=0.0, gamma=0.0, delta=0.02),
}
SPREADS: tuple[float, ...] = (0.03, 0.15)
MAX_BATCHES: tuple[int, ...] = (1, 4, 16, 32)
SLO_MULTIPLES: tuple[float, ...] = (1.5, 2.0, 3.0, 5.0, 10.0)  # SLO / q-quantile of s(b)
PERCENTILES: tuple[float, ...] = (90.0, 95.0, 99.0)
UTILISATIONS: tuple[float, ...] = tuple(np.round(np.linspace(0.05, 0.99, 24), 4))


TAU_GRID: tuple[float, ...] = tuple(np.round(np.arange(0.5, 6.01, 0.05), 2))
TAU_MAX = 20.0


@dataclass(frozen=True)
class Sample:
    """One (law, spread, b, SLO, percentile) scenario at its simulated capacity."""

    law: str
    cv: float
    b: int
    slo_s: float
    percentile: float
    sim_rate: float  # highest rate with simulated percentile <= SLO
    tau_star: float  # tau making the model's capacity equal sim_rate (nan: not located)
    optimistic: bool  # the model exceeds sim_rate for every tau up to TAU_MAX
    curve: Curve | None = None  # the model's curve for this scenario (solves are reused)

    def model_rate(self, tau: float) -> float:
        """The model's capacity for this scenario with tail factor ``tau``."""
        assert self.curve is not None  # every calibrated sample carries its curve
        return self.curve.with_tail_factor(tau).max_rate(self.slo_s, 1e-3)


def simulated_percentiles(
    table: LatencyTable,
    b: int,
    rates: Sequence[float],
    percentiles: Sequence[float],
    requests: int,
    seed: int,
) -> np.ndarray:
    """[rate, percentile] -> simulated latency (s) of one replica under (1, b) batching."""
    base = arrivals.poisson_count(np.random.default_rng(seed), 1.0, requests)
    factory = parse_policy(f"dynamic:max_batch_size={b},max_queue_delay_ms=0").factory()
    out = np.empty((len(rates), len(percentiles)))
    for i, rate in enumerate(rates):
        trace = Trace.of(base / rate, 1e9, "m")
        rec = simulate(trace, [Deployment("m", table, 1, 1)], factory, seed=seed).records
        latency = np.where(rec.outcome == REJECTED, np.inf, rec.completion_s - rec.arrival_s)
        out[i] = np.percentile(latency, percentiles)
    return out


def calibrate(
    laws: dict[str, AmdahlModel] | None = None,
    spreads: Sequence[float] = SPREADS,
    max_batches: Sequence[int] = MAX_BATCHES,
    slo_multiples: Sequence[float] = SLO_MULTIPLES,
    percentiles: Sequence[float] = PERCENTILES,
    utilisations: Sequence[float] = UTILISATIONS,
    requests: int = 20_000,
    seed: int = 0,
) -> list[Sample]:
    """tau* for every scenario of the grid (module doc)."""
    samples = []
    for name, law in (laws or LAWS).items():
        for cv in spreads:
            table = LatencyTable.from_model(law, max(max_batches), 1, cv)
            for b in max_batches:
                means, cvs = table.service_s[1][: b + 1], table.cv[1][: b + 1]
                saturation = b / means[b]
                rates = [u * saturation for u in utilisations]
                sim = simulated_percentiles(table, b, rates, percentiles, requests, seed)
                for j, q in enumerate(percentiles):
                    full = Curve(means, cvs, 1, b, q).full_batch_s
                    for m in slo_multiples:
                        slo = m * full
                        n = default_queue_capacity(b, means[b], slo)
                        curve = Curve(means, cvs, 1, b, q, n)
                        samples.append(_sample(name, cv, b, slo, q, rates, sim[:, j], curve))
    return samples


def _sample(
    law: str,
    cv: float,
    b: int,
    slo: float,
    q: float,
    rates: Sequence[float],
    sim: np.ndarray,
    curve: Curve,
) -> Sample:
    ok = sim <= slo
    if ok.all() or not ok[0]:
        # Met at every simulated rate (its capacity lies past the grid) or at none:
        # either way the grid does not locate it, and it calibrates nothing.
        return Sample(law, cv, b, slo, q, rates[-1] if ok.all() else 0.0, math.nan, False)
    i = int(np.argmin(ok)) - 1  # the last passing rate before the first failing one
    lo, hi = sim[i], sim[i + 1]
    t = (slo - lo) / (hi - lo) if math.isfinite(hi) and hi > lo else 0.0
    sim_rate = rates[i] + t * (rates[i + 1] - rates[i])
    if sim_rate <= 0:
        return Sample(law, cv, b, slo, q, 0.0, math.nan, False)
    res = curve.at(sim_rate).result
    assert res is not None  # sim_rate > 0 was solved

    def predicted(tau: float) -> float:
        return curve.with_tail_factor(tau).metric(res)

    # tau*: the factor at which the prediction at sim_rate is exactly the SLO (it grows
    # with tau). 0 where even tau = 0 predicts more (any factor is safe there).
    if predicted(0.0) >= slo:
        return Sample(law, cv, b, slo, q, sim_rate, 0.0, False, curve)
    if predicted(TAU_MAX) < slo:
        return Sample(law, cv, b, slo, q, sim_rate, math.inf, True, curve)
    lo, hi = 0.0, TAU_MAX
    while hi - lo > 1e-3:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if predicted(mid) < slo else (lo, mid)
    return Sample(law, cv, b, slo, q, sim_rate, hi, False, curve)


def tail_factors(
    samples: Sequence[Sample], tolerance: float = OPTIMISM_TOLERANCE
) -> dict[float, float]:
    """Per percentile, the smallest tau on ``TAU_GRID`` whose capacity is never optimistic
    by more than ``tolerance`` on the grid's scenarios.

    Not simply the largest tau*: the largest come from SLOs loose enough that the
    capacity sits within a few percent of saturation, where a finite simulation's
    tail is itself uncertain by ~10% and the capacity hardly moves with tau; the
    tolerance keeps those from dictating a factor that would halve capacity at
    tight SLOs, where it matters.
    """
    out: dict[float, float] = {}
    for q in sorted({s.percentile for s in samples}):
        mine = [s for s in samples if s.percentile == q and s.curve is not None]
        for tau in TAU_GRID:
            if all(s.model_rate(tau) <= s.sim_rate * (1 + tolerance) for s in mine):
                out[q] = float(tau)
                break
        else:
            out[q] = math.inf
    return out
