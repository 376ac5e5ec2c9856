"""HTTP serving overhead on a no-op model: Triton (PyTriton) vs qosbatch vs bare Starlette, by wrk.

The model is ``noop``: identity on an FP32 tensor ``input`` of shape [-1, 4], answered
as ``output``. The same KServe v2 JSON request is fired at three servers, one after
another, so that none competes with another for the cores (wrk does share them with
the server under test, on purpose: that is what a small node does):

1. ``triton``    Triton's dynamic batcher through PyTriton (max batch 32, max queue
                 delay 2 ms): the reference a batching server is judged against.
2. ``qosbatch``  the project's own server, started by ``--qosbatch-cmd`` (the same
                 policy, ``dynamic:max_batch_size=32,max_queue_delay_ms=2``).
3. ``starlette`` a bare Starlette app on uvicorn that echoes a fixed-shape JSON answer
                 with no batching and no model: the ceiling of Python HTTP serving here.

For each: a short warm-up, then ``wrk -t2 -c32 -d10s --latency -s post.lua URL``; the
table shows requests/s, p50/p99 latency, non-2xx answers and socket errors, then the
ratios between servers. Everything binds 127.0.0.1 only, every step has a time limit,
and every process started here is stopped on exit, Ctrl-C and errors included (each
server runs in its own session and is stopped as a process group, because PyTriton's
``tritonserver`` and its Python backend stub outlive a killed parent).

What it needs, it installs when missing (``--no-install`` skips instead):

* ``wrk``: ``apt-get install -y wrk`` (``apt-get update`` first only if that fails; as
  root, or through ``sudo -n``).
* PyTriton: ``nvidia-pytriton`` in its own venv, ``~/.cache/qosbatch/pytriton-venv-py3.12``,
  so that .venv is left alone. Its wheel carries ``tritonserver`` and one Python backend
  stub per Python version; the stub links ``libpython3.12.so.1.0`` dynamically and has
  no rpath, so the venv is built from a *shared-library* CPython 3.12 and the server gets
  that library's folder on ``LD_LIBRARY_PATH``. Without it the model never loads and
  ``bind`` hangs. The interpreter is looked for in ``--triton-python``, pyenv
  (``~/.pyenv/versions/3.12*``, built ``--enable-shared``), ``python3.12`` on PATH and
  uv's managed Pythons. Failing that, another shared CPython the wheel has a stub for
  (3.13, 3.11, 3.10: Debian's /usr/bin/python3.11 with libpython3.11 works too), and as a
  last resort ``uv python install 3.12`` (which downloads from GitHub, so it fails on a
  machine that reaches only package registries). On this project's machines pyenv's
  3.12.1 is built ``--enable-shared``: a first install takes about 35 s (pip, 355 MB).

Measured on the 2-core dev machine (wrk -t2 -c32 -d10s, four runs): PyTriton 1,900-2,400
req/s, p50 13-16 ms, p99 20-30 ms; bare Starlette 8,000-8,700 req/s, p50 3.5 ms, p99 7-8 ms.
* Starlette and uvicorn: taken from the running interpreter when it has them, else
  installed into ``~/.cache/qosbatch/starlette-venv``.

    .venv/bin/python benchmarks/serve_noop.py                      # all three
    .venv/bin/python benchmarks/serve_noop.py --servers triton,starlette --json
    .venv/bin/python benchmarks/serve_noop.py --qosbatch-cmd 'CMD ... --port {port}'
    .venv/bin/python benchmarks/serve_noop.py --pin --runs 5  # server on CPU 1, wrk on CPU 0
    .venv/bin/python benchmarks/serve_noop.py --protocols http,grpc --duration 5  # beside gRPC
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

# Run as a script: the repository root is not on sys.path then, and the shared helpers
# live in the benchmarks.peers package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import noop_protocols
from benchmarks.peers.pythons import (
    FALLBACK_PYS,
    TRITON_PY,
    check_pytriton_binaries,
    find_fallback_python,
    find_shared_python,
    uv_install_python,
)
from benchmarks.peers.servers.noop_servers import (
    INFER_PATH,
    MAX_BATCH,
    MAX_QUEUE_DELAY_US,
    MODEL,
    READY_PATH,
)
from benchmarks.peers.triton import cleanup_after
from benchmarks.peers.venvs import run_logged
from qosbatch.launch import (
    Launched,
    LaunchError,
    Ready,
    free_port,
    http,
    running,
    stop_all,
    tail,
)

# The servers' side (PyTriton's and Starlette's), run by their own interpreters.
NOOP_SERVERS = str(Path(__file__).resolve().parent / "peers" / "servers" / "noop_servers.py")
BODY = '{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}'
POST_LUA = f"""wrk.method = "POST"
wrk.body = '{BODY}'
wrk.headers["Content-Type"] = "application/json"
"""
PYTRITON_SPEC = "nvidia-pytriton==0.7.0"
SERVERS = ("triton", "qosbatch", "starlette")
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "qosbatch"
DEFAULT_QOSBATCH_CMD = (
    f"{Path(sys.executable).parent / 'qosbatch'} serve --model {MODEL} "
    f"--policy dynamic:max_batch_size={MAX_BATCH},max_queue_delay_ms={MAX_QUEUE_DELAY_US // 1000} "
    "--port {port}"
)
INSTALL_TIMEOUT_S = 900
STOP_GRACE_S = 10.0


class Skip(Exception):
    """A server that cannot be measured here; the message says why and goes in the table."""


def log(msg: str) -> None:
    """Progress goes to stderr, so that ``--json`` leaves stdout parseable."""
    print(f"[serve_noop] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- servers


def ready_and_infers(base: str) -> Ready:
    """Ready once the server answers ready *and* one real inference with 2xx.

    Both, because Triton's /v2/health/ready says 200 before PyTriton's model has
    loaded (explicit model control), and a server that is ready but cannot infer
    would only measure its error path. A child that cannot load a shared library
    (PyTriton's stub without its libpython) would hang, not exit: skip at once.
    """

    def ready(server: Launched) -> str | None:
        for line in server.log_text().splitlines():
            if "error while loading shared libraries" in line:
                raise Skip(f"a child could not load a library: {line.strip()}")
        status, _ = http("GET", base + READY_PATH, timeout_s=1.0)
        if status != 200:
            server.waiting_on = f"{READY_PATH} answered {status or 'nothing'}"
            return None
        status, answer = http("POST", base + INFER_PATH, BODY.encode(), timeout_s=5.0)
        if 200 <= status < 300:
            return base
        server.waiting_on = f"ready, but the probe inference got {status}: {answer[:200]!r}"
        return None

    return ready


def metadata(base: str) -> Any:
    """GET /v2 (server name and version), for the record; None when not offered."""
    status, answer = http("GET", base + "/v2")
    if status != 200:
        return None
    try:
        return json.loads(answer)
    except ValueError:
        return None


# --------------------------------------------------------------------------- installs


def ensure_wrk(allow_install: bool, logs: Path) -> tuple[str, float]:
    """wrk's path and the seconds spent installing it (0 when it was there)."""
    found = shutil.which("wrk")
    if found:
        return found, 0.0
    if not allow_install:
        raise SystemExit("wrk is not installed (and --no-install was given): apt-get install wrk")
    if shutil.which("apt-get") is None:
        raise SystemExit("wrk is not installed and there is no apt-get here to install it")
    if os.geteuid() == 0:
        prefix: list[str] = []
    elif shutil.which("sudo"):
        prefix = ["sudo", "-n"]  # -n: never wait for a password, fail instead
    else:
        raise SystemExit("wrk is not installed, and installing it needs root or sudo")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [*prefix, "apt-get", "install", "-y", "-q", "wrk"]
    log("installing wrk: " + shlex.join(install))
    t0 = time.monotonic()
    apt_log = logs / "install-wrk.log"
    if run_logged(install, apt_log, 300, env) != 0:
        run_logged([*prefix, "apt-get", "update", "-q"], apt_log, 300, env)
        if run_logged(install, apt_log, 300, env) != 0:
            raise SystemExit(f"apt-get install wrk failed; see {apt_log}:\n{tail(apt_log)}")
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("apt-get installed wrk, but it is not on PATH")
    return found, time.monotonic() - t0


def ensure_pytriton(args: argparse.Namespace, logs: Path) -> tuple[str, dict[str, str], float]:
    """The PyTriton venv's python, the env its server needs, and the seconds spent installing.

    Raises Skip, with the reason, when it cannot be had here.
    """
    t0 = time.monotonic()
    spent = 0.0  # only what installing took: finding and checking are not install time
    py = find_shared_python(args.triton_python)
    if py is None and args.triton_python:
        raise Skip(f"--triton-python {args.triton_python} is not a shared-library CPython")
    if py is None and not args.triton_python:
        py = find_fallback_python()
        if py is not None:
            log(
                f"no shared-library Python {TRITON_PY}; falling back to {py.executable} ({py.full})"
            )
    if py is None and args.install:
        uv_install_python(logs)
        py = find_shared_python(None)
        spent = time.monotonic() - t0
    if py is None:
        raise Skip(
            f"no CPython {TRITON_PY} (nor {', '.join(FALLBACK_PYS)}) with a shared libpython: "
            "PyTriton's Python backend stub links libpythonX.Y.so.1.0. Looked in "
            "~/.pyenv/versions, PATH and uv's Pythons"
            + ("; `uv python install 3.12` failed (install-uv-python.log)" if args.install else "")
            + ". Give one with --triton-python: one built by "
            "`PYTHON_CONFIGURE_OPTS=--enable-shared pyenv install 3.12`, or Debian's "
            "/usr/bin/python3.11 after `apt-get install libpython3.11 python3.11-venv`"
        )
    venv = CACHE / f"pytriton-venv-py{py.version}"
    vpy = venv / "bin" / "python"
    stamp = venv / ".serve_noop.json"
    want = {"python": py.executable, "full": py.full, "spec": args.pytriton_spec}
    ok = False
    with contextlib.suppress(OSError, ValueError):
        ok = json.loads(stamp.read_text()) == want
    if ok:
        ok = run_logged([str(vpy), "-c", "import pytriton.triton"], logs / "check.log", 120) == 0
    if not ok:
        if not args.install:
            raise Skip(f"PyTriton is not installed in {venv} (and --no-install was given)")
        log(f"installing {args.pytriton_spec} into {venv} (Python {py.full}, {py.executable})")
        t1 = time.monotonic()
        pip_log = logs / "install-pytriton.log"
        shutil.rmtree(venv, ignore_errors=True)
        make_venv(py.executable, venv, [args.pytriton_spec], pip_log)
        stamp.write_text(json.dumps(want))
        spent += time.monotonic() - t1
    env = {
        **os.environ,
        "LD_LIBRARY_PATH": os.pathsep.join(
            p for p in (py.libdir, os.environ.get("LD_LIBRARY_PATH", "")) if p
        ),
    }
    try:
        check_pytriton_binaries(str(vpy), py.version, env)
    except RuntimeError as e:
        raise Skip(str(e)) from e
    return str(vpy), env, spent


def make_venv(python: str, venv: Path, packages: list[str], pip_log: Path) -> None:
    """A venv from ``python`` with ``packages``; a failing step skips with pip's last lines."""
    vpy = venv / "bin" / "python"
    pip = [str(vpy), "-m", "pip", "install", "-q", "--disable-pip-version-check", *packages]
    for step in ([python, "-m", "venv", str(venv)], pip):
        if run_logged(step, pip_log, INSTALL_TIMEOUT_S) != 0:
            raise Skip(f"`{shlex.join(step)}` failed; see {pip_log}:\n{tail(pip_log)}")


def ensure_starlette(allow_install: bool, logs: Path) -> tuple[str, float]:
    """A python with starlette and uvicorn: ours when it has them (same interpreter as qosbatch)."""
    check = [sys.executable, "-c", "import starlette, uvicorn"]
    if run_logged(check, logs / "check.log", 60) == 0:
        return sys.executable, 0.0
    venv = CACHE / "starlette-venv"
    vpy = venv / "bin" / "python"
    if run_logged([str(vpy), *check[1:]], logs / "check.log", 60) == 0:
        return str(vpy), 0.0
    if not allow_install:
        raise Skip("starlette/uvicorn missing (and --no-install was given)")
    t0 = time.monotonic()
    log(f"installing starlette and uvicorn[standard] into {venv}")
    pip_log = logs / "install-starlette.log"
    make_venv(sys.executable, venv, ["starlette", "uvicorn[standard]"], pip_log)
    return str(vpy), time.monotonic() - t0


# --------------------------------------------------------------------------- wrk


_TO_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def to_ms(token: str) -> float | None:
    """wrk prints '812.00us', '13.32ms', '1.02s', '1.00m'; None for anything else (nan)."""
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", token)
    return float(m.group(1)) * _TO_MS[m.group(2)] if m else None


def parse_wrk(text: str) -> dict[str, Any]:
    """The numbers of wrk's --latency report; absent lines mean 0 errors, None otherwise."""
    out: dict[str, Any] = {
        "rps": None,
        "p50_ms": None,
        "p75_ms": None,
        "p90_ms": None,
        "p99_ms": None,
        "avg_ms": None,
        "requests": None,
        "non_2xx": 0,
        "socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0},
    }
    if m := re.search(r"Requests/sec:\s+([\d.]+)", text):
        out["rps"] = float(m.group(1))
    if m := re.search(r"^\s*Latency\s+(\S+)", text, re.M):
        out["avg_ms"] = to_ms(m.group(1))
    for pct, value in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", text, re.M):
        out[f"p{pct}_ms"] = to_ms(value)
    if m := re.search(r"(\d+) requests in", text):
        out["requests"] = int(m.group(1))
    if m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text):
        out["non_2xx"] = int(m.group(1))
    if m := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    ):
        out["socket_errors"] = dict(
            zip(("connect", "read", "write", "timeout"), map(int, m.groups()), strict=True)
        )
    out["socket_errors_total"] = sum(out["socket_errors"].values())
    return out


