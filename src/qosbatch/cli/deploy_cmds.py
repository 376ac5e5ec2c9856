"""``qosbatch deploy``: a plan on Ray Serve (an embedded local Ray, or a cluster)."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from qosbatch.cli import app
from qosbatch.core.errors import UserError

APP_NAME = "qosbatch"


@app.command()
def deploy(
    plan: Annotated[Path | None, typer.Argument(help="A 'qosbatch plan' YAML file.")] = None,
    address: Annotated[
        str | None,
        typer.Option(
            help="Ray cluster to join (auto, ray://host:port); default: start a local one."
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="HTTP address (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.")] = 8000,
    cpus: Annotated[
        int | None, typer.Option(help="CPUs of the local Ray (default: this process's).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be deployed; start nothing.")
    ] = False,
    status: Annotated[
        bool, typer.Option("--status", help="Show the running deployment (needs --address).")
    ] = False,
    shutdown: Annotated[
        bool, typer.Option("--shutdown", help="Stop the running deployment (needs --address).")
    ] = False,
    max_queue: Annotated[
        int, typer.Option(help="Waiting requests per replica before 503.")
    ] = 10_000,
    pin: Annotated[
        bool,
        typer.Option(
            help="Each replica claims its cores on its node and pins to them "
            "(--no-pin: the OS places its threads)."
        ),
    ] = True,
) -> None:
    """Deploy a plan on Ray Serve: a deployment per model with the plan's replicas and cores,
    the qosbatch batcher and policy inside each replica, KServe v2 over HTTP in front.

    Runs until Ctrl-C or SIGTERM, then shuts the application down.
    """
    if status or shutdown:
        if plan is not None:  # it would be ignored: these act on what is already running
            raise UserError(
                "--status and --shutdown act on the running deployment, not on a plan file; "
                "drop the plan"
            )
        _manage(address, status, shutdown)
        return
    if cpus is not None and address is not None:
        raise UserError("--cpus sizes the local Ray; a cluster at --address has its own CPUs")
    if plan is None:
        raise UserError("give a plan file (or --status / --shutdown)")
    from qosbatch.deploy.layout import check_fits, read_layout

    layout = read_layout(plan)
    configs = _configs(layout)
    if dry_run:
        _dry_run(layout, address, cpus)
        return
    if address is None:
        have = len(os.sched_getaffinity(0))
        check_fits(layout, float(cpus or have), 0.0)  # before Ray starts
    _run_on_ray(layout, configs, address, cpus, host, port, max_queue, pin)


def _dry_run(layout: Any, address: str | None, cpus: int | None) -> None:
    """What would be deployed, and whether it fits this machine (when no cluster is given)."""
    from qosbatch.deploy.layout import check_fits

    for d in layout:
        typer.echo(
            f"{d.model}: {d.replicas} replica(s) x {d.cores} core(s), policy {d.policy}, "
            f"SLO {d.slo_ms:g} ms, ~{d.memory_mib:.0f} MiB each"
        )
    typer.echo(f"in all: {sum(d.replicas * d.cores for d in layout)} CPUs")
    if address is None:
        check_fits(layout, float(cpus or len(os.sched_getaffinity(0))), 0.0)
        typer.echo("fits this machine")


def _run_on_ray(
    layout: Any,
    configs: list[Any],
    address: str | None,
    cpus: int | None,
    host: str,
    port: int,
    max_queue: int,
    pin: bool = True,
) -> None:
    """Start (or join) Ray, run the application until a signal, and take it down again."""
    import ray
    from ray import serve

    from qosbatch.deploy.layout import check_fits, describe
    from qosbatch.deploy.ray_app import build_application

    if address is None:
        ray.init(num_cpus=cpus or len(os.sched_getaffinity(0)), include_dashboard=False,
                 log_to_driver=False)  # fmt: skip
    else:
        ray.init(address=address, log_to_driver=False)
    try:
        res = ray.cluster_resources()
        check_fits(layout, float(res.get("CPU", 0)), float(res.get("memory", 0)))
        serve.start(http_options={"host": host, "port": port})
        replicas = {d.model: d.replicas for d in layout}
        serve.run(
            build_application(configs, replicas, max_queue, pin), name=APP_NAME, route_prefix="/"
        )
        _warm_up(host, port, [d.model for d in layout])
        typer.echo(f"qosbatch: deployed {describe(layout)}")
        typer.echo(f"qosbatch: serving on http://{host}:{port} (Ctrl-C or SIGTERM stops it)")
        _wait_for_stop()
        typer.echo("qosbatch: shutting the application down")
    finally:
        if address is not None:  # a shared cluster: remove our application only
            serve.delete(APP_NAME)
        # The local Ray this command started goes with it, Serve and replicas included.
        # (serve.shutdown() first waited 30 s for its controller and then hung.)
        ray.shutdown()


def _wait_for_stop() -> None:
    """Block until SIGINT or SIGTERM; a second one then is ignored."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # A signal sent twice (a wrapper forwarding it, say) must not cut the shutdown
        # short: that once left this process spinning with Ray half stopped.
        signal.signal(sig, signal.SIG_IGN)


def _warm_up(host: str, port: int, models: list[str]) -> None:
    """Ask each model for its metadata: its replicas load the model now, not on a user's
    first request (a replica starts its batcher and worker on first use)."""
    import json
    import urllib.error
    import urllib.request

    for name in models:
        url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/v2/models/{name}"
        try:
            with urllib.request.urlopen(url, timeout=300) as r:
                json.load(r)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise UserError(f"{name} did not come up: {exc}") from None


def _configs(layout: Any) -> list[Any]:
    from qosbatch.models.loading import resolve_model
    from qosbatch.policies.registry import parse_policy
    from qosbatch.serve.server import ModelConfig
    from qosbatch.sim.check import checked

    return [
        ModelConfig(
            resolve_model(d.model),
            checked(parse_policy(d.policy)),
            d.slo_ms / 1e3,
            tuple(range(d.cores)),
        )
        for d in layout
    ]


def _manage(address: str | None, status: bool, shutdown: bool) -> None:
    if address is None:
        raise UserError("--status and --shutdown join a running Ray: give --address (e.g. auto)")
    import ray
    from ray import serve

    try:
        ray.init(address=address, log_to_driver=False)
    except ConnectionError as exc:
        raise UserError(f"no Ray cluster at {address}: {exc}") from None
    try:
        if status:
            apps = serve.status().applications
            if APP_NAME not in apps:
                typer.echo("no qosbatch application is running")
            for name, a in apps.items():
                typer.echo(f"{name}: {a.status}")
                for dep, d in a.deployments.items():
                    typer.echo(f"  {dep}: {d.status} {dict(d.replica_states)}")
        if shutdown:
            serve.shutdown()
            typer.echo("qosbatch: application shut down")
    finally:
        ray.shutdown()
