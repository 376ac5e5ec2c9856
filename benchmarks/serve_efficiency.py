"""Served throughput over in-process throughput, same model, batch and cores, binary tensors.

What serving costs a real model: the HTTP parse, the stacking into shared
memory, the worker round trip and the split back. Side by side in one run:

1. in-process: the backend pinned to ``c`` cores runs batches of ``b`` back to
   back (a child process, so its pinning does not leak into the client);
2. served: ``qosbatch serve --policy fixed:batch_size=b --cores c``, driven by
   an aiohttp client that keeps ``2b`` binary requests in flight (throughput,
   so closed loop is the right tool here; latency under load is ``bench``'s job).

Prints samples/s of each and their ratio per core count. The client runs on
the same machine; on 2 cores it competes with the worker, which is part of the
figure (say so when quoting it).

    .venv/bin/python benchmarks/serve_efficiency.py --model resnet18 --batch 16 --cores 1,2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import time

import aiohttp
import numpy as np

from qosbatch.testing import running_server

HEADER = "Inference-Header-Content-Length"


def _in_process(model: str, batch: int, cores: int, seconds: float, out: mp.Queue) -> None:
    from qosbatch.models.backends import make_backend, sample_batch
    from qosbatch.models.loading import resolve_model
    from qosbatch.profiling.pinning import pin_to_cores

    pin_to_cores(cores)
    ref = resolve_model(model)
    backend = make_backend(ref, "torch", "cpu", threads=cores)
    data = sample_batch(ref, batch)
    for _ in range(3):
        backend.run(data)
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        backend.run(data)
        runs += 1
    out.put(runs * batch / (time.perf_counter() - start))


def in_process(model: str, batch: int, cores: int, seconds: float) -> float:
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()
    p = ctx.Process(target=_in_process, args=(model, batch, cores, seconds, q))
    p.start()
    rate = q.get(timeout=600)
    p.join()
    return float(rate)


async def _served_load(url: str, model: str, batch: int, seconds: float) -> float:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{url}/v2/models/{model}") as r:
            spec = (await r.json())["inputs"][0]
        shape = [1, *spec["shape"][1:]]
        raw = np.random.default_rng(0).standard_normal(shape).astype(np.float32).tobytes()
        head = json.dumps(
            {
                "inputs": [
                    {"name": spec["name"], "shape": shape, "datatype": "FP32",
                     "parameters": {"binary_data_size": len(raw)}}
                ],
                "parameters": {"binary_data_output": True, "slo_ms": 600_000},
            }
        ).encode()  # fmt: skip
        body = head + raw
        headers = {HEADER: str(len(head)), "content-type": "application/octet-stream"}
        done = 0
        stop = time.perf_counter() + seconds
        warm_until = time.perf_counter() + min(3.0, seconds / 4)
        started = None

        async def client() -> None:
            nonlocal done, started
            while time.perf_counter() < stop:
                async with s.post(
                    f"{url}/v2/models/{model}/infer", data=body, headers=headers
                ) as r:
                    await r.read()
                    assert r.status == 200, r.status
                now = time.perf_counter()
                if now >= warm_until:
                    started = started or now
                    done += 1

        await asyncio.gather(*(client() for _ in range(2 * batch)))
        return done / (time.perf_counter() - (started or stop))


def served(model: str, batch: int, cores: int, seconds: float) -> float:
    args = ["serve", "--model", model, "--policy", f"fixed:batch_size={batch}",
            "--cores", cores, "--port", 0, "--slo", "600s"]  # fmt: skip
    with running_server(args) as url:
        return asyncio.run(_served_load(url, model, batch, seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--cores", default="1,2")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--rounds", type=int, default=2, help="in-process/served pairs per core count"
    )
    args = parser.parse_args()
    counts = [int(c) for c in args.cores.split(",")]
    if max(counts) > len(os.sched_getaffinity(0)):
        parser.error(f"--cores {args.cores}: this machine has {len(os.sched_getaffinity(0))}")
    print(f"{args.model}, batch {args.batch}, {args.seconds:g} s per measurement")
    print(f"{'cores':>5} {'in-process/s':>13} {'served/s':>10} {'served/in-process':>18}")
    for c in counts:
        for _ in range(args.rounds):  # alternated: a shared machine drifts over minutes
            base = in_process(args.model, args.batch, c, args.seconds)
            live = served(args.model, args.batch, c, args.seconds)
            print(f"{c:>5} {base:>13.1f} {live:>10.1f} {live / base:>18.3f}", flush=True)


if __name__ == "__main__":
    main()