def run_wrk(
    wrk: str, url: str, lua: Path, args: argparse.Namespace, duration_s: float, log_path: Path
) -> dict[str, Any]:
    """One wrk run (on --client-cpus with --pin); killed if it overstays by 30 s."""
    pin = ["taskset", "-c", args.client_cpus] if args.pin else []
    argv = [
        *pin,
        wrk,
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{duration_s:g}s",
        "--latency",
        "-s",
        str(lua),
        url,
    ]
    try:
        res = subprocess.run(
            argv, capture_output=True, text=True, timeout=duration_s + 30, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise Skip(f"wrk did not finish within {duration_s + 30:.0f} s") from e
    with log_path.open("a") as f:
        f.write(f"$ {shlex.join(argv)}\n{res.stdout}{res.stderr}\n")
    if res.returncode != 0:
        raise Skip(f"wrk exited with {res.returncode}: {res.stderr.strip()[:300]}")
    return parse_wrk(res.stdout)


# --------------------------------------------------------------------------- the run


@dataclass
class Plan:
    """What one server needs to start (argv, env), what it leaves behind, what to record."""

    argv: list[str]
    env: dict[str, str] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    after_stop: Callable[[int], None] | None = None  # removes what it leaves outside its group
    stop_signal: int = signal.SIGTERM


def plan_server(
    name: str,
    port: int,
    args: argparse.Namespace,
    logs: Path,
    work: Path,
    installs: dict[str, float],
) -> Plan:
    """Install what ``name`` needs and say how to start it on ``port``; Skip if it can't be."""
    if name == "triton":
        vpy, env, spent = ensure_pytriton(args, logs)
        installs["pytriton_s"] = round(spent, 1)
        workspace = work / "pytriton-workspace"
        tmp = work / "pytriton-tmp"  # PyTriton's own temp files; Triton's ignore it
        tmp.mkdir(exist_ok=True)
        env = {**env, "TMPDIR": str(tmp)}
        return Plan(
            [vpy, NOOP_SERVERS, "triton", str(port), str(workspace)],
            env,
            {"python": vpy, "spec": args.pytriton_spec},
            # PyTriton's serve() stops Triton in order on SIGINT only; Triton leaves its
            # shared memory and a /tmp model copy behind (see peers/triton.py).
            after_stop=cleanup_after(str(workspace)),
            stop_signal=signal.SIGINT,
        )
    if name == "starlette":
        py, spent = ensure_starlette(args.install, logs)
        installs["starlette_s"] = round(spent, 1)
        return Plan([py, NOOP_SERVERS, "starlette", str(port)], None, {"python": py})
    cmd = args.qosbatch_cmd.replace("{port}", str(port))
    argv = shlex.split(cmd)
    if not argv or (shutil.which(argv[0]) is None and not Path(argv[0]).exists()):
        raise Skip(f"command not found: {argv[0] if argv else '(empty)'} (from `{cmd}`)")
    return Plan(argv, None, {"command": cmd})


def bench_one(
    name: str,
    wrk: str,
    lua: Path,
    args: argparse.Namespace,
    logs: Path,
    work: Path,
    installs: dict[str, float],
) -> dict[str, Any]:
    """Start ``name``, warm it up, measure it with wrk, stop it: its row of the table."""
    port = free_port()
    plan = plan_server(name, port, args, logs, work, installs)
    log(f"{name}: starting on 127.0.0.1:{port}: {shlex.join(plan.argv)}")
    server_log = logs / f"{name}.log"
    try:
        with running(
            name,
            plan.argv,
            ready_and_infers(f"http://127.0.0.1:{port}"),
            args.ready_timeout,
            log_path=server_log,
            env=plan.env,
            cwd=Path(__file__).resolve().parents[1],
            stop_signal=plan.stop_signal,
            grace_s=STOP_GRACE_S,
            after_stop=plan.after_stop,
            poll_s=0.25,
            cpus=args.server_cpus if args.pin else None,
        ) as server:
            assert server.url is not None
            ready_s, meta = server.ready_s, metadata(server.url)
            log(f"{name}: ready in {ready_s:.1f} s; warm-up {args.warmup:g} s")
            url = server.url + INFER_PATH
            if args.warmup > 0:
                run_wrk(wrk, url, lua, args, args.warmup, logs / f"{name}-wrk.log")
            runs = []
            for r in range(args.runs):
                log(f"{name}: run {r + 1}/{args.runs}: wrk -t{args.threads} "
                    f"-c{args.connections} -d{args.duration:g}s")  # fmt: skip
                runs.append(run_wrk(wrk, url, lua, args, args.duration, logs / f"{name}-wrk.log"))
            if not server.alive():
                raise Skip(f"died during the run; log:\n{tail(server_log)}")
    except LaunchError as e:
        raise Skip(str(e)) from e
    row = {"status": "ok", "ready_s": round(ready_s, 2), "server": meta, **plan.info}
    return {**row, **median_row(runs)}


def median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One run's row as it is; several: the medians, each figure's range, and every run."""
    if len(runs) == 1:
        return runs[0]
    row: dict[str, Any] = {"runs": runs}
    for key in ("rps", "p50_ms", "p99_ms", "avg_ms", "p75_ms", "p90_ms", "requests"):
        values = [r[key] for r in runs if r.get(key) is not None]
        row[key] = statistics.median(values) if values else None
        row[f"{key}_range"] = [min(values), max(values)] if values else None
    row["non_2xx"] = sum(r["non_2xx"] for r in runs)
    row["socket_errors_total"] = sum(r["socket_errors_total"] for r in runs)
    return row


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """a/b for req/s, p50 and p99, for every pair that was measured."""
    out: dict[str, dict[str, float]] = {}
    for a, b in (("qosbatch", "triton"), ("qosbatch", "starlette"), ("triton", "starlette")):
        ra, rb = results.get(a, {}), results.get(b, {})
        if ra.get("status") != "ok" or rb.get("status") != "ok":
            continue
        pair: dict[str, float] = {}
        for key in ("rps", "p50_ms", "p99_ms"):
            if ra.get(key) and rb.get(key):
                pair[key] = round(ra[key] / rb[key], 3)
        out[f"{a}/{b}"] = pair
    return out


def print_table(report: dict[str, Any]) -> None:
    """The human form: one row per server, then the ratios."""
    w = report["wrk"]
    where = (
        f"server on CPU {w['server_cpus']}, wrk on CPU {w['wrk_cpus']}"
        if w["server_cpus"]
        else f"{report['machine']['cores']} cores shared by wrk and server"
    )
    runs = f", median of {w['runs']} runs [min-max]" if w["runs"] > 1 else ""
    print(
        f"no-op model over HTTP, {where}; wrk -t{w['threads']} -c{w['connections']} "
        f"-d{w['duration_s']:g}s (after {w['warmup_s']:g} s warm-up){runs}"
    )
    print(
        f"{'server':<10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} "
        f"{'sock err':>8}  note"
    )

    def num(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    for name, r in report["results"].items():
        if r["status"] != "ok":
            reason = r["reason"].splitlines()[0]
            print(f"{name:<10} {'skipped':>9} {'':>8} {'':>8} {'':>8} {'':>8}  {reason}")
            continue
        meta = r.get("server") or {}
        note = " ".join(str(meta.get(k, "")) for k in ("name", "version")).strip()
        if r.get("rps_range"):
            lo, hi = r["rps_range"]
            note = f"[{lo:,.0f}-{hi:,.0f} req/s] {note}"
        print(
            f"{name:<10} {num(r['rps'], ',.0f'):>9} {num(r['p50_ms'], '.2f'):>8} "
            f"{num(r['p99_ms'], '.2f'):>8} {r['non_2xx']:>8} {r['socket_errors_total']:>8}  "
            f"{note}"
        )
    spent = ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in report["install_s"].items())
    print(f"install time this run: {spent} (0 = already installed)")
    for pair, vals in report["ratios"].items():
        parts = ", ".join(f"{k.removesuffix('_ms')} x{v:.2f}" for k, v in vals.items())
        print(f"{pair}: {parts}")
    for name, r in report["results"].items():
        if r["status"] != "ok" and "\n" in r["reason"]:
            print(f"\n{name} skipped: {r['reason']}", file=sys.stderr)
    print(f"logs: {report['logs']}", file=sys.stderr)


def _raise_on_signal(signum: int, _frame: FrameType | None) -> None:
    """SIGTERM/SIGHUP become SystemExit, so ``finally`` stops the servers as Ctrl-C does."""
    raise SystemExit(128 + signum)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The benchmark's options; defaults are the brief's wrk -t2 -c32 -d10s."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help="comma-separated, in run order, from: " + ", ".join(SERVERS),
    )
    ap.add_argument(
        "--qosbatch-cmd",
        default=DEFAULT_QOSBATCH_CMD,
        help="command starting qosbatch; {port} is replaced (default: %(default)s)",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of measurement")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of unrecorded load first")
    ap.add_argument(
        "--runs", type=int, default=1, help="measured wrk runs per server: medians and ranges"
    )
    ap.add_argument(
        "--pin",
        action="store_true",
        help="each server (and its children) on --server-cpus, wrk on --client-cpus",
    )
    ap.add_argument(
        "--ready-timeout",
        type=float,
        default=60.0,
        help="seconds a server gets to become ready, else it is skipped",
    )
    ap.add_argument("--triton-python", help="shared-library CPython to build PyTriton's venv from")
    ap.add_argument("--pytriton-spec", default=PYTRITON_SPEC)
    ap.add_argument(
        "--no-install",
        dest="install",
        action="store_false",
        help="skip what is missing instead of installing it",
    )
    ap.add_argument("--log-dir", help="where server and wrk logs go (default: a new temp dir)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument(
        "--protocols",
        type=lambda s: [p.strip() for p in s.split(",") if p.strip()],
        help="instead of wrk: qosbatch alone over these (http,grpc,grpc-stream) side by side, "
        "by `qosbatch bench`, server and client on CPUs apart (benchmarks/noop_protocols.py)",
    )
    noop_protocols.add_options(ap)
    args = ap.parse_args(argv)
    names = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = sorted(set(names) - set(SERVERS))
    if unknown or not names:
        ap.error(f"--servers: unknown {unknown}; choose from {', '.join(SERVERS)}")
    if args.connections < args.threads:
        ap.error("wrk needs --connections >= --threads")
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    if args.pin and set(args.server_cpus.split(",")) & set(args.client_cpus.split(",")):
        ap.error("--pin: --server-cpus and --client-cpus must not overlap")
    args.servers = names
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the comparison, one server after another, each stopped whole before the next."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    atexit.register(stop_all)
    if args.protocols:
        return noop_protocols.report(args)
    signal.signal(signal.SIGTERM, _raise_on_signal)
    signal.signal(signal.SIGHUP, _raise_on_signal)
    logs = Path(args.log_dir or tempfile.mkdtemp(prefix="serve_noop-"))
    logs.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="serve_noop-work-"))  # PyTriton's workspace: big, removed
    installs: dict[str, float] = {}
    results: dict[str, dict[str, Any]] = {}
    try:
        wrk, installs["wrk_s"] = ensure_wrk(args.install, logs)
        wrk_version = subprocess.run(
            [wrk, "-v"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.splitlines()[:1]
        lua = logs / "post.lua"
        lua.write_text(POST_LUA)
        for name in args.servers:
            try:
                results[name] = bench_one(name, wrk, lua, args, logs, work, installs)
            except Skip as e:
                log(f"{name}: skipped: {e}")
                results[name] = {"status": "skipped", "reason": str(e)}
            except (subprocess.SubprocessError, OSError) as e:  # a helper that overstayed
                log(f"{name}: skipped: {type(e).__name__}: {e}")
                results[name] = {"status": "skipped", "reason": f"{type(e).__name__}: {e}"}
    finally:
        stop_all()
        shutil.rmtree(work, ignore_errors=True)
    report = {
        "machine": {
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
        },
        "wrk": {
            "version": wrk_version[0] if wrk_version else None,
            "threads": args.threads,
            "connections": args.connections,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "runs": args.runs,
            "wrk_cpus": args.client_cpus if args.pin else None,
            "server_cpus": args.server_cpus if args.pin else None,
            "body": BODY,
        },
        "install_s": installs,
        "results": results,
        "ratios": ratios(results),
        "logs": str(logs),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the servers were stopped in main's finally
        print("[serve_noop] interrupted; everything it started is stopped", file=sys.stderr)
        sys.exit(130)
