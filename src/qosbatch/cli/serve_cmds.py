"""Commands of the live layer: ``serve`` (the server) and ``bench`` (open-loop load)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer

from qosbatch.cli import app
from qosbatch.core.errors import UserError

DEFAULT_SLO = "500ms"


@app.command()
def serve(
    model: Annotated[
        list[str] | None,
        typer.Option(help="Zoo name, .onnx/.pt2/TorchScript file or module:factory; repeatable."),
    ] = None,
    plan: Annotated[
        Path | None,
        typer.Option(help="Serve what a 'qosbatch plan' file puts on one node (see --node)."),
    ] = None,
    node: Annotated[
        str | None, typer.Option(help="The plan's node to serve (default: its first).")
    ] = None,
    policy: Annotated[
        str,
        typer.Option(
            help="Policy spec, e.g. slo or dynamic:max_batch_size=16; your own as "
            "module:Class[:knob=value,...] (checked before use)."
        ),
    ] = "slo",
    slo: Annotated[
        str, typer.Option(help="Default latency budget of a request that brings none.")
    ] = DEFAULT_SLO,
    profile: Annotated[
        list[Path] | None,
        typer.Option(help="A served model's profile JSON (else a short calibration); repeatable."),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to bind (loopback unless told).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0: any free one, printed).")] = 8000,
    cores: Annotated[
        int | None, typer.Option(help="Cores for all models together (default: all), split evenly.")
    ] = None,
    workers: Annotated[int, typer.Option(help="Worker processes (replicas) per model.")] = 1,
    share_cores: Annotated[
        bool,
        typer.Option(
            help="All models draw every batch's cores from one pool of --cores, instead of "
            "each owning its share: the division follows the load."
        ),
    ] = False,
    backend: Annotated[str, typer.Option(help="torch or onnx.")] = "torch",
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    input_shape: Annotated[
        str | None, typer.Option(help="One sample's shape, for files that do not say it.")
    ] = None,
    max_batch: Annotated[int, typer.Option(help="Most requests in one batch.")] = 128,
    max_queue: Annotated[
        int, typer.Option(help="Waiting requests per model before new ones get 503.")
    ] = 10_000,
    max_body_mb: Annotated[float, typer.Option(help="Largest request body, in MiB.")] = 64.0,
    max_in_flight: Annotated[
        int,
        typer.Option(
            help="Infer requests being read or waiting at once (all models); past it, 503 "
            "before the body is read."
        ),
    ] = 1024,
    drain_timeout: Annotated[
        float, typer.Option(help="Seconds a SIGTERM waits for accepted requests.")
    ] = 30.0,
    seed: Annotated[int, typer.Option(help="Seed of the policies' randomness.")] = 0,
    records: Annotated[
        Path | None,
        typer.Option(
            help="Write one JSON line per answered request to this file (.jsonl); "
            "`qosbatch simulate --trace FILE` replays it."
        ),
    ] = None,
) -> None:
    """Serve models over the Open Inference Protocol (KServe v2, as Triton) with an SLO policy.

    Every request ends in a result, a 429 with the reason it was shed, or an error
    with its cause. SIGTERM drains: new requests get 503, accepted ones are answered.
    """
    from qosbatch.core.profile import load_profile
    from qosbatch.core.units import duration_ms
    from qosbatch.engine.queue import split_evenly
    from qosbatch.models.backends import check_backend
    from qosbatch.models.loading import ModelRef, parse_shape, resolve_model
    from qosbatch.planner.files import read_plan_models
    from qosbatch.policies.registry import PolicySpec, parse_policy
    from qosbatch.profiling.pinning import available_cores
    from qosbatch.serve.server import ModelConfig, ServerConfig, bind
    from qosbatch.serve.server import serve as run_server
    from qosbatch.sim.check import checked

    check_backend(backend, device)
    spec = checked(parse_policy(policy))
    slo_s = duration_ms(slo, "--slo") / 1e3
    for name, value, low in (
        ("--max-batch", max_batch, 1),
        ("--max-queue", max_queue, 1),
        ("--max-in-flight", max_in_flight, 1),
    ):
        if value < low:
            raise UserError(f"{name} must be >= {low}, got {value}")
    if not max_body_mb > 0:
        raise UserError(f"--max-body-mb must be > 0, got {max_body_mb}")
    if not 0 <= port <= 65535:
        raise UserError(f"--port must be 0 to 65535, got {port}")
    if records is not None and not records.parent.is_dir():
        raise UserError(f"--records: no directory {records.parent} to write {records.name} in")
    shape = parse_shape(input_shape) if input_shape else None
    # (model ref, policy spec, SLO in seconds, cores, workers), from the flags or the plan
    wanted: list[tuple[ModelRef, PolicySpec, float, int | None, int]] = []
    if plan is not None:
        if model:
            raise UserError("give --model or --plan, not both")
        for a in read_plan_models(plan, node):
            ref = resolve_model(a.model, shape)
            spec_of_plan = checked(parse_policy(a.policy))
            wanted.append((ref, spec_of_plan, a.slo_ms / 1e3, sum(a.replica_cores),
                           len(a.replica_cores)))  # fmt: skip
    elif model:
        if node is not None:
            raise UserError("--node picks a node of --plan; there is no plan")
        wanted = [(resolve_model(m, shape), spec, slo_s, None, workers) for m in model]
    else:
        raise UserError("give --model (repeatable) or --plan")
    refs = [w[0] for w in wanted]
    for ref, pspec, *_ in wanted:  # an agent trained for another model: refuse before loading
        if pspec.name == "rl":
            from qosbatch.policies.learned import check_trained_for, read_info

            agent = pspec.params["agent"]
            check_trained_for(agent, read_info(agent), ref.name)
    profiles = {}
    for path in profile or []:
        p = load_profile(path)
        if p.model.name not in {r.name for r in refs}:
            raise UserError(f"{path} profiles {p.model.name!r}, which is not served here")
        profiles[p.model.name] = p
    cpus = available_cores()
    if plan is not None:
        total = sum(w[3] or 0 for w in wanted)
        if total > len(cpus):
            raise UserError(
                f"the plan puts {total} cores on this node; this machine lets us use {len(cpus)}"
            )
        counts = [w[3] or 0 for w in wanted]
    else:
        total = len(cpus) if cores is None else cores
        if not len(refs) <= total <= len(cpus):
            raise UserError(
                f"--cores must be between {len(refs)} (one per model) and the {len(cpus)} "
                f"this machine lets us use, got {total}"
            )
        counts = [total] * len(refs) if share_cores else split_evenly(total, len(refs))
    if share_cores and plan is not None:
        raise UserError("--share-cores divides --cores at run time; a plan fixes each model's")
    configs, at = [], 0
    for (ref, pspec, budget_s, _, n_workers), n in zip(wanted, counts, strict=True):
        configs.append(
            ModelConfig(
                ref,
                pspec,
                budget_s,
                tuple(cpus[at : at + n]),
                n_workers,
                backend,
                device,
                profiles.get(ref.name),
                max_batch,
            )
        )
        at += 0 if share_cores else n
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
    logging.basicConfig(level=logging.INFO, format="qosbatch: %(message)s")
    sock = bind(host, port)
    bound = sock.getsockname()[1]

    def ready(server: object) -> None:
        for m in configs:
            typer.echo(
                f"qosbatch: {m.ref.name}: policy {m.policy.label}, SLO {m.slo_s * 1e3:g} ms, "
                f"{len(m.cpus)} core(s) {list(m.cpus)}, {m.workers} worker(s)"
            )
        typer.echo(f"qosbatch: serving on http://{host}:{bound} (Ctrl-C or SIGTERM drains)")

    try:  # uvloop (with uvicorn[standard]): about 1.5x the requests/s of asyncio's own loop
        import uvloop
    except ModuleNotFoundError as exc:  # uvloop's absence only (Windows): plain asyncio
        if exc.name != "uvloop":
            raise
        asyncio.run(run_server(config, sock, ready))
    else:
        uvloop.run(run_server(config, sock, ready))


@app.command()
def bench(
    model: Annotated[str, typer.Option(help="The served model to load.")],
    url: Annotated[str, typer.Option(help="The server's base URL.")] = "http://127.0.0.1:8000",
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
    seed: Annotated[int, typer.Option(help="Seed of the workload.")] = 0,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print a JSON list with one object, as simulate does.")
    ] = False,
    plot: Annotated[
        Path | None, typer.Option(help="PNG of each request's latency against time.")
    ] = None,
) -> None:
    """Send a workload to a server open-loop (each request at its time) and report its metrics.

    The numbers and JSON keys are simulate's, measured from the client's side.
    """
    import json

    import numpy as np

    from qosbatch.cli.sim_cmds import print_metrics
    from qosbatch.client.loadgen import run_load
    from qosbatch.metrics import rejection_reasons, summarize
    from qosbatch.workloads.spec import parse_workload
    from qosbatch.workloads.trace import Trace

    if (trace is None) == (workload is None):
        raise UserError("give exactly one of --trace and --workload")
    if encoding not in ("binary", "json"):
        raise UserError(f"--encoding must be binary or json, got {encoding!r}")
    if not url.startswith(("http://", "https://")):
        raise UserError(f"--url must start with http:// or https://, got {url!r}")
    spec = parse_workload(workload if workload is not None else f"trace:path={trace}")
    t = spec.generate(np.random.default_rng(seed), default_model=model)
    if duration is not None:
        if not duration > 0:
            raise UserError(f"--duration must be > 0, got {duration}")
        keep = t.time_s < duration
        t = Trace(t.time_s[keep], t.model[keep], t.models, t.slo_ms[keep])
    if len(t) > max_requests:
        raise UserError(
            f"the workload has {len(t)} requests, over --max-requests {max_requests}; "
            "shorten it with --duration"
        )
    if not len(t):
        raise UserError("the workload has no requests")
    result = asyncio.run(
        run_load(url, model, t, max_connections=connections, encoding=encoding)  # type: ignore[arg-type]
    )
    m = summarize(result.records)
    row = {"policy": f"live {model}", **m.to_json(), "errors": result.errors}
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
