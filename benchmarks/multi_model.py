"""Several models on one node whose load moves between them: a static split vs shared cores.

Two zoo models with different SLOs are served by one ``qosbatch serve`` on the
node's cores (2 here), with the ``slo`` policy, twice:

* **static**: ``--cores N`` split evenly, each model owns its half (the default);
* **shared**: ``--share-cores``, every batch of either model draws its CPUs from
  one pool (``serve/core_pool.py``), so the busy model takes the cores the idle
  one leaves, batch by batch, in place (workers re-pin; nothing restarts).

The load moves: for the first half of the run model A is busy and B light, for
the second half the other way round (``step`` workloads, the same traces for both
runs). Each model's attainment and p99 come from the client's side, its
core-seconds from the server's ``qosbatch_core_seconds_total``. The defaults are
resnet18 (SLO 300 ms) and alexnet (150 ms), loaded past what one core carries and
within what two do (from their profiles on this machine: resnet18 s(1) = 59 ms
on 1 core, 31 ms on 2; alexnet 29 and 20 ms).

    .venv/bin/python benchmarks/multi_model.py --profiles /tmp/qb/resnet18.json,/tmp/qb/alexnet.json

The load generator shares the machine's cores with the server (it is light next to
these models); every server is stopped on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import urllib.request

import numpy as np

from qosbatch.client.loadgen import run_load
from qosbatch.core.profile import load_profile
from qosbatch.metrics import summarize
from qosbatch.testing import running_server
from qosbatch.workloads import parse_workload
from qosbatch.workloads.trace import Trace


def billed(url: str) -> dict[str, float]:
    """Core-seconds per model, from the server's own counter."""
    out = {}
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("qosbatch_core_seconds_total{"):
                model = line.split('model="')[1].split('"')[0]
                out[model] = float(line.split()[-1])
    return out


async def drive(url: str, traces: dict[str, Trace]) -> dict[str, object]:
    results = await asyncio.gather(*(run_load(url, m, t) for m, t in traces.items()))
    return {m: r.records for m, r in zip(traces, results, strict=True)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profiles", required=True, help="two profile JSONs, comma-separated")
    ap.add_argument("--slos-ms", default="300,150")
    ap.add_argument("--busy", default="24,45", help="each model's req/s in its busy half")
    ap.add_argument("--light", default="4,5", help="each model's req/s in its light half")
    ap.add_argument("--half-s", type=float, default=20.0)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    paths = args.profiles.split(",")
    models = [load_profile(p).model.name for p in paths]
    slos = [float(x) for x in args.slos_ms.split(",")]
    busy = [float(x) for x in args.busy.split(",")]
    light = [float(x) for x in args.light.split(",")]
    h = args.half_s
    traces = {}
    for i, m in enumerate(models):
        first, second = (busy[i], light[i]) if i == 0 else (light[i], busy[i])
        spec = f"step:rates={first}/{second},at_s=0/{h},duration_s={2 * h},slo_ms={slos[i]}"
        traces[m] = parse_workload(spec).generate(np.random.default_rng(args.seed + i), m)
    base = ["serve", "--policy", "slo", "--cores", str(args.cores), "--port", "0"]
    for m, p in zip(models, paths, strict=True):
        base += ["--model", m, "--profile", p]  # (budgets come with each request)
    print(
        f"{' and '.join(models)} on {args.cores} cores; busy/light req/s "
        f"{args.busy} / {args.light}, halves of {h:g} s, SLOs {args.slos_ms} ms"
    )
    print(f"{'run':<8}{'model':<10}{'attain %':>9}{'p99 ms':>9}{'rejected':>9}{'core-s':>8}")
    for label, extra in (("static", []), ("shared", ["--share-cores"])):
        with running_server([*base, *extra]) as url:
            records = asyncio.run(drive(url, traces))
            cost = billed(url)
        for m in models:
            s = summarize(records[m])  # type: ignore[arg-type]
            print(
                f"{label:<8}{m:<10}{100 * s.attainment:>9.2f}{s.p99_ms:>9.1f}"
                f"{s.rejected:>9}{cost.get(m, 0.0):>8.1f}"
            )


if __name__ == "__main__":
    main()
