"""Start a server command, wait until it answers, and stop it and everything it started.

The one way tests and benchmarks run a server: ``qosbatch serve`` (through
``qosbatch.testing.running_server``), the no-op HTTP comparison and the peers of
the side-by-side harness (Triton through PyTriton, Ray Serve, BentoML, MLServer).

Why a session and a tag: servers fork (our workers; tritonserver and its Python
stub; Ray's raylet, GCS and workers; BentoML's and MLServer's workers), and a
signal to the leader alone has been seen to leave children running. The command
runs in a session of its own, so its process group is stopped whole; processes
that move to groups or sessions of their own still carry ``LAUNCH_TAG`` in their
environment, unique to the launch, and are found by it after the stop. Every
started command is registered until stopped, so that ``stop_all`` (from a
``finally``, atexit or a signal handler) stops what an error or Ctrl-C interrupted.

Standard library only: benchmarks import it next to a peer's own interpreter setup.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

LAUNCH_TAG = "QB_PEER_TAG"  # in the environment of every process a launch starts
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy
_log = logging.getLogger(__name__)

# Ready: the server's URL once it answers, None to keep waiting (raise LaunchError to give up).
Ready = Callable[["Launched"], str | None]


class LaunchError(RuntimeError):
    """A command that exited or did not answer in time; the message ends with its log."""


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


def answers(url: str) -> Ready:
    """Ready once ``GET url`` answers 2xx; the URL is then the server's."""

    def ready(server: Launched) -> str | None:
        status = http("GET", url, timeout_s=1.0)[0]
        server.waiting_on = f"GET {url} answered {status or 'nothing'}"
        return url if 200 <= status < 300 else None

    return ready


