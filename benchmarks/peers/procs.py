"""A server under test: started pinned in its own session, awaited, and always stopped whole.

Its own session, because servers fork (tritonserver and its Python stub under
PyTriton; Ray's raylet, GCS and workers; MLServer's and BentoML's workers): the
harness stops the process group, not just the leader, and checks that nothing of
the group is left. Every started server is registered, so ``stop_all`` (from a
``finally``, atexit and SIGTERM) stops what an error or Ctrl-C interrupted.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import IO

from benchmarks.peers.systems import Launch
from benchmarks.peers.venvs import tail

STOP_GRACE_S = 15.0
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy


def log(msg: str) -> None:
    print(f"[peers] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    """A port the kernel says is free on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(
    method: str, url: str, body: bytes | None = None, timeout_s: float = 2.0
) -> tuple[int, bytes]:
    """One request; status 0 when nothing answered, so that polling never raises."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with _OPENER.open(req, timeout=timeout_s) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read()
    except (urllib.error.URLError, OSError, TimeoutError):
        return 0, b""


def group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process of the group is left."""
    for stat in glob.glob("/proc/[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":  # state, ppid, pgrp
                return True
    return False


PEER_TAG = "QB_PEER_TAG"  # in the environment of every process a launch starts


def leftovers(sid: int, tag: str) -> list[int]:
    """Live (not zombie) processes of a stopped server: its session's, or carrying its tag.

    ``killpg`` and the group check see one process group. Ray's workers move to
    process groups of their own (in the server's session); BentoML's circus starts
    its workers in sessions of their own. All inherit the environment, so
    ``PEER_TAG=tag`` (set on every launch, unique to it) finds them all.
    """
    marker = f"{PEER_TAG}={tag}".encode()
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] == "Z":  # state, ppid, pgrp, session
                continue
            if int(fields[3]) == sid or marker in (proc / "environ").read_bytes().split(b"\0"):
                pids.append(int(proc.name))
    return pids


def reap(sid: int, tag: str, grace_s: float = 3.0) -> list[int]:
    """SIGKILL whatever of a stopped server is left (see ``leftovers``); the pids found.

    Normally none: both servers stop all their processes on SIGINT. This is the net
    for a server that died or hung before it could.
    """
    left = leftovers(sid, tag)
    for pid in left:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + grace_s
    while left and time.monotonic() < deadline and leftovers(sid, tag):
        time.sleep(0.1)
    return left


def new_tag(system: str, port: int) -> str:
    """A tag no other launch carries: the system, the port and a random part."""
    return f"{system}-{port}-{uuid.uuid4().hex[:12]}"


def stop_group(proc: subprocess.Popen[bytes], name: str, first: int, grace_s: float) -> int:
    """Stop a server started in its own session; its process group id.

    ``first`` goes to the leader alone, so that it can stop its children in order
    (PyTriton stops Triton cleanly on SIGINT only); whatever of the group is still
    alive ``grace_s`` later gets SIGTERM, then SIGKILL.
    """
    pgid = proc.pid  # start_new_session: the leader's pid is the group id
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pgid, first)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    for sig, wait_s in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
        if not group_alive(pgid):
            break
        log(f"{name}: processes left {grace_s:.0f} s after the leader's signal; {sig.name}")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + wait_s
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait_s)
        while time.monotonic() < deadline and group_alive(pgid):
            time.sleep(0.1)
    return pgid


_LIVE: list[ServerProcess] = []


class ServerProcess:
    """One launched server: ``start``, ``wait_ready``, ``stop`` (idempotent)."""

    def __init__(self, name: str, launch: Launch, cpus: str, port: int, log_path: Path) -> None:
        self.name = name
        self.launch = launch
        self.cpus = cpus
        self.port = port
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.tag = new_tag(name, port)
        self._log: IO[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = ["taskset", "-c", self.cpus, *self.launch.argv]
        self._log = self.log_path.open("wb")
        self._log.write(f"$ {' '.join(argv)}\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.launch.env, PEER_TAG: self.tag},
            cwd=self.launch.cwd,
            start_new_session=True,
        )
        _LIVE.append(self)

    def wait_ready(self, model: str, probe_body: bytes, timeout_s: float) -> float:
        """Seconds until the model's metadata answers 200 *and* one inference does."""
        assert self.proc is not None
        t0 = time.monotonic()
        last = "no answer"
        while time.monotonic() - t0 < timeout_s:
            rc = self.proc.poll()
            if rc is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {rc} before it was ready; log "
                    f"{self.log_path}:\n{tail(self.log_path)}"
                )
            status, _ = http("GET", f"{self.base}/v2/models/{model}", timeout_s=1.0)
            if status == 200:
                status, answer = http(
                    "POST", f"{self.base}/v2/models/{model}/infer", probe_body, timeout_s=10.0
                )
                if status == 200:
                    with contextlib.suppress(ValueError, KeyError, IndexError):
                        json.loads(answer)["outputs"][0]["data"]
                        return time.monotonic() - t0
                last = f"metadata 200, but the probe inference got {status}: {answer[:200]!r}"
            else:
                last = f"GET /v2/models/{model} answered {status or 'nothing'}"
            time.sleep(0.3)
        raise RuntimeError(
            f"{self.name} not ready within {timeout_s:.0f} s ({last}); log "
            f"{self.log_path}:\n{tail(self.log_path)}"
        )

    def stop(self) -> None:
        """SIGINT to the leader, then SIGTERM and SIGKILL to whatever of the group is left."""
        if self.proc is None:
            return
        pgid = stop_group(self.proc, self.name, signal.SIGINT, STOP_GRACE_S)
        left = reap(pgid, self.tag)
        if left:
            log(f"{self.name}: killed {len(left)} process(es) left outside its group: {left}")
        if self._log is not None:
            self._log.close()
        if self.launch.after_stop is not None:
            self.launch.after_stop(pgid)
        self.proc = None
        if self in _LIVE:
            _LIVE.remove(self)


def stop_all() -> None:
    """Stop every server still running; from ``finally``, atexit and the signal handler."""
    for server in list(_LIVE):
        try:
            server.stop()
        except Exception as e:  # keep stopping the others
            log(f"{server.name}: stop failed: {e}")
