"""Goodput past capacity, simulated and live: does the server hold the physical limit?

For one model, core count, policy and SLO this prints one table. Each row is a Poisson
load at a factor of the *limit*: the profile's best ``b / s(b, c)``, what the model
does in-process at its best batch. A row gives the simulated and the live goodput
(on-time answers per second of the trace) and their ratio. It also gives the front
end's CPU per request, read from the server's own ``process_cpu_seconds_total`` (the
HTTP process alone, not its workers). Then the benchmark searches live for the highest
Poisson rate at which p99 <= SLO, a shed request counting as a miss, as MLPerf's
LoadGen counts it.

The server and its workers run pinned to ``--server-cpus``, the load generator to
``--client-cpus``. The front end's cost enters the simulation (``qosbatch.sim.frontend``)
when ``--frontend`` gives it, or is measured first with ``--frontend auto``: one light
run where all are served, and one where all are shed at admission.

    .venv/bin/python benchmarks/overload.py --profile /tmp/qb/alexnet.json
    .venv/bin/python benchmarks/overload.py --profile /tmp/qb/alexnet-ort.json --duration-s 20
    .venv/bin/python benchmarks/overload.py --profile P --baseline-src /tmp/old/src  # before/after

With ``--baseline-src`` every live run is made twice, alternately, against a server
importing qosbatch from that source tree (an older commit's ``src``) and against this
one, so that before and after meet the same machine drift.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from qosbatch.client.loadgen import run_load
from qosbatch.core.errors import UserError
from qosbatch.core.profile import load_profile
from qosbatch.core.requests import ON_TIME, RecordTable
from qosbatch.latency.table import LatencyTable
from qosbatch.metrics import summarize
from qosbatch.policies.registry import parse_policy
from qosbatch.sim.capacity import bisect_load
from qosbatch.sim.frontend import FrontEnd, parse_frontend
from qosbatch.sim.kernel import Deployment, simulate
from qosbatch.testing import poisson_trace, running_server
from qosbatch.workloads.trace import Trace

FACTORS = (0.5, 1.0, 1.5, 2.0, 3.0)


def physical_limit(table: LatencyTable, cores: int) -> tuple[float, int]:
    """(requests/s, batch) of the best in-process throughput on ``cores``."""
    best = max(range(1, table.max_batch + 1), key=lambda b: b / table.s(b, cores))
    return best / table.s(best, cores), best


@dataclass
class Live:
    """One live run: what the client saw, and the front end's CPU over it."""

    goodput: float
    attainment: float
    rejected: int
    late: int
    errors: int
    mean_batch: float
    p99_ms: float
    requests: int
    cpu_s: float  # the front end's CPU seconds over the run (nan: the server does not say)

    @property
    def frontend_ms(self) -> float:
        """The front end's CPU per request."""
        return self.cpu_s / self.requests * 1e3 if self.requests else math.nan


@dataclass
class Row:
    factor: float
    rate: float
    sim_goodput: float
    sim_attainment: float
    sim_mean_batch: float
    live: Live
    baseline: Live | None = None


def goodput(records: RecordTable, duration_s: float) -> float:
    """On-time answers per second of the trace (one span for simulated and live runs)."""
    return int(np.count_nonzero(records.outcome == ON_TIME)) / duration_s


def _cpu_seconds(url: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("process_cpu_seconds_total "):
                return float(line.split()[1])
    return math.nan


@contextmanager
def pinned(cpus: list[int]) -> Iterator[None]:
    """This process on ``cpus`` (the load generator's); the old affinity after."""
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, old)


