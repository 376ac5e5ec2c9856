"""Profile a model: count its work, measure the node, run each core count pinned, fit.

The parent process never runs the model itself for timing; it starts one child
per core count (see ``runner``), collects points as they arrive (driving the
progress bar), and on any interruption returns what it has, marked partial, so
the caller can write it marked partial or not at all.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import queue as queue_module
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from qosbatch.core.errors import UserError
from qosbatch.core.profile import Measurement, ModelInfo, Profile
from qosbatch.latency import fit_profile
from qosbatch.models.backends import check_backend, export_onnx
from qosbatch.models.loading import ModelRef, load_torch_module
from qosbatch.profiling.node import describe_node, measure_compute_power
from qosbatch.profiling.pinning import check_core_counts
from qosbatch.profiling.runner import RunSettings, run_core_count

ProgressFn = Callable[[Measurement], None]
POINT_TIMEOUT_S = 900.0  # a single point taking longer than this means the child hung


def holdout_sizes(batch_sizes: list[int]) -> list[int]:
    """Midpoints between consecutive sizes that are 2 or more apart: 1,2,4,8 -> 3,6."""
    sizes = sorted(set(batch_sizes))
    mids = {(a + b) // 2 for a, b in itertools.pairwise(sizes) if b - a >= 2}
    return sorted(mids - set(sizes))


def check_batch_sizes(sizes: list[int]) -> None:
    if not sizes:
        raise UserError("give at least one batch size")
    for b in sizes:
        if b < 1:
            raise UserError(f"batch sizes must be integers >= 1, got {b}")


@dataclass(frozen=True)
class ProfileRequest:
    ref: ModelRef
    batch_sizes: list[int]
    core_counts: list[int]
    holdout: list[int]  # extra sizes measured only to score the fit
    settings: RunSettings


def model_info(ref: ModelRef, backend: str, device: str) -> ModelInfo:
    flops = params = None
    if ref.source != "onnx":
        from qosbatch.models.flops import count_flops_per_sample, count_params

        module = load_torch_module(ref)
        flops = count_flops_per_sample(module, ref.input_shape)
        params = count_params(module)
    return ModelInfo(ref.name, ref.source, ref.input_shape, flops, params, backend, device)


def run_profile(request: ProfileRequest, on_point: ProgressFn | None = None) -> Profile:
    """Measure every (batch, cores) point of ``request``; partial=True if cut short.

    KeyboardInterrupt and child failures stop the run; the points measured so far
    are returned in a profile marked partial, with the reason in ``settings``.
    """
    settings = request.settings
    check_batch_sizes(request.batch_sizes)
    check_core_counts(request.core_counts)
    check_backend(settings.backend, settings.device)
    info = model_info(request.ref, settings.backend, settings.device)
    node = describe_node(measure_compute_power(request.core_counts), settings.device)
    points = [(b, False) for b in request.batch_sizes] + [(b, True) for b in request.holdout]
    measurements: list[Measurement] = []
    failure = ""
    with tempfile.TemporaryDirectory(prefix="qosbatch-onnx-") as tmp:
        if settings.backend == "onnx":
            settings = RunSettings(
                **{**asdict(settings), "onnx_path": export_onnx(request.ref, tmp)}
            )
        try:
            for cores in request.core_counts:
                failure = _run_child(request.ref, cores, points, settings, measurements, on_point)
                if failure:
                    break
        except KeyboardInterrupt:
            failure = "interrupted"
    profile = Profile(
        model=info,
        node=node,
        measurements=measurements,
        settings={
            "warmup": settings.warmup,
            "repeats": settings.repeats,
            "max_seconds": settings.max_seconds,
            "batch_sizes": sorted(request.batch_sizes),
            "holdout_sizes": request.holdout,
            "core_counts": request.core_counts,
            **({"stopped": failure} if failure else {}),
        },
        partial=bool(failure),
        created_utc=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    if measurements:
        profile.fit = fit_profile(profile)
    return profile


def _run_child(
    ref: ModelRef,
    cores: int,
    points: list[tuple[int, bool]],
    settings: RunSettings,
    sink: list[Measurement],
    on_point: ProgressFn | None,
) -> str:
    """Run one core count's child; returns '' on success or why it stopped."""
    ctx = mp.get_context("spawn")
    messages = ctx.Queue()
    proc = ctx.Process(
        target=run_core_count, args=(ref, cores, points, settings, messages), daemon=True
    )
    proc.start()
    try:
        waited = 0.0
        while True:
            try:
                kind, payload = messages.get(timeout=1.0)
                waited = 0.0
            except queue_module.Empty:
                waited += 1.0
                if not proc.is_alive() and messages.empty():
                    return f"the {cores}-core run died (exit code {proc.exitcode})"
                if waited >= POINT_TIMEOUT_S:
                    return f"no result from the {cores}-core run for {POINT_TIMEOUT_S:.0f} s"
                continue
            if kind == "point":
                sink.append(payload)
                if on_point:
                    on_point(payload)
            elif kind == "error":
                return f"the {cores}-core run failed: {payload}"
            else:
                return ""
    finally:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
            proc.join()
