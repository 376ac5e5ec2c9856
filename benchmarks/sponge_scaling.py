"""In-place vertical scaling under budgets that tighten and relax (the Sponge scenario), simulated.

Requests arrive at a steady Poisson rate, but their network delay swings slowly
(a sine wave plus lognormal jitter), so each request's budget, the SLO minus
its delay, tightens and relaxes over minutes. ``slo`` picks the cores of every
batch: few while budgets are loose, all when they are tight. It is compared with
the same policy held at a fixed allocation: all cores, and the smallest count
(each with scaling off). Reported: attainment, p99 and core-seconds (cores x
time of every batch), the cost a pay-per-core node bills.

Most telling on a model whose speed-up from more cores is well below linear
(alexnet here: 1.4-1.8x on 2 cores), where a core added costs more than it saves.

``--live`` runs the same three configurations on the live server instead (one
``qosbatch serve`` each, with ``--cores``; the same trace through the load
generator): attainment from the client's side, core-seconds from the server's
``qosbatch_core_seconds_total``, so the worker's re-pinning per batch is what is
measured. The client shares the machine's cores with the server (a light load:
alexnet at 10-16 req/s), and ``--cores 1`` runs on the first core.

    .venv/bin/python benchmarks/sponge_scaling.py --profile /tmp/qb/alexnet.json
    .venv/bin/python benchmarks/sponge_scaling.py --profile /tmp/qb/alexnet.json --live \
        --duration-s 90 --period-s 30
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import urllib.request

import numpy as np

from qosbatch.client.loadgen import run_load
from qosbatch.core.profile import load_profile
from qosbatch.latency.table import LatencyTable
from qosbatch.metrics import Metrics, summarize
from qosbatch.policies.registry import parse_policy
from qosbatch.sim.kernel import Deployment, simulate
from qosbatch.testing import running_server
from qosbatch.workloads.trace import Trace


def swinging_trace(
    model: str, rate: float, duration_s: float, slo_ms: float, delay_ms: tuple[float, float],
    period_s: float, seed: int,
) -> Trace:  # fmt: skip
    """Poisson arrivals; budget = slo - delay(t), delay swinging between the two bounds."""
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.exponential(1 / rate, int(rate * duration_s * 1.2) + 10))
    times = times[times < duration_s]
    low, high = delay_ms
    swing = low + (high - low) * (1 - np.cos(2 * math.pi * times / period_s)) / 2
    delay = swing * rng.lognormal(0.0, 0.1, len(times))
    budget = np.maximum(slo_ms - delay, 1.0)
    return Trace.of(times, budget, model)


def core_seconds(url: str, model: str) -> float:
    """The server's own bill: ``qosbatch_core_seconds_total`` of ``model``."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(f'qosbatch_core_seconds_total{{model="{model}"}}'):
                return float(line.split()[-1])
    raise RuntimeError("the server exposes no qosbatch_core_seconds_total")


def live_run(trace: Trace, model: str, profile: str, spec: str, cores: int) -> Metrics:
    """One configuration on a live ``qosbatch serve``; core-seconds from the server."""
    args = ["serve", "--model", model, "--profile", profile, "--policy", spec,
            "--cores", str(cores), "--port", "0"]  # fmt: skip
    with running_server(args) as url:
        records = asyncio.run(run_load(url, model, trace)).records
        billed = core_seconds(url, model)
    return dataclasses.replace(summarize(records), core_seconds=billed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", required=True)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--rate", type=float, default=0.0, help="req/s (default: 15%% of capacity)")
    ap.add_argument("--slo-ms", type=float, default=0.0, help="default: 5 x s(1, all cores)")
    ap.add_argument("--duration-s", type=float, default=600.0)
    ap.add_argument("--period-s", type=float, default=120.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--live", action="store_true", help="on the live server, not simulated")
    args = ap.parse_args()
    profile = load_profile(args.profile)
    model, n = profile.model.name, args.cores
    table = LatencyTable.from_profile(profile, n, 64)
    capacity = max(b / table.s(b, n) for b in range(1, 65))
    rate = args.rate or 0.15 * capacity  # (at 40% no policy scales down: see docs)
    slo_ms = args.slo_ms or 5 * table.s(1, n) * 1e3
    # Delay swings from nothing to leaving barely two single batches on all cores.
    tight = slo_ms - 2.2 * table.s(1, n) * 1e3
    trace = swinging_trace(
        model, rate, args.duration_s, slo_ms, (0.0, tight), args.period_s, args.seed
    )
    fixed = "slo:scale_down=false,boost=false"
    runs = [("slo, cores per batch", "slo", n)]
    runs += [(f"slo fixed at {c} core(s)", fixed, c) for c in range(n, 0, -1)]
    print(
        f"{model}: {len(trace)} requests at {rate:.1f} req/s over {args.duration_s:g} s; "
        f"SLO {slo_ms:.0f} ms minus a delay swinging 0-{tight:.0f} ms every {args.period_s:g} s"
    )
    print(f"{'run':<26}{'attain %':>9}{'p99 ms':>9}{'core-s':>9}{'core-s/req':>11}")
    rows = []
    for label, spec, cores in runs:
        if args.live:
            m = live_run(trace, model, args.profile, spec, cores)
        else:
            t = table if cores == n else LatencyTable.from_profile(profile, cores, 64)
            res = simulate(trace, [Deployment(model, t, cores)], parse_policy(spec).factory(),
                           seed=args.seed)  # fmt: skip
            m = summarize(res.records)
        rows.append((label, m))
        print(
            f"{label:<26}{100 * m.attainment:>9.2f}{m.p99_ms:>9.1f}{m.core_seconds:>9.1f}"
            f"{m.core_seconds / max(1, m.on_time + m.late) * 1e3:>10.1f}m"
        )
    adaptive, all_cores = rows[0][1], rows[1][1]
    print(
        f"cores per batch / all cores fixed: core-seconds "
        f"{adaptive.core_seconds / all_cores.core_seconds:.2f}x, attainment "
        f"{100 * (adaptive.attainment - all_cores.attainment):+.2f} points"
    )


if __name__ == "__main__":
    main()
