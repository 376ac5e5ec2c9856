"""Validation: the M/G(a,b)/1/N model against the project's own simulator.

For each (service family, a, b, N, load) of a grid, the model's mean latency and
blocking are compared with the simulator running ``queue-optimal`` pinned to
the same (a, b, N) (deadlines so loose that its deadline guard never fires), on
Poisson traces. The simulated mean comes from ``--reps`` independent runs, so
each row also shows the 95% confidence half-width of the simulation itself: an
error inside it is noise, not model error.

    .venv/bin/python benchmarks/queue_vs_sim.py                 # synthetic AlexNet-like
    .venv/bin/python benchmarks/queue_vs_sim.py --profile resnet18.json --quick
"""

from __future__ import annotations

import argparse
import itertools
import math
import time

import numpy as np

from qosbatch.core.profile import Profile, load_profile
from qosbatch.latency.table import LatencyTable
from qosbatch.queueing import ServiceTime, solve
from qosbatch.sim.bulk_queue import simulate_bulk_queue
from qosbatch.testing import synthetic_profile


def run_grid(args: argparse.Namespace) -> list[dict[str, float | int | str]]:
    profile = load_profile(args.profile) if args.profile else synthetic_profile()
    cores = args.cores
    pairs = [(1, 1), (1, 8), (4, 8), (1, 16), (8, 16), (4, 32)]
    capacities = (32, 128)
    loads = (0.3, 0.6, 0.8, 0.95)
    families = (("deterministic", 0.0), ("lognormal", args.cv))
    if args.quick:
        pairs, capacities, loads = [(1, 8), (4, 16)], (64,), (0.5, 0.95)
    rows = []
    for (family, cv), (a, b), n_cap, load in itertools.product(families, pairs, capacities, loads):
        if n_cap < b:
            continue
        table = _table(profile, cores, b, cv)
        service = ServiceTime(lambda k, t=table: t.s(k, cores), family, cv)  # type: ignore[arg-type]
        saturation = b / table.s(b, cores)  # requests/s with every batch full
        rate = load * saturation
        model_res = solve(rate, a, b, n_cap, service)
        requests = round(args.requests / (1.0 - min(load, 0.99)))
        runs = [
            simulate_bulk_queue(
                table, cores, a, b, n_cap, rate, requests, rep, family == "deterministic"
            )
            for rep in range(args.reps)
        ]
        means = [r.mean_latency_s for r in runs]
        blocks = [r.blocking for r in runs]
        sim_mean = float(np.mean(means))
        half = 1.96 * float(np.std(means, ddof=1)) / math.sqrt(len(means)) if len(means) > 1 else 0
        rows.append(
            {
                "family": family,
                "a": a,
                "b": b,
                "N": n_cap,
                "load": load,
                "rate": rate,
                "model_ms": model_res.mean_latency * 1e3,
                "sim_ms": sim_mean * 1e3,
                "ci_pct": 100 * half / sim_mean,
                "err_pct": 100 * (model_res.mean_latency - sim_mean) / sim_mean,
                "model_block": model_res.blocking_probability,
                "sim_block": float(np.mean(blocks)),
            }
        )
        r = rows[-1]
        print(
            f"{family:13s} a={a:<2d} b={b:<2d} N={n_cap:<3d} load {load:.2f} "
            f"({rate:7.1f}/s): model {r['model_ms']:8.2f} ms  sim {r['sim_ms']:8.2f} ms "
            f"±{r['ci_pct']:.2f}%  err {r['err_pct']:+6.2f}%  blocking model "
            f"{r['model_block']:.4f} sim {r['sim_block']:.4f}",
            flush=True,
        )
    return rows


def _table(profile: Profile, cores: int, max_batch: int, cv: float) -> LatencyTable:
    """The profile's s(k, c) with a constant cv, so the model and the simulator agree on it."""
    base = LatencyTable.from_profile(profile, max_cores=cores, max_batch=max_batch)
    spread = [[cv] * (max_batch + 1) for _ in range(cores + 1)]
    return LatencyTable(base.service_s, spread, max_batch, cores)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", help="profile JSON (default: a synthetic AlexNet-like model)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--cv", type=float, default=0.3, help="cv of the lognormal service times")
    ap.add_argument(
        "--requests",
        type=int,
        default=20_000,
        help="requests per replication at low load; divided by (1 - load), since near "
        "saturation the queue forgets its past slowly and the mean needs longer runs",
    )
    ap.add_argument("--reps", type=int, default=5, help="independent replications per point")
    ap.add_argument("--quick", action="store_true", help="a 8-point grid")
    args = ap.parse_args()
    start = time.perf_counter()
    rows = run_grid(args)
    worst = max(rows, key=lambda r: abs(float(r["err_pct"])))
    worst_block = max(rows, key=lambda r: abs(float(r["model_block"]) - float(r["sim_block"])))
    outside = [r for r in rows if abs(float(r["err_pct"])) > 2.0]
    gap = abs(float(worst_block["model_block"]) - float(worst_block["sim_block"]))
    print(
        f"\n{len(rows)} points in {time.perf_counter() - start:.0f} s. worst mean-latency error "
        f"{float(worst['err_pct']):+.2f}% ({worst['family']} a={worst['a']} b={worst['b']} "
        f"N={worst['N']} load {worst['load']}, sim ±{float(worst['ci_pct']):.2f}%); worst "
        f"blocking gap {gap:.4f}"
        f"; {len(outside)} point(s) beyond 2%"
    )


if __name__ == "__main__":
    main()
