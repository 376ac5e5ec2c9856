"""Check one system by hand: install, serve the model with one knob setting, burst, stop.

    .venv/bin/python -m benchmarks.peers.smoke triton [--knobs 0] [--requests 200]

It prints the readiness time, the status of a burst of concurrent one-sample
requests (each with the system's request parameters for a 100 ms budget), one
answer, and whether any process of the server's group was left after the stop.
The server runs on CPU 1 (``--cpus``), the burst from this process.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import tempfile
import time
from pathlib import Path

import aiohttp

from benchmarks.peers.model import DEFAULT_MODEL, export_model, probe_body
from benchmarks.peers.procs import free_port, group_alive, launched_peer, log, stop_all
from benchmarks.peers.registry import SYSTEMS


async def burst(url: str, bodies: list[bytes]) -> list[tuple[int, bytes, float]]:
    async with aiohttp.ClientSession() as s:

        async def one(body: bytes) -> tuple[int, bytes, float]:
            t0 = time.perf_counter()
            async with s.post(url, data=body, headers={"content-type": "application/json"}) as r:
                return r.status, await r.read(), time.perf_counter() - t0

        return await asyncio.gather(*(one(b) for b in bodies))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("system", choices=sorted(SYSTEMS))
    ap.add_argument("--knobs", type=int, default=0, help="index into the system's grid")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--cpus", default="1")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="peers-smoke-"))
    system = SYSTEMS[args.system]()
    model = export_model(args.model, work / "model")
    t0 = time.monotonic()
    system.install(Path.home() / ".cache" / "qosbatch" / "peers", work / "logs")
    log(f"install: {time.monotonic() - t0:.1f} s ({system.version})")
    knobs = system.grid[args.knobs]
    port = free_port()
    run_dir = work / "run"
    run_dir.mkdir()
    launch = system.launch(model, knobs, port, 1, run_dir)
    log_path = work / "server.log"
    try:
        with launched_peer(
            system.name, launch, args.cpus, port, log_path, model.name, probe_body(model), 180
        ) as server:
            log(f"ready in {server.ready_s:.1f} s with {dict(knobs)}")
            body = probe_body(model, system.request_parameters(100.0))
            url = f"{server.url}/v2/models/{model.name}/infer"
            out = asyncio.run(burst(url, [body] * args.requests))
            print("statuses:", dict(collections.Counter(s for s, _, _ in out)))
            lat = sorted(t for _, _, t in out)
            print(f"latency p50 {lat[len(lat) // 2] * 1e3:.1f} ms, max {lat[-1] * 1e3:.1f} ms")
            first = json.loads(out[0][1])
            print("answer:", json.dumps(first)[:300])
    finally:
        stop_all()
    print("group left after stop:", group_alive(server.pgid))
    print("server log:", log_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
