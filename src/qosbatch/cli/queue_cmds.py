"""``qosbatch queue``: the M/G(a,b)/1/N model's predictions for a profiled model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from qosbatch.cli import app
from qosbatch.core.errors import UserError
from qosbatch.core.profile import Profile, load_profile
from qosbatch.core.units import duration_ms
from qosbatch.latency.memory import omega_per_byte, parse_memory
from qosbatch.latency.table import LatencyTable
from qosbatch.queueing import FAMILIES, QueueResult, ServiceTime, choose_ab, solve, solve_all

console = Console()


def service_from_profile(
    profile: Profile, cores: int, max_batch: int, family: str
) -> tuple[ServiceTime, LatencyTable]:
    """s(k) at ``cores`` from the profile's best latency model, with its measured spread.

    The table comes back too, so that the simulator runs on exactly the same numbers.
    """
    if family not in FAMILIES:
        raise UserError(f"--service must be one of {', '.join(FAMILIES)}, got {family!r}")
    table = LatencyTable.from_profile(profile, max_cores=cores, max_batch=max_batch)
    service = ServiceTime(
        lambda k: table.s(k, cores),
        family,  # type: ignore[arg-type]
        lambda k: table.spread(k, cores),
    )
    return service, table


def _simulated_points(
    table: LatencyTable, cores: int, a: int, b: int, capacity: int, family: str
) -> list[tuple[float, float]]:
    """(rate, simulated mean latency) beside the model's curve; the simulator draws
    deterministic or lognormal times only, so other families get no points."""
    from qosbatch.sim.bulk_queue import simulate_bulk_queue

    if family not in ("deterministic", "lognormal"):
        return []
    saturation = b / table.s(b, cores)
    points = []
    for load in (0.1, 0.3, 0.5, 0.7, 0.85, 0.95, 1.1):
        run = simulate_bulk_queue(
            table, cores, a, b, capacity, load * saturation, 20_000, 0, family == "deterministic"
        )
        points.append((load * saturation, run.mean_latency_s))
    return points


def _row(table: Table, res: QueueResult) -> None:
    table.add_row(
        f"{res.a}",
        f"{res.b}",
        f"{res.mean_latency * 1e3:.2f}",
        f"{res.mean_wait * 1e3:.2f}",
        f"{res.blocking_probability:.2e}",
        f"{res.throughput:.2f}",
        f"{res.mean_batch_size:.2f}",
        f"{res.utilization:.1%}",
    )


def _table(title: str) -> Table:
    table = Table(title=title)
    for col in ("a", "b", "latency ms", "wait ms", "blocking", "req/s", "batch", "busy"):
        table.add_column(col, justify="right")
    return table


@app.command()
def queue(
    profile_path: Annotated[Path, typer.Option("--profile", help="A profile JSON.")],
    rate: Annotated[float, typer.Option(help="Poisson arrival rate, requests per second.")],
    a: Annotated[int, typer.Option("--a", help="Smallest batch the server starts.")] = 1,
    b: Annotated[int, typer.Option("--b", help="Largest batch.")] = 16,
    capacity: Annotated[int, typer.Option(help="N: most requests waiting.")] = 256,
    cores: Annotated[
        int | None, typer.Option(help="Cores per replica (default: most profiled).")
    ] = None,
    service: Annotated[
        str, typer.Option(help="Service-time family: " + ", ".join(FAMILIES))
    ] = "lognormal",
    optimize: Annotated[
        bool, typer.Option("--optimize", help="Search every 1 <= a <= b <= --b.")
    ] = False,
    slo: Annotated[
        str | None, typer.Option(help="Mean-latency bound for --optimize, e.g. 100ms.")
    ] = None,
    eps: Annotated[
        float, typer.Option(help="Largest blocking probability --optimize accepts.")
    ] = 1e-3,
    plot: Annotated[Path | None, typer.Option(help="PNG: predicted latency against rate.")] = None,
    omega: Annotated[
        float,
        typer.Option(help="BatOpt's weight of memory for --optimize: ms of latency per MB."),
    ] = 0.0,
    memory: Annotated[
        str | None,
        typer.Option(help="m(k) for --omega: 'profile' (its peak memory) or MB per sample."),
    ] = None,
    frontier: Annotated[
        Path | None,
        typer.Option(help="PNG: the latency-memory frontier over (a, b) (needs --memory)."),
    ] = None,
) -> None:
    """Predict latency, blocking and throughput of dynamic batching (M/G(a,b)/1/N).

    With --optimize --omega W --memory M it minimises mean latency + W x mean memory
    (BatOpt's objective): on pay-per-use nodes memory is billed too.
    """
    if rate <= 0:
        raise UserError(f"--rate must be > 0 requests per second, got {rate}")
    if (omega or frontier) and memory is None:
        raise UserError("--omega and --frontier weigh memory: give --memory profile|MB-per-sample")
    if (omega or frontier) and not optimize:
        raise UserError("--omega and --frontier choose among (a, b): add --optimize")
    weight = omega_per_byte(omega)
    prof = load_profile(profile_path)
    pool = cores if cores is not None else max(prof.core_counts)
    if pool < 1:
        raise UserError(f"--cores must be >= 1, got {pool}")
    mem = parse_memory(memory, prof, pool) if memory is not None else None
    svc, latency = service_from_profile(prof, pool, b, service)
    where = f"{prof.model.name} on {pool} core{'s' * (pool > 1)}, {service} service"
    try:
        if optimize:
            bound_ms = duration_ms(slo, "--slo") if slo else None
            bound_s = bound_ms / 1e3 if bound_ms else None
            solved = list(solve_all(rate, svc, capacity, b, mem))  # kept for --frontier
            choice = choose_ab(solved, bound_s, eps, weight)
            res = choice.result
            verdict = "best (a, b)" if choice.feasible else "no (a, b) meets the bounds; closest"
            table = _table(
                f"{verdict} of {choice.considered} at {rate:g} req/s, N={capacity}: {where}"
            )
        else:
            res = solve(rate, a, b, capacity, svc, mem)
            table = _table(f"M/G(a,b)/1/N at {rate:g} req/s, N={capacity}: {where}")
    except ValueError as exc:
        raise UserError(str(exc)) from None
    _row(table, res)
    console.print(table)
    if res.mean_memory is not None:
        console.print(f"mean memory of the batch in service: {res.mean_memory / 1e6:.1f} MB")
    if frontier is not None:
        from qosbatch.viz.queue_plot import plot_latency_memory_frontier

        allowed = [r for r in solved if r.blocking_probability <= eps]
        out = plot_latency_memory_frontier(allowed, res, frontier, where)
        console.print(f"wrote {out}")
    if optimize and slo and not choice.feasible:
        raise typer.Exit(1)
    if plot is not None:
        from qosbatch.viz.queue_plot import plot_latency_vs_rate

        with console.status("simulating the same queue for the plot..."):
            sim = _simulated_points(latency, pool, res.a, res.b, capacity, service)
        path = plot_latency_vs_rate(svc, res.a, res.b, capacity, rate, plot, where, sim)
        console.print(f"wrote {path}")
