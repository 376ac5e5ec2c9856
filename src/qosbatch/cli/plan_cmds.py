"""Commands of the planner: ``recommend`` (one model, one line) and ``plan`` (many models)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from qosbatch.cli import app
from qosbatch.cli.profile_cmds import int_list
from qosbatch.core.errors import UserError
from qosbatch.core.units import duration_ms

if TYPE_CHECKING:
    from qosbatch.planner.plan import Plan

console = Console()

_NODES_HELP = "Node catalogue YAML (or 'default': the shipped cloud instance list)."
_BATCH_HELP = "Largest batch sizes b to try, e.g. 1,2,4,8,16,32 (dynamic batching, no delay)."


def _settings(max_batch: str | None, cores: str | None, headroom: float | None) -> dict[str, Any]:
    """The planner settings given on the command line (they override the workload file's)."""
    out: dict[str, Any] = {}
    if max_batch is not None:
        out["max_batches"] = tuple(sorted(set(int_list(max_batch, "--max-batch"))))
    if cores is not None:
        out["cores"] = tuple(sorted(set(int_list(cores, "--cores"))))
    if headroom is not None:
        out["headroom"] = headroom
    for key in ("max_batches", "cores"):
        if any(v < 1 for v in out.get(key) or ()):
            raise UserError(f"--{key.replace('_', '-')} must be integers >= 1")
    if out.get("headroom", 0.0) < 0:
        raise UserError(f"--headroom must be >= 0, got {out['headroom']}")
    return out


@app.command()
def recommend(
    profile_path: Annotated[Path, typer.Argument(metavar="PROFILE", help="A profile JSON.")],
    slo: Annotated[str, typer.Option(help="Latency SLO, e.g. 200ms or 0.2s.")],
    rate: Annotated[float, typer.Option(help="Arrival rate, requests per second (Poisson).")],
    percentile: Annotated[
        float | None,
        typer.Option(help="Bound this percentile (90-99) of latency; default: the mean."),
    ] = None,
    nodes: Annotated[Path | None, typer.Option(help=_NODES_HELP)] = None,
    price: Annotated[
        float | None,
        typer.Option("--price", help="Price per hour of the profiled node (without --nodes)."),
    ] = None,
    max_batch: Annotated[str | None, typer.Option(help=_BATCH_HELP)] = None,
    cores: Annotated[str | None, typer.Option(help="Replica core counts to try.")] = None,
    headroom: Annotated[
        float | None, typer.Option(help="Plan for rate x (1 + headroom); default 0.03.")
    ] = None,
) -> None:
    """One line: the batching setting, cores, replicas and node that meet the SLO cheapest.

    Without --nodes the options are the node the profile was taken on, at its
    profiled core counts; with a catalogue, every node type in it (latency on a
    node never profiled is predicted from flops*p/c and marked so).
    """
    from qosbatch.core.profile import load_profile
    from qosbatch.planner.files import load_catalogue
    from qosbatch.planner.options import Demand
    from qosbatch.planner.plan import PlannerSettings
    from qosbatch.planner.recommend import profiled_catalogue
    from qosbatch.planner.recommend import recommend as cheapest
    from qosbatch.planner.service import ModelService
    from qosbatch.planner.targets import Target

    if rate <= 0:
        raise UserError(f"--rate must be > 0 requests per second, got {rate:g}")
    if price is not None and price < 0:
        raise UserError(f"--price must be >= 0, got {price:g}")
    target = Target(duration_ms(slo, "--slo") / 1e3, percentile)
    settings = PlannerSettings(**_settings(max_batch, cores, headroom))
    prof = load_profile(profile_path)
    catalogue = load_catalogue(nodes) if nodes is not None else None
    top_cores = max(
        [t.cores for t in catalogue.node_types] if catalogue else [prof.node.logical_cores]
    )
    service = ModelService.from_profile(
        prof,
        max_cores=max(top_cores, *(settings.cores or [1])),
        max_batch=max(settings.max_batches),
    )
    if catalogue is None:
        catalogue = profiled_catalogue(service, price)
    rec = cheapest(service, Demand(service.name, rate, target), catalogue, settings)
    typer.echo(rec.line(catalogue.currency))


@app.command()
def plan(
    workload: Annotated[
        Path, typer.Option(help="Workload YAML: models with profile, rate, slo, percentile.")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Plan YAML to write.")] = Path(
        "plan.yaml"
    ),
    nodes: Annotated[Path | None, typer.Option(help=_NODES_HELP)] = None,
    verify: Annotated[
        bool, typer.Option("--verify", help="Replay each model's workload in the simulator.")
    ] = False,
    requests: Annotated[
        int, typer.Option(min=1000, help="Simulated requests per model for --verify.")
    ] = 20_000,
    seed: Annotated[int, typer.Option(help="Seed of --verify's arrivals and service times.")] = 0,
    max_batch: Annotated[str | None, typer.Option(help=_BATCH_HELP)] = None,
    cores: Annotated[str | None, typer.Option(help="Replica core counts to try.")] = None,
    headroom: Annotated[
        float | None, typer.Option(help="Plan for each rate x (1 + headroom); default 0.03.")
    ] = None,
    time_limit: Annotated[
        float,
        typer.Option(help="Seconds the integer program may search (then: best plan found)."),
    ] = 2.0,
) -> None:
    """The cheapest nodes and replicas meeting every model's SLO (integer program, HiGHS).

    Exit status 1 when --verify finds a model missing its target in simulation.
    """
    from qosbatch.planner.files import load_catalogue, load_workload, write_plan
    from qosbatch.planner.plan import PlannerSettings, make_plan

    catalogue = load_catalogue(nodes)
    cli = _settings(max_batch, cores, headroom)
    top_cores = max([t.cores for t in catalogue.node_types] + list(cli.get("cores") or ()))
    batches = cli.get("max_batches")
    loaded = load_workload(workload, top_cores, max(batches) if batches else None)
    file_side = {
        k: v
        for k, v in (
            ("max_batches", loaded.workload.max_batch),
            ("cores", loaded.workload.cores),
            ("headroom", loaded.workload.headroom),
        )
        if v is not None
    }
    if time_limit <= 0:
        raise UserError(f"--time-limit must be > 0 s, got {time_limit:g}")
    settings = PlannerSettings(**{**file_side, **cli}, time_limit_s=time_limit)
    result = make_plan(loaded.demands, loaded.services, catalogue, settings)
    write_plan(result, output)
    _print_plan(result)
    typer.echo(f"wrote {output}")
    if verify:
        from qosbatch.planner.verify import verify_plan

        with console.status("simulating the plan..."):
            checks = verify_plan(result, loaded.services, requests, seed)
        for check in checks:
            typer.echo(check.line())
        if not all(c.met for c in checks):
            raise typer.Exit(1)


def _print_plan(result: Plan) -> None:
    table = Table(title=f"plan: {result.currency} {result.cost_per_hour:.4g} per hour")
    for col in ("node", "model", "cores", "max batch", "req/s", "capacity", "predicted"):
        table.add_column(col, justify="left" if col in ("node", "model", "predicted") else "right")
    for n in result.nodes:
        for r in n.replicas:
            d = next(d for d in result.demands if d.model == r.model)
            table.add_row(
                n.name,
                r.model,
                str(r.option.cores),
                str(r.option.setting.b),
                f"{r.rate:.3g}",
                f"{r.option.capacity:.3g}",
                f"{d.target.label} {r.predicted_latency_s * 1e3:.1f} ms"
                + ("*" if r.option.predicted else ""),
            )
    console.print(table)
    if any(r.option.predicted for n in result.nodes for r in n.replicas):
        typer.echo("* latency predicted via flops*p/c (a node type or core count never profiled)")
    gap = (
        "optimal"
        if result.cost_per_hour <= result.lower_bound * (1 + 1e-9)
        else f"within {result.cost_per_hour / max(result.lower_bound, 1e-12) - 1:.1%} of the "
        f"proven lower bound {result.lower_bound:.4g}"
    )
    typer.echo(
        f"{len(result.nodes)} nodes, {sum(len(n.replicas) for n in result.nodes)} replicas, "
        f"{result.options_considered} options priced, planned in {result.plan_seconds:.2f} s "
        f"({gap}; {result.method}); policies in the plan file"
    )
    if result.prices:
        typer.echo(f"prices: {result.prices}")
