"""How fast the M/G(a,b)/1/N solver and the (a, b) optimizer are on this machine.

    .venv/bin/python benchmarks/queue_solver_speed.py

Prints the median of repeated runs: one solve at N=256, b=64 (deterministic and
lognormal service), and the optimizer over all 1 <= a <= b <= 64 at N=256 and
N=128. Goals (issue 5): a solve in <= 50 ms (aim 10 ms), the optimizer in <= 1 s.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from qosbatch.queueing import ServiceTime, optimize_ab, solve


def resnet18_like(k: int) -> float:
    """Seconds for a batch of k: roughly ResNet-18 on 2 cores of this machine."""
    return 0.0045 + 0.024 * k


def timed(fn: Callable[[], object], repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def main() -> None:
    rate = 30.0
    det = timed(lambda: solve(rate, 4, 64, 256, resnet18_like), 21)
    logn = ServiceTime(resnet18_like, "lognormal", 0.05)
    ln = timed(lambda: solve(rate, 4, 64, 256, logn), 21)
    print(f"solve N=256 b=64 deterministic: {det * 1e3:7.2f} ms  (goal <= 50, aim 10)")
    print(f"solve N=256 b=64 lognormal cv=.05: {ln * 1e3:7.2f} ms")
    for n in (256, 128):
        opt = timed(lambda n=n: optimize_ab(rate, logn, n, 64, latency_bound_s=1.0), 3)
        print(f"optimize all 1<=a<=b<=64 (2080 pairs), N={n}: {opt:6.3f} s  (goal <= 1 s)")


if __name__ == "__main__":
    main()
