"""Capacity of one replica: the highest arrival rate at which its latency target holds.

A replica runs the (a, b) batching rule (a = 1: the dynamic batcher with no
delay) on k cores; arrivals are Poisson (a share of the model's stream). Its
latency against rate comes from the M/G(a,b)/1/N queueing model
(``qosbatch.queueing``):

- **mean target**: the model's mean latency W(rate) <= SLO, blocking <= eps.
- **percentile target** (p90, p95, p99): the queueing model gives means and the
  queue-length law, not latency tails, so the q-th percentile is predicted as

      L_q = S_q + tau_q * w_q

  S_q is the q-quantile of the service time a request sees (the
  request-weighted batch-size law of the model's chain, each size's time
  lognormal with the profile's spread). w_q is the q-quantile of the wait,
  read off the model's time-average queue-length law p(n) (an arrival sees it,
  by PASTA): with a = 1, an arrival that finds the server idle starts at once;
  one that finds it busy with n waiting waits the residual of the batch in
  service (uniform on [0, s_res], s_res the time-biased batch time, so its mean
  is the renewal residual E[S^2] / 2E[S]) plus floor(n / b) full batches. That
  keeps both ends right: at moderate load waits are bounded by a batch time
  (an exponential tail would be far too pessimistic there), near saturation
  the queue ahead dominates. (a > 1: an exponential wait with the model's
  mean, every arrival waiting.) tau_q is a tail factor calibrated against the
  simulator (``qosbatch.planner.calibrate``; grid and numbers in
  docs/planner.md). It is needed because this reading is not exact either way:
  at light load it overstates the wait (tau* ~ 0.7), near saturation the
  model's queue-length tail is lighter than the simulated one (tau* up to 2-5);
  one factor cannot fit both, and the calibrated one errs on the safe side
  except within a few percent (docs/planner.md has the spread). The target, the
  tail factors and the quantile helpers are in ``qosbatch.planner.targets``.

Speed: a node type t scales every service time by a factor f, and a queue whose
times all scale by f at rate lam behaves like the unscaled queue at rate f*lam
with times f times longer. So every node type's capacity comes from one curve
(metric against rate) on the profiled node, with target SLO / f:
capacity_t = max{u : metric(u) <= SLO / f} / f. ``Curve`` evaluates the metric
on a grid of utilisations once and answers every node type's target from it.

Pure numpy/scipy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import special

from qosbatch.planner.targets import (
    exponential_wait_quantile,
    lognormal_quantile_factor,
    tail_factor,
)
from qosbatch.queueing import KappaTable, QueueResult, ServiceTime, solve_many

DEFAULT_EPS = 1e-3  # largest blocking probability (share of requests refused) a replica may have
# Spreads (cv) up to this are served as deterministic in the queueing model: the mean wait
# grows by (1 + cv^2) / 2 over the deterministic one's 1/2 (Pollaczek-Khinchine), so at 0.1
# the mean is off by <= 1%, while a lognormal kappa table costs ~50x more to build.
DETERMINISTIC_CV = 0.1
# Utilisations (rate / saturation rate b / s(b)) at which a curve is evaluated; dense near 1,
# where latency turns up sharply, so linear interpolation between points stays close.
UTILISATION_GRID: tuple[float, ...] = tuple(
    1.0 - x for x in (0.95, 0.85, 0.72, 0.6, 0.48, 0.38, 0.3, 0.23, 0.17, 0.12, 0.08, 0.05,
                      0.03, 0.015, 0.006)
)  # fmt: skip


CHECKS = 2  # solves that may confirm an interpolated capacity before the grid point is taken


def default_queue_capacity(
    b: int, full_batch_s: float | None = None, slo_s: float | None = None
) -> int:
    """N, the most requests a replica's queue model lets wait.

    A request that finds n waiting leaves after floor(n / b) full batches and its
    own, so past n = b * SLO / s(b) it is late whatever happens: N is set there
    (plus one batch), so that the model's bound only turns away requests that would
    miss anyway and leaves the tail below it undistorted (a bound of a couple of
    batches was seen to shorten the predicted p99 near saturation by half). It is
    kept within [64, 256] so a solve stays under a few milliseconds.
    """
    if full_batch_s is None or slo_s is None or full_batch_s <= 0:
        return max(b, 64)
    useful = b * math.ceil(slo_s / full_batch_s) + b
    return max(b, min(256, max(64, useful)))


class DeterministicKappa(KappaTable):
    """``KappaTable`` for deterministic service, built in one vectorised step.

    The queueing package's table loops over batch sizes (one pmf per size, ~10 us
    each); the planner builds one per solve, and at b = 32 that loop cost as much as
    the solve itself. Same numbers (Poisson pmf of rate * s(k)); a test checks it
    against ``KappaTable``.
    """

    def __init__(self, rate: float, means: Sequence[float], capacity: int, max_batch: int) -> None:
        self.rate = rate
        self.capacity = capacity
        self.mean = np.zeros(max_batch + 1)
        self.mean[1:] = np.asarray(means[1 : max_batch + 1], dtype=float)
        j = np.arange(capacity + 1)
        x = rate * self.mean[1:, None]
        self.kappa = np.zeros((max_batch + 1, capacity + 1))
        self.kappa[1:] = np.exp(j * np.log(x) - x - special.gammaln(j + 1))
        self.kappa_sf: NDArray[np.float64] = np.concatenate(
            [np.ones((max_batch + 1, 1)), 1.0 - np.cumsum(self.kappa, axis=1)], axis=1
        )
        np.clip(self.kappa_sf, 0.0, 1.0, out=self.kappa_sf)


@dataclass(frozen=True)
class Point:
    """The queue at one arrival rate: the target's metric (seconds) and its blocking."""

    rate: float
    metric: float
    blocking: float
    result: QueueResult | None = None  # None for the rate -> 0 limit


