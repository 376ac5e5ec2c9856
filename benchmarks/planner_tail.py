"""Calibrate the planner's tail factors tau_q against the simulator, and show the margin.

    .venv/bin/python benchmarks/planner_tail.py [--requests 20000]

For every scenario of the grid in ``qosbatch.planner.calibrate`` (3 latency
laws x 2 spreads x 4 max batches x 5 SLOs x 3 percentiles), prints tau*, the
factor at which the model's capacity equals the simulated one; then, per
percentile, the calibrated tau_q (the smallest factor never more than 3%
optimistic on the grid; calibrate.py says why not the largest tau*) and, at the factors the
planner ships (``TAIL_FACTORS``), the ratio of model to simulated capacity:
at most 1 everywhere means never optimistic on the grid; how far below 1 is
what the safety costs. Takes about a minute on this machine.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

from qosbatch.planner.calibrate import calibrate, tail_factors
from qosbatch.planner.targets import TAIL_FACTORS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=20_000, help="simulated requests per rate")
    args = ap.parse_args()
    t0 = time.perf_counter()
    samples = calibrate(requests=args.requests)
    print(f"{len(samples)} scenarios simulated in {time.perf_counter() - t0:.1f} s")
    print(f"{'law':>13} {'cv':>5} {'b':>3} {'q':>3} {'SLO ms':>8} {'sim req/s':>9} {'tau*':>6}")
    for s in samples:
        print(
            f"{s.law:>13} {s.cv:5.2f} {s.b:3d} {s.percentile:3.0f} {s.slo_s * 1e3:8.1f} "
            f"{s.sim_rate:9.2f} {s.tau_star:6.2f}"
        )
    fitted = tail_factors(samples)
    for q in sorted(fitted):
        stars = [s.tau_star for s in samples if s.percentile == q and math.isfinite(s.tau_star)]
        shipped = TAIL_FACTORS.get(q, math.nan)
        ratios = [
            s.model_rate(shipped) / s.sim_rate
            for s in samples
            if s.percentile == q and s.curve is not None
        ]
        print(
            f"p{q:g}: calibrated tau = {fitted[q]:.2f} (tau* median {statistics.median(stars):.2f},"
            f" max {max(stars):.2f}, {len(stars)} scenarios); shipped {shipped:.2f}: model/sim "
            "capacity "
            f"min {min(ratios):.3f} p10 {sorted(ratios)[len(ratios) // 10]:.3f} "
            f"median {statistics.median(ratios):.3f} max {max(ratios):.3f}"
        )


if __name__ == "__main__":
    main()