class Bench:
    """The model, the machine's split and the servers under test."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.profile = load_profile(args.profile)
        self.model = self.profile.model.name
        self.table = LatencyTable.from_profile(self.profile, args.cores)
        self.limit, self.best_batch = physical_limit(self.table, args.cores)
        self.frontend: FrontEnd | None = None

    def trace(self, rate: float, slo_ms: float | None = None, seed: int = 0) -> Trace:
        slo = self.args.slo_ms if slo_ms is None else slo_ms
        return poisson_trace(rate, self.args.duration_s, slo, seed, self.model)

    def simulate(self, trace: Trace) -> RecordTable:
        policy = parse_policy(self.args.policy).factory()
        deployment = Deployment(self.model, self.table, self.args.cores)
        return simulate(trace, [deployment], policy, frontend=self.frontend).records

    @contextmanager
    def server(self, src: str | None = None) -> Iterator[str]:
        a = self.args
        cli = ["serve", "--model", self.model, "--profile", a.profile, "--policy", a.policy,
               "--cores", a.cores, "--backend", self.profile.model.backend, "--port", 0,
               "--slo", f"{a.slo_ms}ms"]  # fmt: skip
        env = None if src is None else {**os.environ, "PYTHONPATH": src}
        with running_server(cli, env=env, cpus=a.server_cpus) as url:
            yield url

    def live(self, url: str, trace: Trace) -> Live:
        before = _cpu_seconds(url)
        with pinned(self.args.client_cpus):
            result = asyncio.run(run_load(url, self.model, trace))
        cpu = _cpu_seconds(url) - before
        m = summarize(result.records)
        return Live(
            goodput(result.records, self.args.duration_s),
            m.attainment,
            m.rejected,
            m.late,
            result.errors,
            m.mean_batch,
            m.p99_ms,
            len(trace),
            cpu,
        )

    def calibrate(self, url: str) -> FrontEnd:
        """The front end's CPU per request: shed at admission, and answered with a result.

        One run where every request is shed at admission, at twice the limit, gives
        ``request_s``; one at 0.75x the limit, where all are served, gives the CPU per
        served request, ``request_s + result_s``. Both are the process's CPU over its
        requests, timers and idle loop included: a fixed-plus-linear fit of two light
        runs gave ~0 per shed request here (the per-request cost falls with the rate,
        as the loop's wake-ups and each batch's costs spread over more requests).
        """
        shed = self.live(url, self.trace(2 * self.limit, slo_ms=0.01, seed=3))
        served = self.live(url, self.trace(0.75 * self.limit, seed=2))
        request_s = shed.cpu_s / shed.requests
        result_s = max(0.0, served.cpu_s / served.requests - request_s)
        print(
            f"front end: {request_s * 1e3:.3f} ms per request shed at admission (at 2x), "
            f"{served.frontend_ms:.3f} ms per request served (at 0.75x)",
            flush=True,
        )
        return FrontEnd(request_s, result_s)


def search(passes: Callable[[float], bool], limit: float) -> float:
    """Highest rate found to pass, by the simulator's own bisection (factors of the limit)."""
    return bisect_load(passes, start=0.8, rel_tol=0.04, max_runs=7) * limit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", required=True, help="the model's profile JSON")
    ap.add_argument("--policy", default="slo")
    ap.add_argument("--slo-ms", type=float, default=500.0)
    ap.add_argument("--cores", type=int, default=1)
    ap.add_argument("--factors", default=",".join(map(str, FACTORS)))
    ap.add_argument("--duration-s", type=float, default=30.0, help="per load")
    ap.add_argument("--server-cpus", default="1", help="CPUs of the server and its workers")
    ap.add_argument("--client-cpus", default="0", help="CPUs of the load generator")
    ap.add_argument(
        "--frontend",
        default="auto",
        help="the front end's CPU in simulation: auto (measure it), none, or "
        "'request=0.3ms,result=0.2ms'",
    )
    ap.add_argument("--no-search", action="store_true", help="skip the p99 <= SLO search")
    ap.add_argument("--baseline-src", help="also run a server from this source tree (before)")
    ap.add_argument("--json", type=Path, help="write every figure here too")
    args = ap.parse_args()
    args.server_cpus = [int(c) for c in args.server_cpus.split(",")]
    args.client_cpus = [int(c) for c in args.client_cpus.split(",")]
    if set(args.server_cpus) & set(args.client_cpus):
        sys.exit("--server-cpus and --client-cpus must not overlap")
    if len(args.server_cpus) < args.cores:
        sys.exit(f"--cores {args.cores} needs as many --server-cpus")
    factors = [float(f) for f in args.factors.split(",")]
    b = Bench(args)
    print(
        f"{b.model} ({b.profile.model.backend}), {args.cores} core(s), policy {args.policy}, "
        f"SLO {args.slo_ms:g} ms, Poisson {args.duration_s:g} s per load; limit "
        f"{b.limit:.1f} req/s (batch {b.best_batch}); server on CPUs {args.server_cpus}, "
        f"client on {args.client_cpus}",
        flush=True,
    )
    rows: list[Row] = []
    with b.server() as url:
        if args.frontend == "auto":
            b.frontend = b.calibrate(url)
        elif args.frontend != "none":
            b.frontend = parse_frontend(args.frontend)
        for f in factors:
            trace = b.trace(f * b.limit, seed=round(f * 100))
            sim = b.simulate(trace)
            ms = summarize(sim)
            live = b.live(url, trace)
            rate = len(trace) / args.duration_s
            row = Row(f, rate, goodput(sim, args.duration_s), ms.attainment, ms.mean_batch, live)
            rows.append(row)
            print(_line(rows[-1], b.limit), flush=True)
        best = math.nan
        if not args.no_search:

            def passes(factor: float) -> bool:
                got = b.live(url, b.trace(factor * b.limit, seed=round(factor * 1000)))
                print(f"  search: {factor * b.limit:.1f} req/s attainment {got.attainment:.4f}")
                return got.attainment >= 0.99

            best = search(passes, b.limit)
    if args.baseline_src:
        with b.server(args.baseline_src) as url:
            for r in rows:
                r.baseline = b.live(url, b.trace(r.factor * b.limit, seed=round(r.factor * 100)))
    _table(rows, b.limit)
    if not args.no_search:
        print(
            f"highest Poisson rate with p99 <= {args.slo_ms:g} ms (shed = miss): "
            f"{best:.1f} req/s = {best / b.limit:.2f}x the limit"
        )
    if args.json:
        out = {"model": b.model, "limit": b.limit, "args": {k: str(v) for k, v in
               vars(args).items()}, "frontend": b.frontend and asdict(b.frontend),
               "rows": [asdict(r) for r in rows], "p99_rate": best}  # fmt: skip
        args.json.write_text(json.dumps(out, indent=1))


