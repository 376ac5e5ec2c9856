"""Goodput past capacity in the simulator alone: policy variants side by side, Poisson and MMPP.

``overload.py`` measures one policy live and simulated; changing the policy's overload
rule needs many variants compared on the same traces, which only virtual time makes
cheap and free of the machine's drift. For each policy spec this prints simulated
goodput over the limit (the profile's best ``b / s(b, c)``) at 0.5x to 3x the limit,
for Poisson arrivals (the traces and seeds of ``overload.py``) and for bursty MMPP
arrivals (two rates 1:10, 5 s low and 1 s high, the same mean), with the mean batch.
The front end's CPU is charged as in ``overload.py``: from ``--frontend``, or from the
``frontend`` an earlier ``overload.py --json`` run measured (``--frontend-from``).

    .venv/bin/python benchmarks/overload_sim.py --profile P \\
        --frontend-from benchmarks/results/overload/alexnet-torch.json \\
        --policies slo:overload_tol=0.05,slo
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.overload import FACTORS, Bench, goodput
from qosbatch.metrics import summarize
from qosbatch.policies.registry import parse_policy_list
from qosbatch.sim.frontend import FrontEnd, parse_frontend
from qosbatch.workloads import parse_workload
from qosbatch.workloads.trace import Trace


def trace_of(bench: Bench, arrivals: str, rate: float, seed: int) -> Trace:
    """Poisson as ``overload.py`` draws it; or MMPP of mean ``rate``: 0.4x it for 5 s,
    then 4x it for 1 s, and again, for ``--mmpp-s``."""
    if arrivals == "poisson":
        return bench.trace(rate, seed=seed)
    a = bench.args
    text = (
        f"mmpp:rates={0.4 * rate:.4f}/{4 * rate:.4f},switch_s=5/1,"
        f"duration_s={a.mmpp_s:g},slo_ms={a.slo_ms:g}"
    )
    return parse_workload(text).generate(np.random.default_rng(seed), bench.model)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--profile", required=True, help="the model's profile JSON")
    ap.add_argument("--policies", default="slo", help="comma-separated policy specs")
    ap.add_argument("--slo-ms", type=float, default=500.0)
    ap.add_argument("--cores", type=int, default=1)
    ap.add_argument("--duration-s", type=float, default=30.0, help="per Poisson load")
    ap.add_argument("--mmpp-s", type=float, default=120.0, help="per MMPP load")
    ap.add_argument("--frontend", help="'request=0.15ms,result=0.3ms' (default: free)")
    ap.add_argument("--frontend-from", type=Path, help="an overload.py --json result")
    args = ap.parse_args()
    frontend: FrontEnd | None = None
    if args.frontend:
        frontend = parse_frontend(args.frontend)
    elif args.frontend_from:
        fe = json.loads(args.frontend_from.read_text())["frontend"]
        frontend = FrontEnd(fe["request_s"], fe["result_s"])
    specs = parse_policy_list(args.policies)
    print(f"front end: {frontend or 'free'}; cells: goodput/limit (mean batch)")
    print("| policy | arrivals | " + " | ".join(f"{f:g}x" for f in FACTORS) + " |")
    print("|---|---|" + "---:|" * len(FACTORS))
    for spec in specs:
        bench = Bench(argparse.Namespace(**vars(args), policy=spec.label))
        bench.frontend = frontend
        for arrivals in ("poisson", "mmpp"):
            cells = []
            for f in FACTORS:
                trace = trace_of(bench, arrivals, f * bench.limit, round(f * 100))
                records = bench.simulate(trace)
                share = goodput(records, trace.duration_s) / bench.limit
                cells.append(f"{share:.3f} ({summarize(records).mean_batch:.1f})")
            print(f"| {spec.label} | {arrivals} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
