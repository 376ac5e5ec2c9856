"""Memory of a batch, m(k): what BatOpt's latency-memory trade-off weighs.

BatOpt minimises mean latency plus ``omega`` times mean memory, because on a
pay-per-use node memory is billed too, and a larger batch holds more activations
while it runs. Two sources of m(k):

* the profile: the peak memory each batch size measured (above the loaded model),
  fitted as ``m0 + m1 * k`` by least squares over the batch sizes at one core count
  (activations grow linearly in the batch; the fit smooths the allocator's steps);
* a figure the user knows: megabytes per sample, ``m(k) = k * MB``.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from qosbatch.core.errors import UserError
from qosbatch.core.profile import Profile

Memory = Callable[[int], float]  # batch size -> bytes


def memory_from_profile(profile: Profile, cores: int) -> Memory:
    """m(k) in bytes, the linear fit of the profile's peak memory at ``cores``."""
    points = [
        (m.batch, float(m.peak_memory_bytes))
        for m in profile.measurements
        if m.cores == cores and m.peak_memory_bytes > 0
    ]
    if len({b for b, _ in points}) < 2:
        raise UserError(
            f"the profile has no peak memory for two batch sizes at {cores} core(s): "
            "give --memory as megabytes per sample instead"
        )
    k, mem = np.array(points).T
    slope, intercept = np.polyfit(k, mem, 1)
    slope, intercept = max(float(slope), 0.0), max(float(intercept), 0.0)
    return lambda batch: intercept + slope * batch


def memory_per_sample(megabytes: float) -> Memory:
    if not megabytes > 0:
        raise UserError(f"memory per sample must be > 0 MB, got {megabytes}")
    per = megabytes * 1e6
    return lambda batch: per * batch


def parse_memory(text: str, profile: Profile, cores: int) -> Memory:
    """``profile`` or a number of megabytes per sample."""
    if text == "profile":
        return memory_from_profile(profile, cores)
    try:
        megabytes = float(text)
    except ValueError:
        raise UserError(
            f"--memory takes 'profile' or megabytes per sample (e.g. 2.5), got {text!r}"
        ) from None
    return memory_per_sample(megabytes)


def omega_per_byte(ms_per_mb: float) -> float:
    """The CLI's omega (milliseconds of latency one megabyte is worth) in seconds per byte."""
    if ms_per_mb < 0:
        raise UserError(f"--omega must be >= 0 ms per MB, got {ms_per_mb}")
    return ms_per_mb * 1e-3 / 1e6