class Curve:
    """One replica's latency metric against arrival rate, on the profiled node.

    ``means[j]`` and ``cvs[j]`` are the service time of a batch of j (seconds) and
    its spread, j = 1..b (index 0 unused). Evaluations are memoised per rate.
    """

    def __init__(
        self,
        means: Sequence[float],
        cvs: Sequence[float],
        a: int,
        b: int,
        percentile: float | None = None,
        queue_capacity: int | None = None,
        eps: float = DEFAULT_EPS,
    ) -> None:
        if not 1 <= a <= b or len(means) < b + 1 or len(cvs) < b + 1:
            raise ValueError(f"need 1 <= a <= b and s(j) for j <= b, got a={a}, b={b}")
        self.means = [float(x) for x in means[: b + 1]]
        self.cvs = [float(x) for x in cvs[: b + 1]]
        self.a, self.b = a, b
        self.capacity = queue_capacity or default_queue_capacity(b)
        self.percentile = percentile
        self.tau = tail_factor(percentile) if percentile is not None else 0.0
        self.eps = eps
        family = "deterministic" if max(self.cvs[1:]) <= DETERMINISTIC_CV else "lognormal"
        self.service = ServiceTime(
            lambda k: self.means[k],
            family,
            lambda k: self.cvs[k],  # type: ignore[arg-type]
        )
        self.saturation = b / self.means[b]
        self._spread = (
            [lognormal_quantile_factor(cv, percentile) for cv in self.cvs]
            if percentile is not None
            else [1.0] * (b + 1)
        )
        self._cache: dict[float, Point] = {}
        self._results: dict[float, QueueResult] = {}  # kept across tau changes
        self.solves = 0

    def with_tail_factor(self, tau: float) -> Curve:
        """This curve with another tail factor (calibration), keeping every solve made."""
        self.tau = tau
        self._cache = {}
        return self

    @property
    def full_batch_s(self) -> float:
        """A full batch's service time at the target's percentile (its mean for a mean target)."""
        return self.means[self.b] * self._spread[self.b]

    @property
    def floor_s(self) -> float:
        """The metric as the rate goes to 0 (a = 1: one request alone); inf for a > 1."""
        if self.a > 1:
            return math.inf
        return self.means[1] * self._spread[1]

    def at(self, rate: float) -> Point:
        """The metric and blocking at ``rate`` (requests/s), solved once and memoised."""
        if rate <= 0:
            return Point(0.0, self.floor_s, 0.0)
        hit = self._cache.get(rate)
        if hit is not None:
            return hit
        res = self._results.get(rate)
        if res is None:
            if self.service.family == "deterministic":
                table: KappaTable = DeterministicKappa(rate, self.means, self.capacity, self.b)
            else:
                table = KappaTable(rate, self.service, self.capacity, self.b)
            res = solve_many(table, [self.a], self.b)[0]
            self._results[rate] = res
            self.solves += 1
        point = Point(rate, self.metric(res), res.blocking_probability, res)
        self._cache[rate] = point
        return point

    def metric(self, res: QueueResult) -> float:
        """Mean latency, or the predicted percentile S_q + tau * w_q (module doc)."""
        if self.percentile is None:
            return res.mean_latency
        return self.service_quantile(res) + self.tau * self.wait_quantile(res)

    def wait_quantile(self, res: QueueResult) -> float:
        """w_q: the wait that q% of requests stay within, from the queue-length law."""
        assert self.percentile is not None  # only called for a percentile target
        miss = 1.0 - self.percentile / 100
        if self.a > 1:
            return exponential_wait_quantile(res.mean_wait, 1.0, self.percentile)
        p = res.queue_length_distribution
        n = np.arange(p.size)
        seen = p.copy()  # arrivals that wait: every n >= 1, and n = 0 while busy
        seen[0] = max(res.utilization - float(p[1:].sum()), 0.0)
        if seen.sum() <= miss:
            return 0.0
        pi = res.departure_distribution
        s_r = np.asarray(self.means)[np.maximum(self.a, np.minimum(n, self.b))]
        residual = float(np.sum(pi * s_r**2) / np.sum(pi * s_r))  # time-biased batch time
        # P(wait > w) = sum_m seen_m * clip(1 - (w - m s(b)) / residual, 0, 1) over the full
        # batches m ahead: piecewise linear in w, so its crossing of 1 - q is found exactly
        # between the breakpoints m s(b) and m s(b) + residual.
        seen_m = np.bincount(n // self.b, weights=seen)
        ahead = np.arange(seen_m.size) * self.means[self.b]
        knots = np.unique(np.concatenate([ahead, ahead + residual]))
        tail = np.clip(1.0 - (knots[:, None] - ahead[None, :]) / residual, 0.0, 1.0) @ seen_m
        i = int(np.argmax(tail <= miss))  # the first knot at or past the crossing (tail ends at 0)
        if i == 0:
            return 0.0
        w0, w1, t0, t1 = knots[i - 1], knots[i], tail[i - 1], tail[i]
        return float(w0 + (t0 - miss) / (t0 - t1) * (w1 - w0))

    def service_quantile(self, res: QueueResult) -> float:
        """S_q: the service time below which q% of requests' batches finish.

        Batch sizes come from the chain's departure law pi (state i serves
        max(a, min(i, b))), weighted by size because a batch of r carries r
        requests; each size's time is its mean stretched by its lognormal q-quantile
        factor. The quantile is interpolated between sizes along the cumulative
        weight, so that it moves continuously with the rate instead of jumping a
        whole batch size (a jump makes the grid interpolation of capacity unsafe).
        """
        assert self.percentile is not None  # only called for a percentile target
        states = np.arange(res.departure_distribution.size)
        sizes = np.maximum(self.a, np.minimum(states, self.b))
        weight = np.bincount(
            sizes, weights=res.departure_distribution * sizes, minlength=self.b + 1
        )
        cum = np.cumsum(weight) / weight.sum()
        stretched = np.asarray(self.means) * np.asarray(self._spread)
        # cum is flat below a (no batch is smaller); interpolate over sizes a-1 .. b.
        lo = self.a - 1
        xs = cum[lo:]
        ys = np.concatenate([[stretched[max(lo, 1)]], stretched[self.a :]])
        return float(np.interp(self.percentile / 100, xs, ys))

    def feasible(self, p: Point, threshold: float) -> bool:
        return p.metric <= threshold and p.blocking <= self.eps

    def max_rate(self, threshold: float, rel_tol: float | None = 1e-3) -> float:
        return self.max_rates([threshold], rel_tol)[0]

    def max_rates(
        self, thresholds: Sequence[float], rel_tol: float | None = None, check: bool = True
    ) -> list[float]:
        """The highest rate at which metric <= threshold and blocking <= eps, per threshold.

        Each threshold is bracketed between two points of ``UTILISATION_GRID`` (by
        binary search over the grid when a = 1, where the metric rises with the rate;
        by scanning it when a > 1, where a trickle waits for a batch to fill), then
        the crossing is interpolated linearly between them. Queue delay is mostly
        convex in the load, so the chord lies above the curve and the interpolated
        rate is on the safe side, but not always (batching flattens latency as load
        grows): with ``check`` the rate is confirmed by a solve (up to ``CHECKS``
        chords, else the grid point below), and with ``rel_tol`` the bracket is
        refined by solves until it is that narrow. Grid points solved for one
        threshold narrow the search for the next. Returns 0 where even a trickle
        misses the target, or where a full batch alone would (a setting whose full
        batch misses the SLO is never offered).
        """
        return [self._crossing(t, rel_tol, check) for t in thresholds]

    def _grid_point(self, i: int) -> Point:
        return self.at(UTILISATION_GRID[i] * self.saturation)

    def _bracket(self, threshold: float) -> tuple[Point, Point | None] | None:
        """Grid points (feasible, next infeasible) around the top of the feasible rates."""
        n = len(UTILISATION_GRID)
        if self.a > 1:
            ok = [self.feasible(self._grid_point(i), threshold) for i in range(n)]
            if not any(ok):
                return None
            i = max(j for j, good in enumerate(ok) if good)
            return self._grid_point(i), (self._grid_point(i + 1) if i + 1 < n else None)
        lo, hi = -1, n  # lo: feasible (-1 is the rate -> 0 limit), hi: infeasible or past the grid
        for i, rho in enumerate(UTILISATION_GRID):  # points solved for other thresholds: free
            p = self._cache.get(rho * self.saturation)
            if p is not None:
                if self.feasible(p, threshold):
                    lo = max(lo, i)
                else:
                    hi = min(hi, i)
        if hi <= lo:  # not monotone after all: search the whole grid
            lo, hi = -1, n
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.feasible(self._grid_point(mid), threshold):
                lo = mid
            else:
                hi = mid
        low = self.at(0.0) if lo < 0 else self._grid_point(lo)
        return low, (self._grid_point(hi) if hi < n else None)

    def _crossing(self, threshold: float, rel_tol: float | None, check: bool) -> float:
        if threshold < self.full_batch_s or threshold < self.floor_s:
            return 0.0
        bracket = self._bracket(threshold)
        if bracket is None:
            return 0.0
        lo, hi = bracket
        if hi is None:
            return lo.rate  # feasible up to the last grid point
        if rel_tol is None and not check:
            return self._interpolate(lo, hi, threshold)
        if rel_tol is None:
            # Planning: the chord's crossing, confirmed by a solve. Where the curve bends
            # the wrong way (batching makes latency flatten with load, so the chord can
            # lie below it) the tighter chord is tried once more, then the grid point.
            for _ in range(CHECKS):
                p = self.at(self._interpolate(lo, hi, threshold))
                if self.feasible(p, threshold):
                    return p.rate
                hi = p
            return lo.rate
        for step in range(64):
            if hi.rate - lo.rate <= rel_tol * max(lo.rate, 1e-9 * hi.rate):
                break
            # Alternate the chord's crossing (fast when the curve is smooth) with halving
            # (sure progress when it is not).
            mid = self._interpolate(lo, hi, threshold) if step % 2 == 0 else 0.0
            if not lo.rate < mid < hi.rate:
                mid = (lo.rate + hi.rate) / 2
            p = self.at(mid)
            if self.feasible(p, threshold):
                lo = p
            else:
                hi = p
        return lo.rate

    def _interpolate(self, lo: Point, hi: Point, threshold: float) -> float:
        """Where the chord from lo to hi crosses the threshold (metric or blocking)."""
        t = 1.0
        if hi.metric > threshold and hi.metric > lo.metric:
            t = min(t, (threshold - lo.metric) / (hi.metric - lo.metric))
        if hi.blocking > self.eps and hi.blocking > lo.blocking:
            t = min(t, (self.eps - lo.blocking) / (hi.blocking - lo.blocking))
        t = min(max(t, 0.0), 1.0)
        if t >= 1.0:  # hi fails only by noise in the chord: stay just below it
            t = 0.5
        return lo.rate + t * (hi.rate - lo.rate)

    def latency_at(self, rate: float) -> float:
        """The target's metric (seconds) at ``rate``; for a report, not a search."""
        return self.at(rate).metric
