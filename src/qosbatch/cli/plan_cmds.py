"""Commands of the planner: ``recommend`` (one model, one line) and ``plan`` (many models)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from qosbatch.cli import app
from qosbatch.cli.profile_cmds import int_list
from qosbatch.cli.sim_cmds import FrontendOption
from qosbatch.core.errors import UserError
from qosbatch.core.units import duration_ms

if TYPE_CHECKING:
    from qosbatch.planner.checks import ModelCheck
    from qosbatch.planner.plan import Plan, PlannerSettings

console = Console()

_NODES_HELP = "Node catalogue YAML (or 'default': the shipped cloud instance list)."
_BATCH_HELP = (
    "Batch caps to try, e.g. 1,2,4,8,16,32: slo takes the largest that fits a node's "
    "memory; dynamic tries each as its max batch (no delay)."
)
_POLICY_HELP = (
    "slo: our deadline-aware policy, each replica's capacity simulated; dynamic: the "
    "peers' max-batch rule without delay, from the queueing model."
)
_SEARCHING = "simulating slo replicas for their capacity (about a second per core count)..."
PolicyChoice = Annotated[str, typer.Option("--policy", help=_POLICY_HELP)]
ServeVia = Annotated[
    str,
    typer.Option(
        "--serve-via",
        help="The path clients reach the plan through: local (qosbatch serve), ray "
        "(qosbatch deploy) or none. Each SLO is planned less its measured per-request "
        "overhead (docs/planner.md), and predicted latencies include it.",
    ),
]
PathOverhead = Annotated[
    str | None,
    typer.Option(
        "--path-overhead",
        help="Your own measure of the path's overhead, MEAN_MS,P99_MS (default: ours).",
    ),
]


def _planner_settings(
    cli: dict[str, Any],
    policy: str,
    frontend: str | None,
    serve_via: str,
    path_overhead: str | None,
    seed: int = 0,
    **file_side: Any,
) -> PlannerSettings:
    """PlannerSettings from the command line (``cli``: ``_settings``'s, then these flags),
    over the workload file's (``file_side``)."""
    from qosbatch.planner.paths import serving_path
    from qosbatch.planner.plan import PLANNED_POLICIES, PlannerSettings
    from qosbatch.planner.slo_options import SloSearch
    from qosbatch.sim.frontend import parse_frontend

    if policy not in PLANNED_POLICIES:
        raise UserError(f"--policy must be {' or '.join(PLANNED_POLICIES)}, got {policy!r}")
    front = parse_frontend(frontend) if frontend is not None else None
    if front is not None and policy != "slo":
        raise UserError("--frontend is for --policy slo (its capacity is simulated)")
    return PlannerSettings(
        **{**file_side, **cli},
        policy=policy,
        search=SloSearch(seed=seed, frontend=front),
        path=serving_path(serve_via, path_overhead),
    )


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
    policy: PolicyChoice = "slo",
    frontend: FrontendOption = None,
    serve_via: ServeVia = "local",
    path_overhead: PathOverhead = None,
) -> None:
    """One line: the batching setting, cores, replicas and node that meet the SLO cheapest.

    Without --nodes the options are the node the profile was taken on, at its
    profiled core counts; with a catalogue, every node type in it (latency on a
    node never profiled is predicted from flops*p/c and marked so).
    """
    from qosbatch.core.profile import load_profile
    from qosbatch.planner.files import load_catalogue
    from qosbatch.planner.options import Demand
    from qosbatch.planner.recommend import profiled_catalogue
    from qosbatch.planner.recommend import recommend as cheapest
    from qosbatch.planner.service import ModelService
    from qosbatch.planner.targets import Target

    if rate <= 0:
        raise UserError(f"--rate must be > 0 requests per second, got {rate:g}")
    if price is not None and price < 0:
        raise UserError(f"--price must be >= 0, got {price:g}")
    target = Target(duration_ms(slo, "--slo") / 1e3, percentile)
    settings = _planner_settings(
        _settings(max_batch, cores, headroom), policy, frontend, serve_via, path_overhead
    )
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
    with _planning(settings):
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
    policy: PolicyChoice = "slo",
    frontend: FrontendOption = None,
    serve_via: ServeVia = "local",
    path_overhead: PathOverhead = None,
) -> None:
    """The cheapest nodes and replicas meeting every model's SLO (integer program, HiGHS).

    Exit status 1 when --verify finds a model missing its target in simulation.
    """
    from qosbatch.planner.files import load_catalogue, load_workload, write_plan
    from qosbatch.planner.plan import make_plan

    catalogue = load_catalogue(nodes)
    cli = _settings(max_batch, cores, headroom)  # checked before any profile is read
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
    settings = _planner_settings(
        cli,
        policy,
        frontend,
        serve_via,
        path_overhead,
        seed,
        **file_side,
        time_limit_s=time_limit,
    )
    with _planning(settings):
        result = make_plan(loaded.demands, loaded.services, catalogue, settings)
    write_plan(result, output)
    _print_plan(result)
    typer.echo(f"wrote {output}")
    if verify:
        from qosbatch.planner.verify import verify_plan

        if result.path.p99_s > 0:
            typer.echo("--verify: each model against its server-side budget (SLO less the path)")
        with console.status("simulating the plan..."):
            checks = verify_plan(result, loaded.services, requests, seed, settings.search.frontend)
        for check in checks:
            typer.echo(check.line())
        typer.echo(_simulated_cost(result, checks))
        if not all(c.met for c in checks):
            raise typer.Exit(1)


def _planning(settings: PlannerSettings) -> Any:
    """A spinner while the planner works; slo plans simulate, and take seconds."""
    return console.status(_SEARCHING if settings.policy == "slo" else "planning...")


def _simulated_cost(result: Plan, checks: list[ModelCheck]) -> str:
    """The plan's cost per million requests that the simulation answered on time."""
    from qosbatch.core.pricing import per_million

    rates = {d.model: d.rate for d in result.demands}
    on_time = sum(rates[c.model] * c.attainment for c in checks)
    cost = per_million(result.cost_per_hour, on_time)
    return f"simulated: {result.currency} {cost:.4g} per million on-time requests"


def _print_plan(result: Plan) -> None:
    table = Table(
        title=f"plan: {result.currency} {result.cost_per_hour:.4g} per hour, at most "
        f"{result.cost_per_million_on_time:.4g} per million on-time requests"
    )
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
                f"{d.target.label} {result.client_ms(d, r.predicted_latency_s):.1f} ms"
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
    p = result.path
    if p.p99_s > 0:
        typer.echo(
            f"served via {p.name}: each SLO planned less its overhead (mean {p.mean_s * 1e3:g} "
            f"ms, p99 {p.p99_s * 1e3:g} ms); predicted latencies include it"
        )
