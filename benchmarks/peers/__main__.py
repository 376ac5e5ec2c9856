"""Side by side: qosbatch against Triton, Ray Serve, BentoML and MLServer, live.

    .venv/bin/python -m benchmarks.peers                       # everything (about an hour)
    .venv/bin/python -m benchmarks.peers --systems qosbatch,triton --scenarios a --quick

Every system serves the same ONNX model (a zoo model exported once: the same
weights) with ONNX Runtime on the same pinned cores (``--server-cpus``, default
CPU 1; the load generator runs pinned on ``--client-cpus``, default CPU 0, so the
two never compete). Each peer is installed into its own pinned venv on first use.
One load generator drives them all (``qosbatch.client.loadgen``, v2 JSON, open
loop), each request carrying its budget in the system's own field where it has
one; a reply after the budget is late whoever sent it.

Two workloads: (a) Poisson with a fixed SLO, and (b) bursty MMPP (1:8 rates,
5 s / 1 s dwell) with network-delay SLOs (a base budget minus a lognormal delay,
the Sponge scenario). For each system and workload (``harness.evaluate``): every
knob setting of its grid gets a coarse capacity search, the best is refined to
its capacity at 99% attainment, and one run at 1.5x that load shows its overload
behaviour. Results go to ``--out`` (default benchmarks/results): ``peers.md``
(table, machine, versions, settings), ``peers.png`` (attainment against load)
and ``peers.json`` (every run's metrics); server logs to a temporary folder.
All traffic is on 127.0.0.1; every server is stopped as a process group, on
errors and Ctrl-C too.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import datetime as dt
import functools
import json
import math
import os
import platform
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from benchmarks.peers.harness import Outcome, RunTrace, SearchSettings, evaluate
from benchmarks.peers.model import DEFAULT_MODEL, export_model, probe_body
from benchmarks.peers.procs import free_port, launched_peer, log, stop_all
from benchmarks.peers.registry import SYSTEMS
from benchmarks.peers.systems import Knobs, ModelFiles, System
from benchmarks.peers.venvs import CACHE
from qosbatch.client.loadgen import run_load
from qosbatch.metrics import Metrics, summarize
from qosbatch.sim.capacity import TraceAt, mean_rate
from qosbatch.workloads import parse_workload
from qosbatch.workloads.trace import Trace

RESULTS = Path(__file__).resolve().parents[1] / "results"
READY_TIMEOUT_S = 240.0


def scenario_specs(args: argparse.Namespace) -> dict[str, tuple[str, str]]:
    """Workload specs at load factor 1 (the rate guess), by key: (title, spec)."""
    r = args.rate_guess
    return {
        "a": (
            f"(a) Poisson, SLO {args.slo_ms:g} ms",
            f"poisson:rate={r:g},duration_s={args.duration_a:g},slo_ms={args.slo_ms:g}",
        ),
        "b": (
            f"(b) bursty MMPP 1:8, netdelay SLO (base {args.base_ms:g} ms, "
            f"delay {args.delay_ms:g} ms)",
            f"mmpp:rates={r / 4:g}/{2 * r:g},switch_s=5/1,duration_s={args.duration_b:g},"
            f"slo=netdelay,base_ms={args.base_ms:g},delay_ms={args.delay_ms:g},delay_sigma=0.5",
        ),
    }


def traces_for(spec: str, model: str, seed: int) -> TraceAt:
    parsed = parse_workload(spec)
    return lambda factor: parsed.scaled(factor).generate(np.random.default_rng(seed), model)


def warmup_trace(traces: TraceAt, seconds: float = 2.0) -> Trace:
    """The first seconds of the workload at half its rate guess (another seed's worth)."""
    t = traces(0.5)
    keep = t.time_s < seconds
    return Trace(t.time_s[keep], t.model[keep], t.models, t.slo_ms[keep])


@contextlib.contextmanager
def serving(
    system: System,
    model: ModelFiles,
    knobs: Knobs,
    cpus: str,
    threads: int,
    work: Path,
    grace_s: float,
    warmup: Trace,
) -> Iterator[RunTrace]:
    """One system serving one setting, for as long as the block runs; stopped whole after.

    Every system first gets the same short warm-up run, not measured: first batches of
    each size allocate (ONNX Runtime's arena, BentoML's and Ray's batchers calibrate),
    and a first measured run would otherwise judge that instead of the steady state.
    """
    tag = f"{system.name}-{len(list(work.glob('*.log')))}"
    workdir = work / tag
    workdir.mkdir()
    port = free_port()
    launch = system.launch(model, knobs, port, threads, workdir)
    log_path = work / f"{tag}.log"
    body = probe_body(model)
    with launched_peer(
        system.name, launch, cpus, port, log_path, model.name, body, READY_TIMEOUT_S
    ) as server:
        log(f"{system.name} {dict(knobs)} ready in {server.ready_s:.1f} s ({log_path})")

        def run(trace: Trace) -> Metrics:
            result = asyncio.run(
                run_load(
                    server.url, model.name, trace, encoding="json",
                    slo_parameters=system.request_parameters, grace_s=grace_s,
                )
            )  # fmt: skip
            time.sleep(0.5)  # let the server settle between runs
            return summarize(result.records)

        run(warmup)
        yield run


def same_loads(
    outcomes: list[Outcome], serves: dict[str, Any], traces: TraceAt, multipliers: list[float]
) -> dict[str, Any]:
    """Every system's chosen setting at the same loads, in rounds: one run each per load.

    The searches run one system after another, minutes apart, on a shared machine
    whose speed drifts (measured here: the same qosbatch search gave 446 and 604
    req/s an hour apart). These rounds put the systems side by side at equal
    offered loads within minutes: multiples of the best capacity found.
    """
    best = max((o for o in outcomes if o.chosen), key=lambda o: o.capacity, default=None)
    if best is None or best.chosen is None or best.capacity <= 0:
        return {}
    factors = [best.chosen.factor * m for m in multipliers]
    table: dict[str, Any] = {"multipliers": multipliers, "reference": best.system, "runs": {}}
    near = [o for o in outcomes if o.chosen is not None and o.capacity >= best.capacity / 2]
    table["left_out"] = sorted({o.system for o in outcomes} - {o.system for o in near})
    for mult, factor in zip(multipliers, factors, strict=True):
        for o in near:  # (a system below half the best would only overload, slowly)
            assert o.chosen is not None
            trace = traces(factor)
            try:
                with serves[o.system](o.chosen.knobs) as run:
                    m = run(trace)
            except Exception as exc:
                log(f"round x{mult:g}: {o.system}: {type(exc).__name__}: {exc}")
                continue
            log(f"round x{mult:g} ({mean_rate(trace):.1f} req/s): {o.system} {m.attainment:.4f}")
            table["runs"].setdefault(o.system, {})[str(mult)] = {
                "rate": mean_rate(trace),
                **m.to_json(),
            }
    return table


def machine() -> dict[str, Any]:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def _fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def table(report: dict[str, Any]) -> str:
    lines = [
        "# Side by side: capacity at 99% attainment, live",
        "",
        f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, "
        f"{report['machine']['platform']}; {report['machine']['date']}.",
        f"Model: `{report['model']}` (ONNX Runtime, the same file for every system). "
        f"Cores: servers pinned to CPU {report['server_cpus']}, the load generator to CPU "
        f"{report['client_cpus']}.",
        "",
        "Command: `" + report["command"] + "`",
        "",
    ]
    for scen in report["scenarios"].values():
        lines += [
            f"## {scen['title']}",
            "",
            f"Workload at load factor 1: `{scen['spec']}`",
            "",
            "| system | best setting | capacity (req/s) | qosbatch / it | p99 at capacity "
            "| at 1.5x: attainment / late / rejected / p99 |",
            "|---|---|---|---|---|---|",
        ]
        ours = next((o for o in scen["outcomes"] if o["system"] == "qosbatch"), None)
        for o in scen["outcomes"]:
            chosen = o["chosen"] or {}
            knobs = ", ".join(f"{k}={v}" for k, v in (chosen.get("knobs") or {}).items())
            at = next(
                (p for p in chosen.get("points", []) if p["factor"] == chosen.get("factor")),
                None,
            )
            over = o["overload"]
            ratio = (
                _fmt(ours["capacity"] / o["capacity"], ".2f") + "x"
                if ours and o["capacity"] > 0
                else "-"
            )
            over_txt = (
                f"{over['attainment']:.3f} / {over['late'] / over['requests']:.3f} / "
                f"{over['rejected'] / over['requests']:.3f} / {_fmt(over['p99_ms'])} ms"
                if over
                else "-"
            )
            cap = _fmt(o["capacity"]) + (f" ({o['error']})" if o["error"] else "")
            lines.append(
                f"| {o['system']} | {knobs or '-'} | {cap} | {ratio} | "
                f"{_fmt(at['p99_ms'] if at else None)} ms | {over_txt} |"
            )
        lines.append("")
    for scen in report["scenarios"].values():
        rounds = scen.get("rounds") or {}
        if not rounds.get("runs"):
            continue
        mults = rounds["multipliers"]
        lines += [
            f"## {scen['title']}: every system at the same loads, in rounds",
            "",
            f"Multiples of {rounds['reference']}'s capacity; attainment (p99 ms). Left out "
            f"(capacity below half of it): {', '.join(rounds.get('left_out', [])) or 'none'}.",
            "",
            "| system | " + " | ".join(f"x{m:g}" for m in mults) + " |",
            "|---|" + "---|" * len(mults),
        ]
        for system, runs in rounds["runs"].items():
            cells = []
            for m in mults:
                r = runs.get(str(m))
                cells.append(
                    f"{r['attainment']:.3f} ({_fmt(r['p99_ms'], '.0f')}) at {r['rate']:.0f}/s"
                    if r
                    else "-"
                )
            lines.append(f"| {system} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Versions", ""]
    lines += [f"- {name}: {v}" for name, v in report["versions"].items()]
    lines += ["", "## Tuning (coarse capacity of every setting, req/s)", ""]
    for scen in report["scenarios"].values():
        for o in scen["outcomes"]:
            tried = "; ".join(
                f"{', '.join(f'{k}={v}' for k, v in s['knobs'].items())}: "
                + (s["error"] if s["error"] else _fmt(s["rate"]))
                for s in o["tuning"]
            )
            lines.append(f"- {scen['title'][:3]} {o['system']}: {tried}")
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qosbatch.viz import save_figure

    scens = report["scenarios"]
    fig, axes = plt.subplots(1, len(scens), figsize=(6.5 * len(scens), 4.5), squeeze=False)
    for ax, scen in zip(axes[0], scens.values(), strict=True):
        for o in scen["outcomes"]:
            chosen = o["chosen"] or {}
            knobs = chosen.get("knobs")
            runs = [p for s in o["tuning"] if s["knobs"] == knobs for p in s["points"]]
            runs += chosen.get("points", []) + ([o["overload"]] if o["overload"] else [])
            pts = sorted((p["rate"], p["attainment"]) for p in runs)
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=f"{o['system']}")
        ax.axhline(report["target"], color="grey", ls=":", lw=1)
        ax.set_title(scen["title"], fontsize=9)
        ax.set_xlabel("mean arrival rate (req/s)")
        ax.set_ylabel("attainment (on time / requests)")
        ax.set_xscale("log")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=8)
    save_figure(fig, path)


