"""Every system at the same loads, repeated in interleaved rounds, and what the repeats say.

The machine drifts (the same search gave 446 and 604 req/s an hour apart on it),
so one run per load, or one system's runs all before another's, measures the
machine as much as the system. Here every system runs its tuned setting at every
load of one ladder, ``repeats`` times, in rounds whose system order rotates
(A B C, B C A, C A B): drift hits every system alike, and the spread of the
repeats is what the intervals show.

* Attainment at a load: the mean over repeats with its 95% Student-t interval.
* Capacity at the target, per repeat: where the attainment curve first falls below
  the target, interpolated linearly between the last passing and the first
  failing load (censored: "below the ladder" or "above it"). Its mean over the
  repeats comes with a 95% t interval.

Pure: no servers, no clocks; the runner gives it numbers.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


def rotations(systems: Sequence[str], repeats: int) -> list[list[str]]:
    """The system order of each round: rotated by one each round."""
    n = len(systems)
    return [[systems[(r + i) % n] for i in range(n)] for r in range(repeats)]


def ladder(
    capacities: Sequence[float], points: int, below: float = 0.75, above: float = 1.3
) -> list[float]:
    """Load factors spanning every system's coarse capacity, geometric, ``points`` of them."""
    found = [c for c in capacities if c > 0]
    if not found:
        return []
    lo, hi = below * min(found), above * max(found)
    if points == 1:
        return [round(hi, 4)]
    return [round(float(f), 4) for f in np.geomspace(lo, hi, points)]


@dataclass(frozen=True)
class Interval:
    mean: float
    lo: float
    hi: float
    n: int

    def text(self, spec: str = ".3f") -> str:
        if math.isnan(self.mean):
            return "-"
        if self.n < 2:
            return format(self.mean, spec)
        return f"{self.mean:{spec}} [{self.lo:{spec}}, {self.hi:{spec}}]"

    def overlaps(self, other: Interval) -> bool:
        return not (self.hi < other.lo or other.hi < self.lo)


def t_interval(
    values: Sequence[float], level: float = 0.95, lo: float = -math.inf, hi: float = math.inf
) -> Interval:
    """Mean and its Student-t interval, clipped to [lo, hi] (an attainment is within
    [0, 1], a rate is not negative); NaNs dropped; one value has no interval."""
    x = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if len(x) == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if len(x) < 2:
        return Interval(mean, math.nan, math.nan, 1)
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return Interval(mean, max(lo, mean - half), min(hi, mean + half), len(x))


@dataclass(frozen=True)
class Crossing:
    factor: float
    censored: str = ""  # "": inside the ladder; "<": failed at its lowest; ">": passed its highest

    def text(self, scale: float = 1.0) -> str:
        return f"{self.censored}{self.factor * scale:.1f}"


def crossing(factors: Sequence[float], attainment: Sequence[float], target: float) -> Crossing:
    """Where one repeat's attainment first falls below ``target``, going up the ladder."""
    pts = sorted(zip(factors, attainment, strict=True))
    if not pts:
        return Crossing(math.nan)
    if pts[0][1] < target:
        return Crossing(pts[0][0], "<")
    for (f0, a0), (f1, a1) in itertools.pairwise(pts):
        if a1 < target:
            w = (a0 - target) / (a0 - a1) if a0 != a1 else 0.0
            return Crossing(f0 + w * (f1 - f0))
    return Crossing(pts[-1][0], ">")


def capacity(repeats: Sequence[Crossing]) -> tuple[Interval, str]:
    """The capacity's mean and interval over repeats, and a note if any was censored."""
    values = [c.factor for c in repeats]
    censored = sorted({c.censored for c in repeats if c.censored})
    note = ""
    if "<" in censored:
        note = "some repeats failed at the ladder's lowest load: an upper bound"
    if ">" in censored:
        note = "some repeats passed the ladder's highest load: a lower bound"
    return t_interval(values, lo=0.0), note


@dataclass(frozen=True)
class Budget:
    """Durations, repeats and ladder points fitted to a time budget."""

    tune_s: dict[str, float]  # per scenario: each tuning run
    run_s: dict[str, float]  # per scenario: each measured run
    repeats: int
    points: int
    minutes: float  # the estimate for this choice
    overload_s: float = 30.0  # each run of (c): goodput past the limit settles in seconds

    def describe(self) -> str:
        runs = ", ".join(
            f"{k}: tune {self.tune_s[k]:g} s, runs {self.run_s[k]:g} s" for k in self.run_s
        )
        return (
            f"{self.repeats} rounds x {self.points} loads ({runs}; overload runs "
            f"{self.overload_s:g} s): about {self.minutes:.0f} min"
        )


MIN_RUN_S = {"a": 60.0, "b": 180.0}  # at least 10 bursts of (b) fall in 180 s
TUNE_S = {"a": 20.0, "b": 60.0}
START_S = 20.0  # a server's start, warm-up and stop
SETTLE_S = 2.0  # between runs, plus the grace after the last send


def estimate(grids: dict[str, int], scenarios: Sequence[str], overloads: int, b: Budget) -> float:
    """Minutes for ``grids`` (settings per system) over ``scenarios`` with budget choice ``b``."""
    total = 0.0
    for key in scenarios:
        for settings in grids.values():
            total += settings * START_S + (settings + 3) * (b.tune_s[key] + SETTLE_S)
            per_block = START_S + b.points * (b.run_s[key] + SETTLE_S)
            if key == "a":
                per_block += overloads * (b.overload_s + SETTLE_S)
            total += b.repeats * per_block
    return total / 60.0


def fit_budget(
    minutes: float, grids: dict[str, int], scenarios: Sequence[str], overloads: int
) -> Budget:
    """The most measurement that fits: first the minimum (3 rounds, 3 loads, the minimum
    durations), then more loads, longer runs, more rounds, while the estimate fits.
    Raises ValueError with the minimum's estimate when even that does not fit."""

    def make(repeats: int, points: int, stretch: float) -> Budget:
        tune_s = {k: TUNE_S[k] for k in scenarios}
        run_s = {k: MIN_RUN_S[k] * stretch for k in scenarios}
        b = Budget(tune_s, run_s, repeats, points, 0.0)
        return dataclasses.replace(b, minutes=estimate(grids, scenarios, overloads, b))

    best = make(3, 3, 1.0)
    if best.minutes > minutes:
        runs = ", ".join(f"{MIN_RUN_S[k]:g} s" for k in scenarios)
        raise ValueError(
            f"the minimum (3 rounds x 3 loads at {runs}) needs about {best.minutes:.0f} "
            "minutes; give more, or fewer systems or scenarios"
        )
    for repeats, points, stretch in [
        (3, 4, 1.0),
        (3, 5, 1.0),
        (3, 5, 1.5),
        (4, 5, 1.5),
        (5, 5, 1.5),
        (5, 6, 2.0),
    ]:
        b = make(repeats, points, stretch)
        if b.minutes > minutes:
            break
        best = b
    return best
