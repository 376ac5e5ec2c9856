"""Tuning: each system's best knob setting on one workload, found the same way for all.

Every knob setting of the system's grid (``calibrate.GRIDS``: chosen per model from
its profile, one setting for a system with nothing to tune) is served in turn. The
first gets a coarse capacity search (a few short runs); each later one first runs
at the best load passed so far, and only if it passes there is it searched further
(a setting that fails where another passed cannot win). The highest coarse
capacity wins (ties: the lower p99). Every system gets this same budget: the same
search, the same run lengths, the same number of refining runs.

Tuning only picks the setting. What the comparison reports comes after, from every
system's chosen setting at the same loads in interleaved rounds (``rounds.py``).

A "run" is a function from a trace to its metrics, with the server already up;
serving a setting is a context manager that yields such a function. The real
ones start processes (``benchmarks.peers.__main__``); the tests pass fakes.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from benchmarks.peers.systems import Knobs
from qosbatch.metrics import Metrics
from qosbatch.sim.capacity import TraceAt, bisect_load, mean_rate
from qosbatch.workloads.trace import Trace

RunTrace = Callable[[Trace], Metrics]
Serve = Callable[[Knobs], AbstractContextManager[RunTrace]]


@dataclass(frozen=True)
class SearchSettings:
    target: float = 0.99
    start_factor: float = 1.0  # the workload's rates times this is the first load tried
    coarse_tol: float = 0.25  # bracket width that ends a tuning search
    coarse_runs: int = 4


@dataclass
class Point:
    """One live run: its load and what came of it."""

    factor: float
    rate: float  # mean arrival rate of the run's trace, requests/s
    metrics: Metrics
    passed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "factor": self.factor,
            "rate": self.rate,
            "passed": self.passed,
            **self.metrics.to_json(),
        }


@dataclass
class Setting:
    knobs: dict[str, Any]
    factor: float = 0.0  # the highest passing load factor found
    points: list[Point] = field(default_factory=list)
    error: str | None = None  # why the setting could not be served

    def best_point(self) -> Point | None:
        """The run at the passing load (the capacity figure's own run)."""
        passing = [p for p in self.points if p.factor == self.factor]
        return passing[-1] if passing else None

    def to_json(self) -> dict[str, Any]:
        return {
            "knobs": self.knobs,
            "factor": self.factor,
            "error": self.error,
            "points": [p.to_json() for p in self.points],
        }


@dataclass
class Outcome:
    """A system on a workload: its tuning, its capacity, its overload run."""

    system: str
    tuning: list[Setting]
    chosen: Setting | None = None
    error: str | None = None

    @property
    def factor(self) -> float:
        """The chosen setting's coarse capacity, as a load factor (0: none passed)."""
        return self.chosen.factor if self.chosen else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "factor": self.factor,
            "chosen": self.chosen.to_json() if self.chosen else None,
            "tuning": [s.to_json() for s in self.tuning],
            "error": self.error,
        }


def run_at(
    run: RunTrace,
    traces: TraceAt,
    setting: Setting,
    factor: float,
    target: float,
    log: Callable[[str], None],
    note: str = "",
) -> bool:
    """One run of ``setting`` at load ``factor``, kept in its points; did it pass?"""
    trace = traces(factor)
    m = run(trace)
    passed = m.attainment >= target
    setting.points.append(Point(factor, mean_rate(trace), m, passed))
    log(
        f"  {setting.knobs} at {mean_rate(trace):7.1f} req/s{note}: attainment "
        f"{m.attainment:.4f}, p99 {m.p99_ms:.1f} ms, rejected {m.rejected}, late {m.late}"
    )
    return passed


def search(
    run: RunTrace,
    traces: TraceAt,
    setting: Setting,
    *,
    target: float,
    start: float,
    rel_tol: float,
    max_runs: int,
    log: Callable[[str], None] = lambda _: None,
) -> Setting:
    """Capacity of one served setting; every run is kept in ``setting.points``."""
    setting.factor = bisect_load(
        lambda f: run_at(run, traces, setting, f, target, log),
        start=start,
        rel_tol=rel_tol,
        max_runs=max_runs,
    )
    return setting


def probe(
    run: RunTrace,
    traces: TraceAt,
    setting: Setting,
    factor: float,
    target: float,
    log: Callable[[str], None],
) -> bool:
    """One run at the best load found so far: a setting that fails there cannot win.

    This prunes the grid search to one run for most settings, instead of a search
    each (noise aside, which the interleaved rounds of the winners then measure).
    """
    return run_at(run, traces, setting, factor, target, log, " (the best so far)")


def _rank(setting: Setting) -> tuple[float, float]:
    """Higher capacity first, then the lower p99 at it."""
    best = setting.best_point()
    p99 = best.metrics.p99_ms if best and not math.isnan(best.metrics.p99_ms) else math.inf
    return (setting.factor, -p99)


def evaluate(
    system: str,
    grid: Sequence[Knobs],
    serve: Serve,
    traces: TraceAt,
    settings: SearchSettings = SearchSettings(),
    log: Callable[[str], None] = lambda _: None,
) -> Outcome:
    """Tune ``system`` over ``grid``: every setting's coarse capacity, and the winner."""
    outcome = Outcome(system, [Setting(dict(k)) for k in grid])
    if not outcome.tuning:
        outcome.error = "no knob settings to try"
        return outcome
    best = 0.0  # the highest load any setting has passed so far
    for setting in outcome.tuning:
        try:
            with serve(setting.knobs) as run:
                if best > 0 and not probe(run, traces, setting, best, settings.target, log):
                    continue  # served fine, just no better than one before it
                search(
                    run, traces, setting, target=settings.target,
                    start=best or settings.start_factor, rel_tol=settings.coarse_tol,
                    max_runs=settings.coarse_runs, log=log,
                )  # fmt: skip
        except Exception as exc:  # a setting that cannot be served loses, and says why
            setting.error = f"{type(exc).__name__}: {exc}"
            log(f"  {setting.knobs}: {setting.error}")
        best = max(best, setting.factor)
    served = [s for s in outcome.tuning if s.error is None]
    if not served:
        outcome.error = "no setting could be served: " + str(outcome.tuning[0].error)
        return outcome
    outcome.chosen = max(served, key=_rank)
    return outcome


@contextlib.contextmanager
def no_server(run: RunTrace) -> Any:
    """A serve() body for a run function that needs no process (the tests' fakes)."""
    yield run