def tail(path: Path, n: int = 15) -> str:
    """The end of a log: the part that says why a command failed."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "    (no log)"
    return "\n".join("    " + line for line in lines[-n:]) or "    (empty)"


def cpu_list(cpus: str | Sequence[int]) -> tuple[int, ...]:
    """CPUs as ``taskset -c`` writes them ("0-3,6") or as numbers."""
    if not isinstance(cpus, str):
        return tuple(int(c) for c in cpus)
    out: list[int] = []
    for part in cpus.replace(" ", "").split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return tuple(out)


def _stat_fields(stat: Path) -> list[str]:
    """/proc/PID/stat after the command name: state, ppid, pgrp, session, ..."""
    return stat.read_text().rsplit(")", 1)[1].split()


def group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process of the group is left."""
    for stat in glob.glob("/proc/[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = _stat_fields(Path(stat))
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def leftovers(sid: int, tag: str) -> list[int]:
    """Live (not zombie) processes of a stopped launch: its session's, or carrying its tag.

    ``killpg`` and the group check see one process group. Ray's workers move to
    process groups of their own (in the server's session); BentoML's circus starts
    its workers in sessions of their own. All inherit the environment, so
    ``LAUNCH_TAG=tag`` (set on every launch, unique to it) finds them all.
    """
    marker = f"{LAUNCH_TAG}={tag}".encode()
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = _stat_fields(proc / "stat")
            if fields[0] == "Z":
                continue
            if int(fields[3]) == sid or marker in (proc / "environ").read_bytes().split(b"\0"):
                pids.append(int(proc.name))
    return pids


def reap(sid: int, tag: str, grace_s: float = 3.0) -> list[int]:
    """SIGKILL whatever of a stopped launch is left (see ``leftovers``); the pids found.

    Normally none: servers stop their processes on their stop signal. This is the net
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


def stop_group(proc: subprocess.Popen[bytes], name: str, first: int, grace_s: float) -> int:
    """Stop a command started in its own session; its process group id.

    ``first`` goes to the leader alone, so that it can stop its children in order
    (PyTriton stops Triton cleanly on SIGINT only; our server drains on SIGTERM);
    whatever of the group is still alive ``grace_s`` later gets SIGTERM, then SIGKILL.
    """
    pgid = proc.pid  # start_new_session: the leader's pid is the group id
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pgid, first)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    for sig, wait_s in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
        if not group_alive(pgid):
            break
        _log.warning(
            "%s: processes left %.0f s after the leader's signal; %s", name, grace_s, sig.name
        )
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + wait_s
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait_s)
        while time.monotonic() < deadline and group_alive(pgid):
            time.sleep(0.1)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=1.0)  # reap the leader, so that it is no zombie of ours
    return pgid


_LIVE: list[Launched] = []


class Launched:
    """One started command: its process, its log, and how to stop it (``stop`` is idempotent)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path | None = None,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        cpus: str | Sequence[int] | None = None,
        stop_signal: int = signal.SIGTERM,
        grace_s: float = 15.0,
        after_stop: Callable[[int], None] | None = None,
    ) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        slug = re.sub(r"[^A-Za-z0-9_.]+", "-", name).strip("-")[:40] or "launch"  # file names
        self.own_log = log_path is None  # a temporary log, removed on the stop
        if log_path is None:
            fd, path = tempfile.mkstemp(prefix=f"{slug}-", suffix=".log")
            os.close(fd)
            log_path = Path(path)
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.cpus = None if cpus is None else cpu_list(cpus)
        self.stop_signal = stop_signal
        self.grace_s = grace_s
        self.after_stop = after_stop
        self.tag = f"{slug}-{uuid.uuid4().hex[:12]}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url: str | None = None  # what ``ready`` answered
        self.ready_s = float("nan")  # seconds from start to ready
        self.waiting_on = "no answer"  # a ``Ready`` may say what it still waits for
        self.pgid = -1
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        """Start in a session of its own, so that Ctrl-C reaches us and we stop it in order."""
        self._log = self.log_path.open("wb")
        self._log.write(f"$ {' '.join(self.argv)}\n".encode())
        self._log.flush()
        cpus = self.cpus
        pin = None if cpus is None else (lambda: os.sched_setaffinity(0, cpus))
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env={**(os.environ if self.env is None else self.env), LAUNCH_TAG: self.tag},
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=pin,
            )
        except OSError as e:
            self._log.close()
            raise LaunchError(f"could not start `{' '.join(self.argv)}`: {e}") from e
        self.pgid = self.proc.pid
        _LIVE.append(self)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, ready: Ready, timeout_s: float, poll_s: float = 0.1) -> str:
        """Poll ``ready`` until it gives the URL; LaunchError on an exit or past ``timeout_s``."""
        assert self.proc is not None, "start() first"
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            rc = self.proc.poll()
            if rc is not None:
                raise LaunchError(
                    f"{self.name} exited with code {rc} before it was ready; {self._log_tail()}"
                )
            url = ready(self)
            if url is not None:
                self.url, self.ready_s = url, time.monotonic() - t0
                return url
            time.sleep(poll_s)
        raise LaunchError(
            f"{self.name} not ready within {timeout_s:.0f} s ({self.waiting_on}); "
            + self._log_tail()
        )

    def _log_tail(self) -> str:
        """The end of the output, and where the rest is when it is kept."""
        return ("output" if self.own_log else f"log {self.log_path}") + f":\n{tail(self.log_path)}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """The stop signal to the leader, then SIGTERM and SIGKILL to whatever is left."""
        if self.proc is None:  # never started, or stopped already
            if self.own_log:
                self.log_path.unlink(missing_ok=True)
            return
        stop_group(self.proc, self.name, self.stop_signal, self.grace_s)
        left = reap(self.pgid, self.tag)
        if left:
            _log.warning(
                "%s: killed %d process(es) left outside its group: %s", self.name, len(left), left
            )
        if self._log is not None:
            self._log.close()
        if self.after_stop is not None:
            self.after_stop(self.pgid)
        self.proc = None
        if self in _LIVE:
            _LIVE.remove(self)
        if self.own_log:  # (a failed start's error carries the log's end)
            self.log_path.unlink(missing_ok=True)


def stop_all() -> None:
    """Stop every launch still running; from ``finally``, atexit and signal handlers."""
    for launched in list(_LIVE):
        try:
            launched.stop()
        except Exception as e:  # keep stopping the others
            _log.warning("%s: stop failed: %s", launched.name, e)


@contextlib.contextmanager
def running(
    name: str,
    argv: Sequence[str],
    ready: Ready | str,
    timeout_s: float = 180.0,
    *,
    log_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    cpus: str | Sequence[int] | None = None,
    stop_signal: int = signal.SIGTERM,
    grace_s: float = 15.0,
    after_stop: Callable[[int], None] | None = None,
    poll_s: float = 0.1,
) -> Iterator[Launched]:
    """Start ``argv``, wait until ``ready`` (a URL answering GET, or a ``Ready``), stop it after.

    The block gets the ``Launched``: ``url`` (what ``ready`` answered), ``ready_s``,
    ``log_path``, ``alive()``. However the block ends, the command and everything it
    started are stopped. ``env`` is the whole environment (None: ours); ``cpus`` pins
    the command and all it starts; ``stop_signal`` goes to the leader first, the rest
    of its group is killed ``grace_s`` later if still there; ``after_stop`` gets the
    group id once it is gone, to remove what the server leaves outside it; ``ready``
    is asked every ``poll_s``.
    """
    launched = Launched(
        name, argv, log_path, env=env, cwd=cwd, cpus=cpus, stop_signal=stop_signal,
        grace_s=grace_s, after_stop=after_stop,
    )  # fmt: skip
    try:
        launched.start()
        check = answers(ready) if isinstance(ready, str) else ready
        launched.wait_ready(check, timeout_s, poll_s)
        yield launched
    finally:
        launched.stop()
