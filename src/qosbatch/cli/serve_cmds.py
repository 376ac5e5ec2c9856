"""Commands of the live layer: ``serve`` (the server) and ``bench`` (open-loop load)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from qosbatch.cli import app
from qosbatch.cli.sim_cmds import PriceOption
from qosbatch.core.errors import UserError

if TYPE_CHECKING:  # the command imports these when it runs: `qosbatch --help` stays quick
    from qosbatch.serve.server import ServerConfig
    from qosbatch.workloads.trace import Trace

DEFAULT_SLO = "500ms"
# serve's parameters that a plan fixes per model: given with --plan, they are refused.
PLAN_FIXES = ("policy", "slo", "workers", "cores", "share_cores")


# serve's options, one alias each, so that the command's signature reads as a list of flags.
_Models = Annotated[
    list[str] | None,
    typer.Option(help="Zoo name, .onnx/.pt2/TorchScript file or module:factory; repeatable."),
]
_Plan = Annotated[
    Path | None,
    typer.Option(help="Serve what a 'qosbatch plan' file puts on one node (see --node)."),
]
_Node = Annotated[str | None, typer.Option(help="The plan's node to serve (default: its first).")]
_Policy = Annotated[
    str,
    typer.Option(
        help="Policy spec, e.g. slo or dynamic:max_batch_size=16; your own as "
        "module:Class[:knob=value,...] (checked before use)."
    ),
]
_Slo = Annotated[str, typer.Option(help="Default latency budget of a request that brings none.")]
_Profiles = Annotated[
    list[Path] | None,
    typer.Option(help="A served model's profile JSON (else a short calibration); repeatable."),
]
_Host = Annotated[str, typer.Option(help="Address to bind (loopback unless told).")]
_Port = Annotated[int, typer.Option(help="TCP port (0: any free one, printed).")]
_GrpcPort = Annotated[
    int | None,
    typer.Option(
        help="Also serve KServe v2 over gRPC (as Triton) on this port of --host "
        "(0: any free one, printed). Default: HTTP only."
    ),
]
_Cores = Annotated[
    int | None, typer.Option(help="Cores for all models together (default: all), split evenly.")
]
_Workers = Annotated[int, typer.Option(help="Worker processes (replicas) per model.")]
_ShareCores = Annotated[
    bool,
    typer.Option(
        help="All models draw every batch's cores from one pool of --cores, instead of "
        "each owning its share: the division follows the load."
    ),
]
_Backend = Annotated[str, typer.Option(help="torch or onnx.")]
_Device = Annotated[str, typer.Option(help="cpu or cuda.")]
_InputShape = Annotated[
    str | None, typer.Option(help="One sample's shape, for files that do not say it.")
]
_MaxBatch = Annotated[int, typer.Option(help="Most requests in one batch.")]
_MaxQueue = Annotated[int, typer.Option(help="Waiting requests per model before new ones get 503.")]
_MaxBodyMb = Annotated[float, typer.Option(help="Largest request body, in MiB.")]
_MaxInFlight = Annotated[
    int,
    typer.Option(
        help="Infer requests being read or waiting at once (all models); past it, 503 "
        "before the body is read."
    ),
]
_DrainTimeout = Annotated[
    float, typer.Option(help="Seconds a SIGTERM waits for accepted requests.")
]
_Seed = Annotated[int, typer.Option(help="Seed of the policies' randomness.")]
_Records = Annotated[
    Path | None,
    typer.Option(
        help="Write one JSON line per answered request to this file (.jsonl); "
        "`qosbatch simulate --trace FILE` replays it."
    ),
]


@app.command()
def serve(
    ctx: typer.Context,
    model: _Models = None,
    plan: _Plan = None,
    node: _Node = None,
    policy: _Policy = "slo",
    slo: _Slo = DEFAULT_SLO,
    profile: _Profiles = None,
    host: _Host = "127.0.0.1",
    port: _Port = 8000,
    grpc_port: _GrpcPort = None,
    cores: _Cores = None,
    workers: _Workers = 1,
    share_cores: _ShareCores = False,
    backend: _Backend = "torch",
    device: _Device = "cpu",
    input_shape: _InputShape = None,
    max_batch: _MaxBatch = 128,
    max_queue: _MaxQueue = 10_000,
    max_body_mb: _MaxBodyMb = 64.0,
    max_in_flight: _MaxInFlight = 1024,
    drain_timeout: _DrainTimeout = 30.0,
    seed: _Seed = 0,
    records: _Records = None,
) -> None:
    """Serve models over the Open Inference Protocol (KServe v2, as Triton) with an SLO policy.

    Every request ends in a result, a 429 with the reason it was shed, or an error
    with its cause. SIGTERM drains: new requests get 503, accepted ones are answered.
    """
    from qosbatch.cli.serve_setup import (
        check_limits,
        core_counts,
        given_profiles,
        model_configs,
        refuse_foreign_agents,
        refuse_plan_conflicts,
        wanted_models,
    )
    from qosbatch.core.units import duration_ms
    from qosbatch.models.backends import check_backend
    from qosbatch.models.loading import parse_shape
    from qosbatch.policies.registry import parse_policy
    from qosbatch.profiling.pinning import available_cores
    from qosbatch.serve.server import ServerConfig
    from qosbatch.sim.check import checked

    if plan is not None:
        refuse_plan_conflicts([p for p in PLAN_FIXES if given_on_command_line(ctx, p)])
    check_backend(backend, device)
    spec = checked(parse_policy(policy))
    slo_s = duration_ms(slo, "--slo") / 1e3
    check_limits(max_batch, max_queue, max_in_flight, max_body_mb, port, records, grpc_port)
    shape = parse_shape(input_shape) if input_shape else None
    wanted = wanted_models(model, plan, node, shape, spec, slo_s, workers)
    refuse_foreign_agents(wanted)
    profiles = given_profiles(profile or [], {w.ref.name for w in wanted})
    cpus = available_cores()
    counts = core_counts(wanted, plan is not None, cores, share_cores, cpus)
    configs = model_configs(wanted, counts, cpus, share_cores, backend, device, profiles, max_batch)
    config = ServerConfig(
        tuple(configs),
        max_queue=max_queue,
        max_body_bytes=int(max_body_mb * (1 << 20)),
        drain_timeout_s=drain_timeout,
        seed=seed,
        share_cores=share_cores,
        max_in_flight=max_in_flight,
        records=str(records) if records is not None else None,
    )
    _run(config, host, port, grpc_port)


def given_on_command_line(ctx: typer.Context, param: str) -> bool:
    """Whether the user gave ``param`` (even at its default value), not typer's default.

    By the source's name: typer carries its own copy of click, whose ParameterSource
    is not ``click.core.ParameterSource``.
    """
    source = ctx.get_parameter_source(param)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


def _run(config: ServerConfig, host: str, port: int, grpc_port: int | None = None) -> None:
    """Bind, print the models and the URL once serving, and serve until drained."""
    from qosbatch.serve.server import Server, bind
    from qosbatch.serve.server import serve as run_server

    logging.basicConfig(level=logging.INFO, format="qosbatch: %(message)s")
    sock = bind(host, port)
    bound = sock.getsockname()[1]
    grpc_at = None if grpc_port is None else (host, grpc_port)

    def ready(server: Server) -> None:
        for m in config.models:
            typer.echo(
                f"qosbatch: {m.ref.name}: policy {m.policy.label}, SLO {m.slo_s * 1e3:g} ms, "
                f"{len(m.cpus)} core(s) {list(m.cpus)}, {m.workers} worker(s)"
            )
        if server.grpc_port is not None:  # (before the HTTP line, which says it is up)
            typer.echo(f"qosbatch: gRPC (KServe v2) on {host}:{server.grpc_port}")
        typer.echo(f"qosbatch: serving on http://{host}:{bound} (Ctrl-C or SIGTERM drains)")

    try:  # uvloop (with uvicorn[standard]): about 1.5x the requests/s of asyncio's own loop
        import uvloop
    except ModuleNotFoundError as exc:  # uvloop's absence only (Windows): plain asyncio
        if exc.name != "uvloop":
            raise
        asyncio.run(run_server(config, sock, ready, grpc_at))
    else:
        uvloop.run(run_server(config, sock, ready, grpc_at))


@app.command()
def bench(
    model: Annotated[str, typer.Option(help="The served model to load.")],
    url: Annotated[
        str | None,
        typer.Option(
            help="The server's base URL (default http://127.0.0.1:8000); "
            "with --protocol grpc or grpc-stream, host:port (default 127.0.0.1:8001)."
        ),
    ] = None,
    trace: Annotated[
        Path | None, typer.Option(help="Trace CSV to replay (time_s,model,slo_ms).")
    ] = None,
    workload: Annotated[
        str | None,
        typer.Option(help="Workload spec, e.g. poisson:rate=50,duration_s=10,slo_ms=200."),
    ] = None,
    duration: Annotated[
        float | None, typer.Option(help="Send only the first this-many seconds of the workload.")
    ] = None,
    max_requests: Annotated[int, typer.Option(help="Refuse workloads larger than this.")] = 100_000,
    connections: Annotated[int, typer.Option(help="Most connections open at once.")] = 256,
    encoding: Annotated[
        str,
        typer.Option(
            help="binary (Triton's binary tensors) or json (plain v2, for MLServer and others)."
        ),
    ] = "binary",
    protocol: Annotated[
        str,
        typer.Option(
            help="http; grpc (KServe v2 over gRPC, a call per request, as tritonclient.grpc's "
            "infer); or grpc-stream (every request on one ModelStreamInfer call)."
        ),
    ] = "http",
    seed: Annotated[int, typer.Option(help="Seed of the workload.")] = 0,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print a JSON list with one object, as simulate does.")
    ] = False,
    plot: Annotated[
        Path | None, typer.Option(help="PNG of each request's latency against time.")
    ] = None,
    price: PriceOption = None,
    cores: Annotated[
        int, typer.Option(help="Cores the server holds, billed over the run with --price.")
    ] = 1,
) -> None:
    """Send a workload to a server open-loop (each request at its time) and report its metrics.

    The numbers and JSON keys are simulate's, measured from the client's side. With
    --price, the cost per million on-time requests bills the --cores the server holds
    over the run's span (the client cannot see the server's busy time).
    """
    import dataclasses
    import json

    from qosbatch.cli.sim_cmds import price_of, priced, print_metrics
    from qosbatch.metrics import rejection_reasons, summarize

    if cores < 1:
        raise UserError(f"--cores must be >= 1, got {cores}")
    cost = price_of(price) if price is not None else None
    url = _bench_url(url, protocol, encoding)
    t = _bench_trace(model, trace, workload, duration, max_requests, seed)
    if protocol in GRPC_PROTOCOLS:
        from qosbatch.client.grpc_client import run_grpc_load

        result = asyncio.run(run_grpc_load(url, model, t, stream=protocol == "grpc-stream"))
    else:
        from qosbatch.client.loadgen import run_load

        result = asyncio.run(
            run_load(url, model, t, max_connections=connections, encoding=encoding)  # type: ignore[arg-type]
        )
    m = summarize(result.records)
    held = dataclasses.replace(m, core_seconds=cores * m.span_s)  # what the server held
    row = {"policy": f"live {model}", **m.to_json(), **priced(cost, held), "errors": result.errors}
    if json_out:
        typer.echo(json.dumps([row], indent=1))
    else:
        print_metrics([row], f"{len(t)} requests to {url} in {result.wall_s:.1f} s (open loop)")
        for reason, count in rejection_reasons(result.records):
            typer.echo(f"  {count} x {reason}")
    if plot is not None:
        from qosbatch.viz.live_plot import plot_latencies

        out = plot_latencies(result.records, plot, title=f"{model} at {url}")
        typer.echo(f"wrote {out}", err=json_out)


GRPC_PROTOCOLS = ("grpc", "grpc-stream")


def _bench_url(url: str | None, protocol: str, encoding: str) -> str:
    """The server's address for ``protocol``, checked (gRPC's is host:port)."""
    if encoding not in ("binary", "json"):
        raise UserError(f"--encoding must be binary or json, got {encoding!r}")
    if protocol in GRPC_PROTOCOLS:
        from qosbatch.client.grpc_client import grpc_target

        return grpc_target(url or "127.0.0.1:8001")
    if protocol != "http":
        raise UserError(f"--protocol must be http, grpc or grpc-stream, got {protocol!r}")
    if url is None:
        return "http://127.0.0.1:8000"
    if not url.startswith(("http://", "https://")):
        raise UserError(f"--url must start with http:// or https://, got {url!r}")
    return url


def _bench_trace(
    model: str,
    trace: Path | None,
    workload: str | None,
    duration: float | None,
    max_requests: int,
    seed: int,
) -> Trace:
    """The requests to send: the trace or workload, cut to --duration, within --max-requests."""
    import numpy as np

    from qosbatch.workloads.spec import parse_workload

    if (trace is None) == (workload is None):
        raise UserError("give exactly one of --trace and --workload")
    spec = parse_workload(workload if workload is not None else f"trace:path={trace}")
    t = spec.generate(np.random.default_rng(seed), default_model=model)
    if duration is not None:
        if not duration > 0:
            raise UserError(f"--duration must be > 0, got {duration}")
        t = t.until(duration)
    if len(t) > max_requests:
        raise UserError(
            f"the workload has {len(t)} requests, over --max-requests {max_requests}; "
            "shorten it with --duration"
        )
    if not len(t):
        raise UserError("the workload has no requests")
    return t