def _raise_on_term(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.peers", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--systems", default=",".join(SYSTEMS), help="comma list")
    ap.add_argument("--scenarios", default="a,b", help="a, b or a,b")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--server-cpus", default="1")
    ap.add_argument("--client-cpus", default="0")
    ap.add_argument("--rate-guess", type=float, default=300.0, help="req/s at load factor 1")
    ap.add_argument("--slo-ms", type=float, default=100.0, help="(a)'s fixed budget")
    ap.add_argument("--base-ms", type=float, default=120.0, help="(b)'s budget before delay")
    ap.add_argument("--delay-ms", type=float, default=20.0, help="(b)'s median network delay")
    ap.add_argument("--duration-a", type=float, default=8.0, help="seconds per run of (a)")
    ap.add_argument("--duration-b", type=float, default=18.0, help="seconds per run of (b)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="two settings per peer, short runs")
    ap.add_argument(
        "--rounds",
        type=lambda text: [float(x) for x in text.split(",") if x],
        default=[0.8, 1.0, 1.2],
        help="multiples of the best capacity at which every system then runs, in rounds "
        "('' for none)",
    )
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    unknown = set(args.systems.split(",")) - set(SYSTEMS)
    if unknown:
        ap.error(f"unknown system(s) {', '.join(sorted(unknown))}; known: {', '.join(SYSTEMS)}")
    if not set(args.scenarios.split(",")) <= {"a", "b"}:
        ap.error("--scenarios takes a, b or a,b")
    if args.quick:
        args.duration_a, args.duration_b = args.duration_a / 2, args.duration_b / 2
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_on_term)
    atexit.register(stop_all)
    os.sched_setaffinity(0, {int(c) for c in args.client_cpus.split(",")})
    threads = len(args.server_cpus.split(","))
    work = Path(tempfile.mkdtemp(prefix="qosbatch-peers-"))
    log(f"logs and model in {work}")
    model = export_model(args.model, work / "model")
    systems: dict[str, System] = {}
    versions: dict[str, str] = {}
    for name in args.systems.split(","):
        system = SYSTEMS[name]()
        if hasattr(system, "cpus"):
            system.cpus = args.server_cpus  # qosbatch profiles on the cores it will serve on
        t0 = time.monotonic()
        try:
            system.install(CACHE, work / "logs")
        except RuntimeError as exc:
            log(f"{name}: cannot install, left out: {exc}")
            versions[name] = f"not measured: {exc}"
            continue
        log(f"{name}: {system.version} ({time.monotonic() - t0:.0f} s to install or check)")
        systems[name] = system
        versions[name] = system.version
    settings = SearchSettings(coarse_runs=3 if args.quick else 4, fine_runs=2 if args.quick else 4)
    specs = scenario_specs(args)
    report: dict[str, Any] = {
        "machine": machine(),
        "model": args.model,
        "server_cpus": args.server_cpus,
        "client_cpus": args.client_cpus,
        "target": settings.target,
        "command": "python -m benchmarks.peers " + " ".join(argv or sys.argv[1:]),
        "versions": versions,
        "scenarios": {},
    }
    t_start = time.monotonic()
    try:
        for key in args.scenarios.split(","):
            title, spec = specs[key]
            traces = traces_for(spec, model.name, args.seed)
            warmup = warmup_trace(traces_for(spec, model.name, args.seed + 1))
            outcomes: list[Outcome] = []
            serves: dict[str, Any] = {}
            for name, system in systems.items():
                grid = list(system.grid)
                if args.quick and len(grid) > 2:
                    grid = [grid[0], grid[-1]]
                log(f"{title}: {name}, {len(grid)} setting(s)")
                grace = 10.0 if key == "a" else 20.0

                serve = functools.partial(
                    serving, system, model, cpus=args.server_cpus, threads=threads, work=work,
                    grace_s=grace, warmup=warmup,
                )  # fmt: skip

                outcome = evaluate(name, grid, serve, traces, settings, log=log)
                log(f"{title}: {name} capacity {outcome.capacity:.1f} req/s")
                outcomes.append(outcome)
                serves[name] = serve
            report["scenarios"][key] = {
                "title": title,
                "spec": spec,
                "outcomes": [o.to_json() for o in outcomes],
            }
            if args.rounds:
                report["scenarios"][key]["rounds"] = same_loads(
                    outcomes, serves, traces, args.rounds
                )
    except KeyboardInterrupt:
        log("interrupted: stopping servers, writing what was measured")
    finally:
        stop_all()
    report["wall_s"] = time.monotonic() - t_start
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "peers.json").write_text(json.dumps(report, indent=1))
    (args.out / "peers.md").write_text(table(report))
    if report["scenarios"]:
        plot(report, args.out / "peers.png")
    print(table(report))
    log(f"wrote {args.out / 'peers.md'}, peers.png, peers.json in {report['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
