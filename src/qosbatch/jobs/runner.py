"""The local runner: a job's missing parts on this machine, in one process, with a backend.

Batches run back to back on the calling thread with ``cores`` intra-op threads:
the input slice is read (from a memory map), cast, run, and copied into the
part's buffer; a full part is written atomically (``layout``). Nothing else
happens per batch beyond a clock read and, at most ten times a second, a
progress update, so the job's throughput is the backend's at (b, k).

With a profile, every full batch's time is compared with the prediction
(``adapt.DriftWatch``); on drift the runner says so, scales its predictions by
the measured ratio and, unless the user fixed the batch size and cores,
re-plans them (``plan.plan_local``) to still make the deadline where it can.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from qosbatch.core.errors import UserError
from qosbatch.jobs.adapt import DriftWatch
from qosbatch.jobs.inputs import JobInput
from qosbatch.jobs.layout import JobOutput
from qosbatch.jobs.plan import JobSettings, plan_local
from qosbatch.jobs.units import format_duration
from qosbatch.models.backends import Backend
from qosbatch.planner.service import ModelService

_UPDATE_S = 0.1  # progress updates at most this often


class Reporter(Protocol):
    """Where the runner's progress goes: a rich bar on a terminal, nothing in tests."""

    def start(self, total: int, done: int) -> None: ...

    def update(self, done: int, rate: float, eta_s: float | None, status: str) -> None: ...

    def note(self, text: str) -> None: ...

    def stop(self) -> None: ...


class QuietReporter:
    def __init__(self) -> None:
        self.notes: list[str] = []

    def start(self, total: int, done: int) -> None:
        pass

    def update(self, done: int, rate: float, eta_s: float | None, status: str) -> None:
        pass

    def note(self, text: str) -> None:
        self.notes.append(text)

    def stop(self) -> None:
        pass


@dataclass(frozen=True)
class RunSettings:
    batch: int
    cores: int
    max_cores: int  # what a re-plan may use on this machine
    deadline_s: float | None = None  # from started_at
    adapt: bool = True  # re-plan batch and cores on drift (False: only report it)
    predicted_s: float | None = None  # the plan's duration for the parts to do
    price_per_core_hour: float | None = None
    currency: str = "USD"
    plan: JobSettings = field(default_factory=JobSettings)
    meta: dict[str, Any] = field(default_factory=dict)  # copied into job.json (model, input)
    drift_seconds: float = 5.0  # least batch time a drift verdict rests on (adapt.DriftWatch)


@dataclass
class _Run:
    """The running job's mutable state: configuration, clocks and tallies."""

    settings: RunSettings
    out: JobOutput
    service: ModelService | None
    reporter: Reporter
    started_at: float
    clock: Callable[[], float]
    batch: int = 0
    cores: int = 0
    slowdown: float = 1.0
    done: int = 0
    this_run: int = 0
    compute_s: float = 0.0
    core_s: float = 0.0
    loop_at: float = 0.0
    marked_at: float = 0.0
    updated_at: float = 0.0
    changes: list[dict[str, Any]] = field(default_factory=list)
    watch: DriftWatch = field(default_factory=DriftWatch)

    def hold(self, now: float) -> None:
        """Count the cores held since the last mark (they are paid for, busy or not)."""
        self.core_s += self.cores * (now - self.marked_at)
        self.marked_at = now

    def predicted_batch_s(self, rows: int) -> float | None:
        if self.service is None or rows != self.batch or self.batch > self.service.table.max_batch:
            return None
        return self.service.table.s(self.batch, self.cores) * self.slowdown

    def after_batch(self, rows: int, seconds: float, backend: Backend) -> None:
        self.done += rows
        self.this_run += rows
        self.compute_s += seconds
        predicted = self.predicted_batch_s(rows)
        if predicted is not None:
            ratio = self.watch.observe(seconds, predicted)
            if ratio is not None:
                self.drifted(ratio, backend)
        now = self.clock()
        if now - self.updated_at >= _UPDATE_S:
            self.updated_at = now
            self.report(now)

    def report(self, now: float) -> None:
        rate = self.this_run / max(now - self.loop_at, 1e-9)
        left = self.out.n - self.done
        eta = left / rate if rate > 0 else None
        self.reporter.update(self.done, rate, eta, self.status(now, eta))

    def status(self, now: float, eta: float | None) -> str:
        deadline = self.settings.deadline_s
        if deadline is None or eta is None:
            return ""
        late = (now - self.started_at) + eta - deadline
        if late <= 0:
            return f"on track ({format_duration(-late)} to spare)"
        return f"behind by {format_duration(late)}"

    def drifted(self, ratio: float, backend: Backend) -> None:
        self.slowdown *= ratio
        now = self.clock()
        said = (
            f"batches take {ratio:.2f}x the predicted time (batch {self.batch}, {self.cores} cores)"
        )
        if not self.settings.adapt or self.service is None:
            self.reporter.note(f"{said}; batch size and cores were given: kept")
            return
        deadline = self.settings.deadline_s
        left_s = None if deadline is None else deadline - (now - self.started_at)
        config, meets = plan_local(
            self.out.n - self.done,
            self.service,
            self.settings.max_cores,
            left_s if left_s is None or left_s > 0 else 1e-9,
            replace(self.settings.plan, startup_s=0.0),
            self.slowdown,
        )
        verdict = "meets the deadline" if meets else "cannot meet the deadline: fastest"
        self.reporter.note(
            f"{said}; re-planned: batch {config.batch} on {config.cores} cores, "
            f"{format_duration(config.duration_s)} to go ({verdict})"
        )
        self.changes.append(
            {
                "at_s": round(now - self.started_at, 3),
                "ratio": round(ratio, 4),
                "batch": config.batch,
                "cores": config.cores,
                "meets_deadline": meets,
            }
        )
        if (config.batch, config.cores) != (self.batch, self.cores):
            self.hold(now)
            self.batch, self.cores = config.batch, config.cores
            backend.set_threads(self.cores)
            self.watch.reset()


