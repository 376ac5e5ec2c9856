"""Side by side: qosbatch against Triton (and Ray Serve, BentoML, MLServer), live.

    .venv/bin/python -m benchmarks.peers --models alexnet \\
        --systems qosbatch,qosbatch-dynamic,triton --scenarios a,c --budget-minutes 60

Every system serves the same ONNX model (a zoo model exported once: the same
weights) with ONNX Runtime on the same pinned cores (``--server-cpus``, default
CPU 1; the load generator runs pinned on ``--client-cpus``, default CPU 0). Each
peer is installed into its own pinned venv on first use. One load generator
drives them all (``qosbatch.client.loadgen``, open loop, bodies sharing the
sample's bytes): Triton's binary tensor extension to the systems that speak it
(qosbatch, Triton: what ``tritonclient`` sends), plain v2 JSON to the others.
Each request carries its budget in the system's own field where it has one; a
reply after the budget is late whoever sent it.

Per model (``calibrate.py``): a profile on the server's core gives the limit (load
factor 1), the SLO and every system's knob grid. Scenarios: (a) Poisson with a
fixed SLO, (b) bursty MMPP (1:8, 5 s / 1 s dwell) with network-delay SLOs, (c)
overload: Poisson at 1.5x, 2x and 3x the limit with (a)'s tuned settings. Then:

1. **tune** (``harness.py``): each system's grid, the same search for all, on short
   runs; it picks each system's setting per scenario;
2. **rounds** (``rounds.py``): every system's setting at the same ladder of loads
   spanning the tuned capacities, and at (c)'s loads, ``repeats`` times in rounds
   whose order rotates; traces generated once and replayed to all (``traces.py``).

``--budget-minutes`` fits rounds, loads and run lengths to the time given (per
model), never below 3 rounds x 3 loads of 60 s (Poisson) and 180 s (MMPP).
Results per model: ``peers-<model>.md`` (tables with 95% intervals), ``.png``
(attainment against nominal load, goodput in overload) and ``.json`` (every run),
under ``--out``. All traffic is on 127.0.0.1; every server is stopped as a
process group, on errors and Ctrl-C too.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import dataclasses
import functools
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks.peers.calibrate import GRIDS, Calibration, calibrate, profile
from benchmarks.peers.harness import Outcome, RunTrace, SearchSettings, evaluate
from benchmarks.peers.model import export_model, probe_body
from benchmarks.peers.procs import free_port, launched_peer, log, stop_all
from benchmarks.peers.qosbatch_server import BIN
from benchmarks.peers.registry import SYSTEMS
from benchmarks.peers.report import machine, write_report
from benchmarks.peers.rounds import Budget, fit_budget, ladder, rotations
from benchmarks.peers.systems import Knobs, ModelFiles, System
from benchmarks.peers.traces import TraceStore
from benchmarks.peers.venvs import CACHE
from qosbatch.client.loadgen import run_load
from qosbatch.metrics import Metrics, summarize
from qosbatch.workloads.trace import Trace

RESULTS = Path(__file__).resolve().parents[1] / "results" / "peers"
READY_TIMEOUT_S = 240.0
GRACE_S = {"a": 10.0, "b": 20.0}
START = {"a": 0.8, "b": 0.4}  # first load factor a tuning search tries
WARMUP = 999  # the warm-up trace's repeat number: never a measured one


@contextlib.contextmanager
def serving(
    system: System, model: ModelFiles, knobs: Knobs, *, cpus: str, threads: int, work: Path,
    grace_s: float, warmup: Trace,
) -> Iterator[RunTrace]:  # fmt: skip
    """One system serving one setting, for as long as the block runs; stopped whole after.

    Every system first gets the same short warm-up run, not measured: first batches of
    each size allocate (ONNX Runtime's arena; BentoML's and Ray's batchers calibrate).
    """
    tag = f"{system.name}-{len(list(work.glob('*.log')))}"
    workdir = work / tag
    workdir.mkdir()
    port = free_port()
    launch = system.launch(model, knobs, port, threads, workdir)
    log_path = work / f"{tag}.log"
    params = functools.partial(system.request_parameters, knobs=knobs)
    encoding = getattr(system, "encoding", "json")  # Triton's binary tensors, where spoken
    with launched_peer(
        system.name, launch, cpus, port, log_path, model.name, probe_body(model), READY_TIMEOUT_S
    ) as server:
        log(f"{system.name} {dict(knobs)} ready in {server.ready_s:.1f} s ({log_path})")

        def run(trace: Trace) -> Metrics:
            result = asyncio.run(
                run_load(
                    server.url, model.name, trace, encoding=encoding, slo_parameters=params,
                    grace_s=grace_s,
                )
            )  # fmt: skip
            time.sleep(0.5)  # let the server settle between runs
            return summarize(result.records)

        run(warmup)
        yield run


class Comparison:
    """One model: calibration, tuning per scenario, then the interleaved rounds."""

    def __init__(self, args: argparse.Namespace, systems: dict[str, System], work: Path) -> None:
        self.args, self.systems, self.work = args, systems, work
        self.threads = len(args.server_cpus.split(","))

    def setup(self, name: str) -> tuple[ModelFiles, Calibration]:
        model = export_model(name, self.work / "model")
        path = self.args.profiles.get(name) or profile(
            model, self.args.server_cpus, BIN / "qosbatch", self.work / "logs"
        )
        cal = calibrate(path, model.max_batch, self.args.slo_ms)
        log(
            f"{name}: limit {cal.limit:.1f} req/s (batch {cal.best_batch}), SLO {cal.slo_ms:g} ms, "
            f"grid batches {cal.batch_sizes()}, delays {cal.delays_ms()} ms"
        )
        return model, cal

    def serve(self, system: System, model: ModelFiles, store: TraceStore, key: str) -> Any:
        warmup = store.get(key, 0.5, WARMUP).until(2.0)  # 2 s at half the limit
        return functools.partial(
            serving, system, model, cpus=self.args.server_cpus, threads=self.threads,
            work=self.work, grace_s=GRACE_S[key], warmup=warmup,
        )  # fmt: skip

    def run_model(self, name: str) -> dict[str, Any]:
        model, cal = self.setup(name)
        tuned = [k for k in ("a", "b") if k in self.scenarios]
        grids = {s: GRIDS[s](cal) for s in self.systems}
        smoke = Budget({k: 4.0 for k in tuned}, {k: 6.0 for k in tuned}, 2, 3, 0.0, 6.0)
        budget = smoke if self.args.smoke else fit_budget(
            self.args.budget_minutes, {s: len(g) for s, g in grids.items()}, tuned,
            len(self.args.overload) if "c" in self.args.scenarios else 0,
        )  # fmt: skip
        log(f"{name}: budget {budget.describe()}")
        specs = {
            "a": cal.poisson(budget.run_s.get("a", 60.0)),
            "b": cal.mmpp(budget.run_s.get("b", 180.0)),
            "c": cal.poisson(budget.overload_s),
        }
        specs |= {
            f"{k}-tune": (cal.poisson if k == "a" else cal.mmpp)(budget.tune_s[k]) for k in tuned
        }
        store = TraceStore(self.work / "traces", specs, model.name, self.args.seed)
        report: dict[str, Any] = {
            "model": name, "machine": machine(), "limit": cal.limit, "best_batch": cal.best_batch,
            "slo_ms": cal.slo_ms, "batch_s": cal.batch_s, "budget": dataclasses.asdict(budget),
            "specs": specs, "server_cpus": self.args.server_cpus,
            "client_cpus": self.args.client_cpus, "target": self.args.target,
            "overload": self.args.overload if "c" in self.args.scenarios else [],
            "command": "python -m benchmarks.peers " + " ".join(sys.argv[1:]),
            "versions": {s: sys_.version for s, sys_ in self.systems.items()},
            "tuning": {}, "ladders": {}, "runs": [], "digests": {}, "smoke": self.args.smoke,
        }  # fmt: skip
        chosen: dict[str, dict[str, Knobs]] = {}
        if self.args.reuse_tuning is not None:
            reuse(report, json.loads(self.args.reuse_tuning.read_text()))
        for key in tuned:
            if key not in report["tuning"]:
                outcomes = self.tune(key, model, grids, store)
                report["tuning"][key] = [o.to_json() for o in outcomes]
                factors = [o.factor for o in outcomes if o.chosen is not None]
                report["ladders"][key] = ladder(factors, budget.points)
            chosen[key] = {
                o["system"]: o["chosen"]["knobs"]
                for o in report["tuning"][key]
                if o["chosen"] is not None and o["system"] in self.systems
            }
        self.rounds(model, store, chosen, report, budget)
        report["digests"] = {**report.get("digests", {}), **store.digests}
        return report

    @property
    def scenarios(self) -> list[str]:
        keys = self.args.scenarios
        return sorted(set(keys) | ({"a"} if "c" in keys else set()))

    def tune(
        self, key: str, model: ModelFiles, grids: dict[str, list[Knobs]], store: TraceStore
    ) -> list[Outcome]:
        settings = SearchSettings(target=self.args.target, start_factor=START[key])
        outcomes = []
        for name, system in self.systems.items():
            log(f"tuning ({key}) {name}: {len(grids[name])} setting(s)")
            outcome = evaluate(
                name, grids[name], self.serve(system, model, store, key),
                lambda f, k=key: store.get(f"{k}-tune", f, 0), settings, log=log,
            )  # fmt: skip
            log(f"tuning ({key}) {name}: coarse capacity x{outcome.factor:.3f} of the limit")
            outcomes.append(outcome)
        return outcomes

    def rounds(
        self, model: ModelFiles, store: TraceStore, chosen: dict[str, dict[str, Knobs]],
        report: dict[str, Any], budget: Budget,
    ) -> None:  # fmt: skip
        """Every system at every load, ``budget.repeats`` times, the order rotating."""
        for r, order in enumerate(rotations(list(self.systems), budget.repeats)):
            for key, knobs_of in chosen.items():
                loads = []
                if key in self.args.scenarios:  # (a) only for (c): no (a) loads
                    loads += [(key, key, f) for f in report["ladders"][key]]
                if key == "a" and "c" in self.args.scenarios:
                    loads += [("c", "c", f) for f in report["overload"]]
                for name in (n for n in order if n in knobs_of and loads):
                    self.block(name, model, store, key, knobs_of[name], loads, r, report)

    def block(
        self, name: str, model: ModelFiles, store: TraceStore, key: str, knobs: Knobs,
        loads: list[tuple[str, str, float]], repeat: int, report: dict[str, Any],
    ) -> None:  # fmt: skip
        """One system's server, up once for all of a round's loads of one scenario."""
        try:
            with self.serve(self.systems[name], model, store, key)(knobs) as run:
                for scen, scenario, factor in loads:  # (trace's scenario, reported as, load)
                    trace = store.get(scen, factor, repeat)
                    m = run(trace)
                    report["runs"].append(
                        {"system": name, "scenario": scenario, "factor": factor, "repeat": repeat,
                         "knobs": dict(knobs), "trace": store.path(scen, factor, repeat).name,
                         "duration_s": trace.duration_s, **m.to_json()}
                    )  # fmt: skip
                    log(
                        f"round {repeat} ({scenario}) {name} x{factor:.3f}: attainment "
                        f"{m.attainment:.4f}, on time {m.on_time}/{m.requests}, "
                        f"p99 {m.p99_ms:.0f} ms"
                    )
        except Exception as exc:
            log(f"round {repeat} ({key}) {name}: {type(exc).__name__}: {exc}")
            report.setdefault("errors", []).append(f"round {repeat} {key} {name}: {exc}")


def reuse(report: dict[str, Any], before: dict[str, Any]) -> None:
    """Carry an earlier run's tuning, ladders, runs and overload loads into ``report``.

    Why: a scenario added later (``--scenarios b`` after a run of a and c) should land
    in the same results, beside the earlier ones, without tuning again what is tuned:
    only the scenarios ``before`` lacks are tuned. Durations merge per scenario.
    """
    for key in ("tuning", "ladders", "runs", "digests"):
        report[key] = before.get(key, {}) if key != "runs" else list(before.get(key, []))
    report["overload"] = report["overload"] or before.get("overload", [])
    for key in ("tune_s", "run_s"):
        report["budget"][key] = before["budget"].get(key, {}) | report["budget"][key]
    report["command"] = before["command"] + "; then " + report["command"]


def _raise_on_term(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def _profiles(text: str) -> dict[str, Path]:
    out = {}
    for item in filter(None, text.split(",")):
        name, sep, path = item.partition("=")
        if not sep or not Path(path).is_file():
            raise argparse.ArgumentTypeError(f"{item!r}: give MODEL=PATH of an existing profile")
        out[name] = Path(path)
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.peers", description=(__doc__ or "").split("\n\n")[0]
    )
    ap.add_argument("--systems", default="qosbatch,qosbatch-dynamic,triton", help="comma list")
    ap.add_argument("--models", default="alexnet", help="comma list of zoo models")
    ap.add_argument("--scenarios", default="a,c", help="any of a, b, c (c implies a's tuning)")
    ap.add_argument("--budget-minutes", type=float, default=60.0, help="per model")
    ap.add_argument("--server-cpus", default="1")
    ap.add_argument("--client-cpus", default="0")
    ap.add_argument("--slo-ms", type=float, default=None, help="(a)'s budget (default: profile)")
    ap.add_argument("--overload", type=_floats, default=[1.5, 2.0, 3.0], help="(c)'s factors")
    ap.add_argument("--target", type=float, default=0.99)
    ap.add_argument(
        "--reuse-tuning", type=Path, default=None, metavar="JSON",
        help="a results JSON: its tuned settings, ladders and runs are kept and this run's "
        "added; only scenarios it lacks are tuned (e.g. --scenarios b after a run of a,c)",
    )  # fmt: skip
    ap.add_argument(
        "--profiles", type=_profiles, default={},
        help="MODEL=PROFILE.json,...: a profile taken on an idle server core (qosbatch profile "
        "FILE.onnx --backend onnx --cores 1), instead of one measured now",
    )  # fmt: skip
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument(
        "--smoke", action="store_true",
        help="a check of the harness, not a measurement: 2 rounds x 3 loads of a few seconds",
    )  # fmt: skip
    args = ap.parse_args(argv)
    unknown = set(args.systems.split(",")) - set(SYSTEMS)
    if unknown:
        ap.error(f"unknown system(s) {', '.join(sorted(unknown))}; known: {', '.join(SYSTEMS)}")
    args.scenarios = args.scenarios.split(",")
    if not args.scenarios or not set(args.scenarios) <= {"a", "b", "c"}:
        ap.error("--scenarios takes a comma list of a, b and c")
    if not 0 < args.target < 1:
        ap.error("--target is an attainment between 0 and 1")
    return args


def install(names: list[str], work: Path, cpus: str) -> dict[str, System]:
    systems: dict[str, System] = {}
    for name in names:
        system = SYSTEMS[name]()
        if hasattr(system, "cpus"):
            system.cpus = cpus  # qosbatch plans with the profile taken on the server's cores
        try:
            system.install(CACHE, work / "logs")
        except RuntimeError as exc:
            log(f"{name}: cannot install, left out: {exc}")
            continue
        systems[name] = system
    return systems


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_on_term)
    atexit.register(stop_all)
    os.sched_setaffinity(0, {int(c) for c in args.client_cpus.split(",")})
    work = Path(tempfile.mkdtemp(prefix="qosbatch-peers-"))
    log(f"logs, traces and model in {work}")
    systems = install(args.systems.split(","), work, args.server_cpus)
    comparison = Comparison(args, systems, work)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.models.split(","):
        t0 = time.monotonic()
        try:
            report = comparison.run_model(name)
        except ValueError as exc:  # a budget too small for the minimum
            print(f"peers: {name}: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            log("interrupted: stopping servers")
            stop_all()
            return 130
        finally:
            stop_all()
        report["wall_s"] = time.monotonic() - t0
        (args.out / f"peers-{name}.json").write_text(json.dumps(report, indent=1))
        md = write_report(report, args.out / f"peers-{name}")
        print(md)
        log(f"{name}: wrote {args.out}/peers-{name}.md, .png, .json in {report['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
