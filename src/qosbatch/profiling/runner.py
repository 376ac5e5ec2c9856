"""The child that measures one core count: pinned, warmed up, timed, reported point by point.

Each core count runs in a fresh process pinned to that many cores, so a
measurement at c cores really uses c cores, and a crash or an interrupt loses
at most the point in progress: every finished point is sent to the parent as
soon as it is measured.
"""

from __future__ import annotations

import resource
import statistics
import time
import traceback
from dataclasses import dataclass
from typing import Any

from qosbatch.core.profile import Measurement
from qosbatch.models.loading import ModelRef


@dataclass(frozen=True)
class RunSettings:
    """How hard to measure each point."""

    warmup: int = 2  # untimed runs before timing: caches, allocator, lazy init
    repeats: int = 10  # timed runs per point (fewer if max_seconds runs out first)
    max_seconds: float = 10.0  # time budget per point; at least 3 timed runs are always made
    backend: str = "torch"
    device: str = "cpu"
    onnx_path: str | None = None  # an export made once by the parent, shared by every child


def measure_point(
    run: Any, batch_input: Any, batch: int, cores: int, settings: RunSettings
) -> tuple[list[float], float]:
    """Time ``run(batch_input)``: returns the timed runs in seconds and the wall time spent."""
    start = time.perf_counter()
    for _ in range(settings.warmup):
        run(batch_input)
    times: list[float] = []
    deadline = start + settings.max_seconds
    while len(times) < settings.repeats and (len(times) < 3 or time.perf_counter() < deadline):
        t0 = time.perf_counter()
        run(batch_input)
        times.append(time.perf_counter() - t0)
    return times, time.perf_counter() - start


def summarize(
    times: list[float], batch: int, cores: int, peak_bytes: int, holdout: bool
) -> Measurement:
    ordered = sorted(times)
    mean = statistics.fmean(ordered)
    std = statistics.pstdev(ordered) if len(ordered) > 1 else 0.0
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return Measurement(
        batch=batch,
        cores=cores,
        median_ms=statistics.median(ordered) * 1e3,
        p95_ms=p95 * 1e3,
        cv=std / mean if mean > 0 else 0.0,
        peak_memory_bytes=int(peak_bytes),
        repeats=len(ordered),
        holdout=holdout,
    )


class PeakRss:
    """Peak resident memory of one point, by Linux's resettable high-water mark.

    Writing 5 to /proc/self/clear_refs resets VmHWM to the current RSS, so the
    peak of each batch size is read exactly and at no cost while timing. Where
    that is not allowed, the process-lifetime maximum (ru_maxrss) stands in;
    sizes run in ascending order, so it is still the peak of the largest so far.
    """

    def __init__(self) -> None:
        self.baseline = self._status("VmRSS")

    def reset(self) -> None:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.baseline = self._status("VmRSS")
        except OSError:
            pass

    def peak_above_baseline(self) -> int:
        hwm = self._status("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return max(0, hwm - self.baseline)

    @staticmethod
    def _status(field: str) -> int:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0


def run_core_count(
    ref: ModelRef,
    cores: int,
    points: list[tuple[int, bool]],
    settings: RunSettings,
    out: Any,
) -> None:
    """Child entry point: measure ``points`` (batch, holdout) at ``cores``, ascending batch.

    Messages to the parent: ("point", Measurement) per point, then ("done", None),
    or ("error", message) if anything fails.
    """
    try:
        from qosbatch.profiling.pinning import pin_to_cores

        pin_to_cores(cores)
        from qosbatch.models.backends import OnnxBackend, make_backend, sample_batch

        if settings.backend == "onnx" and settings.onnx_path:
            backend: Any = OnnxBackend(settings.onnx_path, settings.device, cores)
        else:
            backend = make_backend(ref, settings.backend, settings.device, cores)
        rss = PeakRss()
        for batch, holdout in sorted(points):
            data = sample_batch(ref, batch, seed=batch)
            backend.reset_peak_memory()
            rss.reset()
            times, _ = measure_point(backend.run, data, batch, cores, settings)
            peak = backend.peak_memory_bytes()
            if peak is None:
                peak = rss.peak_above_baseline()
            out.put(("point", summarize(times, batch, cores, peak, holdout)))
        out.put(("done", None))
    except BaseException as exc:  # report every failure: the parent must not wait forever
        lines = traceback.format_exception_only(type(exc), exc)
        out.put(("error", lines[-1].strip() if lines else type(exc).__name__))