def run_local(
    job_input: JobInput,
    backend: Backend,
    out: JobOutput,
    settings: RunSettings,
    service: ModelService | None,
    reporter: Reporter,
    started_at: float,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Any]:
    """Run every missing part, write outputs.npy and job.json; returns the summary."""
    run = _Run(settings, out, service, reporter, started_at, clock)
    run.watch = DriftWatch(min_seconds=settings.drift_seconds)
    run.batch, run.cores = settings.batch, settings.cores
    run.done = out.samples_done()
    run.marked_at = started_at
    backend.set_threads(run.cores)
    reporter.start(out.n, run.done)
    run.loop_at = clock()
    try:
        for index in out.missing():
            out.write_part(index, _run_part(run, job_input, backend, index))
        run.report(clock())
    finally:
        reporter.stop()
    out.assemble()
    end = clock()
    run.hold(end)
    summary = _summary(run, end)
    out.finish(summary)
    return summary


def _run_part(run: _Run, job_input: JobInput, backend: Backend, index: int) -> np.ndarray:
    start, end = run.out.bounds(index)
    buf: np.ndarray | None = None
    pos = start
    while pos < end:
        stop = min(pos + run.batch, end)
        x = job_input.read(pos, stop)
        # A copy: the slice may be a read-only memory map, which torch will not wrap.
        x = np.array(x, dtype=np.float32 if backend.name == "torch" else x.dtype, order="C")
        t0 = run.clock()
        try:
            y = backend.run(x)
        except Exception as exc:  # the model's fault or the input's: say where, keep parts
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(
                f"the model failed on samples [{pos}, {stop}): {first}; the {run.done} samples "
                "done so far are kept"
            ) from None
        seconds = run.clock() - t0
        if len(y) != stop - pos:
            raise UserError(f"the model returned {len(y)} rows for a batch of {stop - pos}")
        if buf is None:
            buf = np.empty((end - start, *y.shape[1:]), dtype=y.dtype)
        buf[pos - start : stop - start] = y
        run.after_batch(stop - pos, seconds, backend)
        pos = stop
    assert buf is not None  # a part holds at least one sample
    return buf


def _summary(run: _Run, end: float) -> dict[str, Any]:
    return summarise(
        run.settings,
        samples=run.out.n,
        this_run=run.this_run,
        wall_s=end - run.started_at,
        loop_s=end - run.loop_at,
        compute_s=run.compute_s,
        core_s=run.core_s,
        final=(run.batch, run.cores),
        replans=run.changes,
    )


def summarise(
    s: RunSettings,
    *,
    samples: int,
    this_run: int,
    wall_s: float,
    loop_s: float,
    compute_s: float,
    core_s: float,
    final: tuple[int, int],
    replans: list[dict[str, Any]],
) -> dict[str, Any]:
    """job.json: what ran, how long, what it cost, and the prediction beside it."""
    price = s.price_per_core_hour
    return {
        **s.meta,
        "samples": samples,
        "samples_this_run": this_run,
        "resumed_from": samples - this_run,
        "wall_s": round(wall_s, 3),
        "compute_s": round(compute_s, 3),
        "throughput": round(this_run / max(loop_s, 1e-9), 3),
        "core_seconds": round(core_s, 3),
        "cost": None if price is None else core_s * price / 3600,  # unrounded: micro-dollars
        "currency": s.currency,
        "price_per_core_hour": price,
        "batch": s.batch,
        "cores": s.cores,
        "final_batch": final[0],
        "final_cores": final[1],
        "replans": replans,
        "deadline_s": s.deadline_s,
        "met_deadline": None if s.deadline_s is None else wall_s <= s.deadline_s,
        "predicted_s": None if s.predicted_s is None else round(s.predicted_s, 3),
        "predicted_over_actual": None
        if s.predicted_s is None
        else round(s.predicted_s / wall_s, 4),
    }
