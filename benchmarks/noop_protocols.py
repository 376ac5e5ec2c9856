"""The no-op model over HTTP and over gRPC on one qosbatch server, side by side.

One ``qosbatch serve --model noop --grpc-port 0`` (front end and worker pinned to
``--server-cpus``, default CPU 1) takes the same open-loop Poisson workload from
``qosbatch bench`` (pinned to ``--client-cpus``, default CPU 0) over each protocol
in turn, alternating, ``--rounds`` times. Per run: the answers per second, p50/p99
from the client's side, and the front end's CPU per request, from the server
process's own ticks (utime + stime in /proc/PID/stat) over the run divided by the
requests: the cost that decides how many requests a core can take. (The worker's
cost is the same whichever transport brought the request, so it is left out.)

    .venv/bin/python benchmarks/serve_noop.py --protocols http,grpc,grpc-stream [--rate 4000] \
        [--duration 5] [--rounds 3] [--json]

Run by ``serve_noop.py --protocols``; also runnable alone with the same options.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qosbatch.launch import running
from qosbatch.testing import banner_url

QOSBATCH = str(Path(sys.executable).parent / "qosbatch")
POLICY = "dynamic:max_batch_size=32,max_queue_delay_ms=2"
TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """Seconds of CPU the process has used (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S


def bench(protocol: str, address: str, args: argparse.Namespace, duration_s: float) -> dict:
    """One ``qosbatch bench`` run on the client's CPUs; its JSON row."""
    workload = f"poisson:rate={args.rate},duration_s={duration_s},slo_ms={args.slo_ms}"
    cmd = ["taskset", "-c", args.client_cpus, QOSBATCH, "bench", "--model", "noop"]
    cmd += ["--protocol", protocol, "--url", address, "--workload", workload, "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 60)
    if done.returncode != 0:
        raise RuntimeError(f"bench --protocol {protocol} failed: {done.stderr[-2000:]}")
    return dict(json.loads(done.stdout)[0])


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every round's runs, then the medians per protocol and their ratios."""
    cmd = [QOSBATCH, "serve", "--model", "noop", "--policy", POLICY, "--cores", "1"]
    cmd += ["--port", "0", "--grpc-port", "0"]
    runs: list[dict[str, Any]] = []
    with running("qosbatch serve", cmd, banner_url, 120, cpus=args.server_cpus) as server:
        assert server.proc is not None and server.url is not None
        found = re.search(r"gRPC \(KServe v2\) on (\S+)", server.log_text())
        assert found, server.log_text()
        address = {"http": server.url, "grpc": found.group(1), "grpc-stream": found.group(1)}
        for protocol in args.protocols:  # warm-up: connections, code paths, the first batches
            bench(protocol, address[protocol], args, 1.0)
        for r in range(args.rounds):
            for protocol in args.protocols:
                before = cpu_s(server.proc.pid)
                row = bench(protocol, address[protocol], args, args.duration)
                spent = cpu_s(server.proc.pid) - before
                runs.append(
                    {
                        "round": r + 1,
                        "protocol": protocol,
                        "rps": row["throughput"],
                        "p50_ms": row["p50_ms"],
                        "p99_ms": row["p99_ms"],
                        "requests": row["requests"],
                        "errors": row["errors"],
                        "rejected": row["rejected"],
                        "cpu_ms_per_request": spent * 1e3 / row["requests"],
                    }
                )
                print(_line(runs[-1]), file=sys.stderr, flush=True)
    return {"settings": _settings(args), "runs": runs, "summary": summarize(runs)}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per protocol, and gRPC over HTTP (capacity: HTTP's CPU per request / gRPC's)."""
    out: dict[str, Any] = {}
    for protocol in sorted({r["protocol"] for r in runs}):
        mine = [r for r in runs if r["protocol"] == protocol]
        out[protocol] = {
            k: statistics.median(r[k] for r in mine)
            for k in ("rps", "p50_ms", "p99_ms", "cpu_ms_per_request")
        }
    for grpc in ("grpc", "grpc-stream"):
        if "http" in out and grpc in out:
            h, g = out["http"], out[grpc]
            out[f"{grpc.replace('-', '_')}_over_http"] = {
                "rps": g["rps"] / h["rps"],
                "requests_per_core_second": h["cpu_ms_per_request"] / g["cpu_ms_per_request"],
            }
    return out


def _line(r: dict[str, Any]) -> str:
    return (
        f"round {r['round']} {r['protocol']:<11} {r['rps']:8.0f} req/s  p50 {r['p50_ms']:7.2f} ms"
        f"  p99 {r['p99_ms']:8.2f} ms  front-end CPU {r['cpu_ms_per_request'] * 1e3:6.1f} us/req"
        f"  errors {r['errors']}"
    )


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "rate": args.rate,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "server_cpus": args.server_cpus,
        "client_cpus": args.client_cpus,
        "policy": POLICY,
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def add_options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--rate", type=float, default=4000.0, help="Poisson requests per second")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--slo-ms", type=float, default=1000.0)
    ap.add_argument("--server-cpus", default="1")
    ap.add_argument("--client-cpus", default="0")


def report(args: argparse.Namespace) -> int:
    result = measure(args)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    for protocol, s in result["summary"].items():
        if protocol.endswith("_over_http"):
            print(
                f"{protocol.removesuffix('_over_http')} / http: req/s x{s['rps']:.2f}, "
                f"requests per core-second x{s['requests_per_core_second']:.2f}"
            )
        else:
            print(
                f"{protocol:<11} median {s['rps']:8.0f} req/s  p50 {s['p50_ms']:.2f} ms  "
                f"p99 {s['p99_ms']:.2f} ms  {s['cpu_ms_per_request'] * 1e3:.1f} us CPU/request"
            )
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--protocols", type=lambda s: s.split(","), default=["http", "grpc"])
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--json", action="store_true")
    add_options(ap)
    return report(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