def _line(r: Row, limit: float) -> str:
    return (
        f"  x{r.factor:g}: {r.rate:.1f} req/s, sim goodput {r.sim_goodput:.1f}, live "
        f"{r.live.goodput:.1f} (front end {r.live.frontend_ms:.3f} ms/req)"
    )


def _table(rows: list[Row], limit: float) -> None:
    base = any(r.baseline for r in rows)
    head = ["load", "req/s", "sim goodput", "live goodput", "limit", "live/sim", "live/limit",
            "sim batch", "live batch", "fe ms/req"]  # fmt: skip
    if base:
        head += ["before: live goodput", "before/limit"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = [f"{r.factor:g}x", f"{r.rate:.1f}", f"{r.sim_goodput:.1f}",
                 f"{r.live.goodput:.1f}", f"{limit:.1f}",
                 f"{r.live.goodput / r.sim_goodput:.2f}" if r.sim_goodput else "-",
                 f"{r.live.goodput / limit:.2f}", f"{r.sim_mean_batch:.1f}",
                 f"{r.live.mean_batch:.1f}", f"{r.live.frontend_ms:.3f}"]  # fmt: skip
        if base:
            g = r.baseline.goodput if r.baseline else math.nan
            cells += [f"{g:.1f}", f"{g / limit:.2f}"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    try:
        main()
    except UserError as exc:  # a wrong profile or flag: one line, not a traceback
        sys.exit(f"overload.py: {exc}")
