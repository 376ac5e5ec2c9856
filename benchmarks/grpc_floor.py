"""The floor of Python gRPC's cost per request: a do-nothing servicer, per call and per stream.

Why: issue 22 asks the no-op over gRPC to serve 1.3x the requests per core that HTTP
serves. Before blaming qosbatch's own path, this measures what grpcio itself costs
on the same core with no model, no batcher and no codec: ``ModelInfer`` returning a
fixed answer (one call per request) and ``ModelStreamInfer`` echoing it (every
request on one call), on ``grpc.aio`` (with uvloop, as ``qosbatch serve`` runs)
and on grpcio's threaded server. Compare with ``noop_protocols.py``, whose HTTP
row is the whole qosbatch path.

The servicer runs pinned to ``--server-cpus`` in a child process; an open-loop
Poisson client of ``--rate`` requests/s for ``--duration`` seconds runs pinned to
``--client-cpus``. The figure is the server process's CPU (utime + stime from
/proc) over the run, per request.

    .venv/bin/python benchmarks/grpc_floor.py [--rate 2000] [--duration 5] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
from concurrent import futures
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.noop_protocols import cpu_s

MODES = ("aio-unary", "aio-stream", "threads-unary", "threads-stream")


def _answer() -> Any:
    from tritonclient.grpc import service_pb2 as pb

    r = pb.ModelInferResponse(model_name="noop", model_version="1")
    r.outputs.add(name="output", datatype="FP32", shape=[1, 4])
    r.raw_output_contents.append(b"\0" * 16)
    return r


def serve(mode: str, port: int) -> None:
    """The do-nothing servicer in ``mode``, until killed."""
    import grpc
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc as pb_grpc

    answer = _answer()
    streamed = pb.ModelStreamInferResponse(infer_response=answer)

    class Aio(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
        async def ModelInfer(self, request: Any, context: Any) -> Any:
            return answer

        async def ModelStreamInfer(self, requests: Any, context: Any) -> Any:
            async for _ in requests:
                yield streamed

    class Threads(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
        def ModelInfer(self, request: Any, context: Any) -> Any:
            return answer

        def ModelStreamInfer(self, requests: Any, context: Any) -> Any:
            for _ in requests:
                yield streamed

    address = f"127.0.0.1:{port}"
    if mode.startswith("aio"):
        import uvloop

        async def main() -> None:
            server = grpc.aio.server()
            pb_grpc.add_GRPCInferenceServiceServicer_to_server(Aio(), server)
            server.add_insecure_port(address)
            await server.start()
            print("ready", flush=True)
            await server.wait_for_termination()

        uvloop.run(main())
    else:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(Threads(), server)
        server.add_insecure_port(address)
        server.start()
        print("ready", flush=True)
        server.wait_for_termination()


async def load(port: int, stream: bool, rate: float, duration_s: float) -> int:
    """Open-loop Poisson requests; the number answered."""
    import grpc
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc as pb_grpc

    request = pb.ModelInferRequest(model_name="noop")
    request.inputs.add(name="input", datatype="FP32", shape=[1, 4])
    request.raw_input_contents.append(b"\0" * 16)
    n = int(rate * duration_s)
    rng = random.Random(0)
    loop = asyncio.get_running_loop()

    async def paced() -> Any:
        start, t = loop.time(), 0.0
        for _ in range(n):
            t += rng.expovariate(rate)
            if (wait := start + t - loop.time()) > 0:
                await asyncio.sleep(wait)
            yield request

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        if stream:
            return sum([1 async for _ in stub.ModelStreamInfer(paced())])
        calls = [asyncio.ensure_future(stub.ModelInfer(r)) async for r in paced()]
        return len(await asyncio.gather(*calls))


def measure(mode: str, args: argparse.Namespace) -> float:
    """The servicer's CPU per request, in microseconds."""
    port = 20000 + os.getpid() % 20000
    cmd = ["taskset", "-c", args.server_cpus, sys.executable, __file__, "--serve", mode]
    server = subprocess.Popen([*cmd, "--port", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        os.sched_setaffinity(0, [int(c) for c in args.client_cpus.split(",")])
        stream = mode.endswith("stream")
        asyncio.run(load(port, stream, args.rate, 1.0))  # warm-up
        before = cpu_s(server.pid)
        answered = asyncio.run(load(port, stream, args.rate, args.duration))
        return (cpu_s(server.pid) - before) / answered * 1e6
    finally:
        server.kill()
        server.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rate", type=float, default=2000.0)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--server-cpus", default="1")
    ap.add_argument("--client-cpus", default="0")
    ap.add_argument("--serve", choices=MODES, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    results: dict[str, list[float]] = {m: [] for m in MODES}
    for r in range(args.rounds):
        for mode in MODES:
            results[mode].append(measure(mode, args))
            print(f"round {r + 1} {mode:<15} {results[mode][-1]:6.1f} us/request", flush=True)
    print(f"do-nothing servicer, {args.rate:g} req/s, {time.strftime('%Y-%m-%d')}: median CPU")
    for mode, values in results.items():
        print(f"  {mode:<15} {statistics.median(values):6.1f} us per request")


if __name__ == "__main__":
    main()
