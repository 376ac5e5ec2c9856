"""A peer under test: its ``Launch`` run through ``qosbatch.launch.running``, pinned and awaited.

``qosbatch.launch`` does the starting and the stopping for every server the
benchmarks run (a session of its own, a tag in the environment, the whole group
and everything tagged stopped; see there). What is the harness's own is here:
that a peer is ready only once its model answers both metadata and one inference,
and that it stops on SIGINT (PyTriton stops Triton in order on nothing else).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from benchmarks.peers.systems import Launch
from qosbatch.launch import Launched, Ready, free_port, group_alive, http, running, stop_all

__all__ = ["free_port", "group_alive", "http", "launched_peer", "log", "stop_all"]

STOP_GRACE_S = 15.0


def log(msg: str) -> None:
    print(f"[peers] {msg}", file=sys.stderr, flush=True)


def model_answers(base: str, model: str, probe_body: bytes) -> Ready:
    """Ready once the model's metadata answers 200 *and* one inference does.

    Both, because a server may say its model exists before the first inference can
    run (PyTriton binds lazily), and a run against it would measure its error path.
    """

    def ready(server: Launched) -> str | None:
        status, _ = http("GET", f"{base}/v2/models/{model}", timeout_s=1.0)
        if status != 200:
            server.waiting_on = f"GET /v2/models/{model} answered {status or 'nothing'}"
            return None
        status, answer = http("POST", f"{base}/v2/models/{model}/infer", probe_body, 10.0)
        if status == 200:
            with contextlib.suppress(ValueError, KeyError, IndexError):
                json.loads(answer)["outputs"][0]["data"]
                return base
        server.waiting_on = f"metadata 200, but the probe inference got {status}: {answer[:200]!r}"
        return None

    return ready


@contextlib.contextmanager
def launched_peer(
    name: str,
    launch: Launch,
    cpus: str,
    port: int,
    log_path: Path,
    model: str,
    probe_body: bytes,
    timeout_s: float,
) -> Iterator[Launched]:
    """``launch`` serving on ``cpus`` for as long as the block runs; ``url`` is its base."""
    base = f"http://127.0.0.1:{port}"
    with running(
        name,
        launch.argv,
        model_answers(base, model, probe_body),
        timeout_s,
        log_path=log_path,
        env={**os.environ, **launch.env},
        cwd=launch.cwd,
        cpus=cpus,
        stop_signal=signal.SIGINT,
        grace_s=STOP_GRACE_S,
        after_stop=launch.after_stop,
        poll_s=0.3,
    ) as server:
        yield server
