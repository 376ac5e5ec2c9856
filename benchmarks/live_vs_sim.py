"""The same trace through the simulator and through the live server: how far apart are they?

A policy proven in simulation is the policy served, so the simulator is only as
useful as its agreement with the server. This draws one trace, simulates it with
the profile's latency model, then replays it open-loop (``qosbatch bench``'s load
generator) against ``qosbatch serve`` running the same model, profile, policy and
cores, and prints attainment, mean and tail latency of both and their relative
error (the aim: within 2%).

The server's own latency histogram (``/metrics``, before and after) gives its
mean arrival-to-answer time; the client's mean minus it is the per-request
overhead outside the queue (transfer, decoding, encoding). A third row simulates
again with that overhead (``qosbatch.sim.overhead``: all of it inbound, where the
tensor travels), which is what the simulator was missing.

    .venv/bin/python benchmarks/live_vs_sim.py --profile /tmp/qb/resnet18.json \\
        --workload 'poisson:rate=12,duration_s=60,slo_ms=300' --cores 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math

import numpy as np

from qosbatch.client.loadgen import run_load
from qosbatch.core.profile import load_profile
from qosbatch.core.requests import RecordTable
from qosbatch.latency.table import LatencyTable
from qosbatch.metrics import Metrics, mean_latency_ms, summarize
from qosbatch.policies.registry import parse_policy
from qosbatch.sim.kernel import Deployment, simulate
from qosbatch.sim.overhead import client_side, server_side
from qosbatch.testing import running_server
from qosbatch.workloads.spec import parse_workload
from qosbatch.workloads.trace import Trace


def _server_latency(url: str, model: str) -> tuple[float, float]:
    """(sum, count) of the server's request-latency histogram for ``model``."""
    import urllib.request

    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
        text = r.read().decode()
    total = count = 0.0
    for line in text.splitlines():
        if f'model="{model}"' not in line:
            continue
        if line.startswith("qosbatch_request_latency_seconds_sum"):
            total = float(line.rsplit(" ", 1)[1])
        elif line.startswith("qosbatch_request_latency_seconds_count"):
            count = float(line.rsplit(" ", 1)[1])
    return total, count


def live(args: argparse.Namespace, model: str, trace: Trace) -> tuple[RecordTable, float]:
    cli = ["serve", "--model", model, "--profile", args.profile, "--policy", args.policy,
           "--cores", args.cores, "--port", 0]  # fmt: skip
    with running_server(cli) as url:
        before = _server_latency(url, model)
        records = asyncio.run(run_load(url, model, trace)).records
        after = _server_latency(url, model)
    count = after[1] - before[1]
    server_mean_s = (after[0] - before[0]) / count if count else math.nan
    return records, server_mean_s


def row(name: str, m: Metrics, mean_ms: float) -> dict[str, float | str]:
    return {
        "run": name,
        "attainment": m.attainment,
        "mean_ms": mean_ms,
        "p50_ms": m.p50_ms,
        "p99_ms": m.p99_ms,
        "rejected": m.rejected,
        "late": m.late,
        "mean_batch": m.mean_batch,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", required=True)
    ap.add_argument("--policy", default="slo")
    ap.add_argument("--workload", default="poisson:rate=12,duration_s=60,slo_ms=300")
    ap.add_argument("--cores", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    profile = load_profile(args.profile)
    model = profile.model.name
    trace = parse_workload(args.workload).generate(np.random.default_rng(args.seed), model)
    table = LatencyTable.from_profile(profile, args.cores)
    sim = simulate(
        trace, [Deployment(model, table, args.cores)], parse_policy(args.policy).factory()
    ).records
    got, server_mean_s = live(args, model, trace)
    overhead_s = max(0.0, mean_latency_ms(got) / 1e3 - server_mean_s)
    shifted = simulate(
        server_side(trace, overhead_s),
        [Deployment(model, table, args.cores)],
        parse_policy(args.policy).factory(),
    ).records
    with_overhead = client_side(shifted, overhead_s, 0.0)
    rows = [
        row("simulated", summarize(sim), mean_latency_ms(sim)),
        row("live", summarize(got), mean_latency_ms(got)),
        row("sim+ovh", summarize(with_overhead), mean_latency_ms(with_overhead)),
    ]

    def error(sim_row: dict[str, float | str]) -> dict[str, float]:
        return {
            k: (rows[1][k] - sim_row[k]) / sim_row[k] if sim_row[k] else math.nan  # type: ignore[operator]
            for k in ("attainment", "mean_ms", "p50_ms", "p99_ms")
        }

    err, err_ovh = error(rows[0]), error(rows[2])
    if args.json:
        out = {"rows": rows, "overhead_ms": overhead_s * 1e3, "relative_error": err,
               "relative_error_with_overhead": err_ovh}  # fmt: skip
        print(json.dumps(out, indent=1))
        return
    what = f"{args.workload}, policy {args.policy}, {args.cores} core(s)"
    print(f"{model}, {len(trace)} requests, {what}")
    keys = ("attainment", "mean_ms", "p50_ms", "p99_ms", "rejected", "late", "mean_batch")
    print(f"{'run':<10}" + "".join(f"{k:>12}" for k in keys))
    for r in rows:
        print(f"{r['run']:<10}" + "".join(f"{float(r[k]):>12.3f}" for k in keys))
    print(f"server overhead per request (client mean - server mean): {overhead_s * 1e3:.1f} ms")
    print("live vs simulated: " + ", ".join(f"{k} {100 * v:+.1f}%" for k, v in err.items()))
    print(
        "live vs simulated with the overhead: "
        + ", ".join(f"{k} {100 * v:+.1f}%" for k, v in err_ovh.items())
    )


if __name__ == "__main__":
    main()
