"""Commands of the simulation layer: ``simulate`` and ``workload generate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from qosbatch.cli import app
from qosbatch.core.errors import UserError
from qosbatch.core.pricing import Price, parse_price
from qosbatch.core.profile import load_profile

console = Console()
err_console = Console(stderr=True)

workload_app = typer.Typer(
    help="Generate workloads (traces) from spec strings.", no_args_is_help=True
)
app.add_typer(workload_app, name="workload")

DEFAULT_POLICIES = "slo,dynamic,aimd,single"

# The options with long help, named once (the command's signature stays readable).
PolicyOption = Annotated[
    list[str],
    typer.Option(
        help="Policy specs, comma-separated or repeated, e.g. slo,dynamic:max_batch_size=16; "
        "your own as module:Class[:knob=value,...] (checked before use)."
    ),
]
TraceOption = Annotated[
    Path | None,
    typer.Option(
        help="Trace to replay: CSV (time_s,model,slo_ms[,priority]) or the JSONL records "
        "of `qosbatch serve --records`."
    ),
]
ShareCoresOption = Annotated[
    bool,
    typer.Option(
        help="All models draw from one pool of --cores cores, batch by batch (as serve "
        "--share-cores); default: each model owns --cores."
    ),
]
PriceOption = Annotated[
    str | None,
    typer.Option(
        help="Price, to show $ per million on-time requests: 0.04/core-hour, "
        "0.0000112/core-second (pay-per-use: billed busy core-seconds) or 0.085/node-hour "
        "(the whole span), or a node type of the default catalogue (c6i.large, fargate)."
    ),
]
FrontendOption = Annotated[
    str | None,
    typer.Option(
        help="The server's HTTP front end as CPU work on the same cores, e.g. "
        "request=0.6ms,result=0.4ms: CPU per request that arrives (a shed one "
        "included) and more per request answered with a result. Its share of the "
        "cores over the last window (window=1s) slows every batch, up to "
        "(cores+1)/cores, as overload does live. "
        "Measure: the server process's CPU seconds (not its workers') per request, "
        "with every request shed (request) and every one served (request + result). "
        "Default: free."
    ),
]


@app.command()
def simulate(
    profile: Annotated[
        list[Path],
        typer.Option("--profile", help="A model's profile JSON; repeat for more models."),
    ],
    policy: PolicyOption = [DEFAULT_POLICIES],  # noqa: B006 (typer reads it, never mutates it)
    trace: TraceOption = None,
    workload: Annotated[
        str | None,
        typer.Option(help="Workload spec, e.g. poisson:rate=100,duration_s=60,slo_ms=100."),
    ] = None,
    cores: Annotated[
        int | None, typer.Option(help="Cores per model (default: most profiled).")
    ] = None,
    workers: Annotated[
        int, typer.Option(help="Workers (replicas) per model sharing its cores.")
    ] = 1,
    share_cores: ShareCoresOption = False,
    seed: Annotated[int, typer.Option(help="Seed of the workload and the service times.")] = 0,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print a JSON list, one object per policy.")
    ] = False,
    plot: Annotated[
        Path | None, typer.Option(help="PNG of attainment against load per policy.")
    ] = None,
    sweep: Annotated[
        bool, typer.Option(help="Find each policy's capacity at --target attainment.")
    ] = False,
    tune: Annotated[
        str | None, typer.Option(help="Grid-tune this baseline's knobs for capacity (dynamic).")
    ] = None,
    target: Annotated[float, typer.Option(help="Attainment the capacity must keep.")] = 0.99,
    deterministic: Annotated[bool, typer.Option(help="No service-time spread.")] = False,
    latency_model: Annotated[str, typer.Option(help="auto, amdahl or density.")] = "auto",
    max_batch: Annotated[int, typer.Option(help="Largest batch any policy may form.")] = 128,
    frontend: FrontendOption = None,
    price: PriceOption = None,
) -> None:
    """Simulate policies on a workload: one row per policy (or its capacity with --sweep)."""
    from qosbatch.policies.registry import parse_policy_list
    from qosbatch.sim.check import checked
    from qosbatch.sim.experiment import Experiment, deployments_from_profiles
    from qosbatch.sim.frontend import parse_frontend
    from qosbatch.workloads import parse_workload, read_trace

    _check_flags(trace is not None, workload is not None, target, max_batch, tune)
    cost = price_of(price) if price is not None else None
    front = parse_frontend(frontend) if frontend is not None else None
    specs = [checked(spec) for spec in parse_policy_list(",".join(policy))]
    profiles = [load_profile(p) for p in profile]
    deps = deployments_from_profiles(profiles, cores, workers, max_batch, latency_model)
    models = [d.model for d in deps]
    node = max(d.cores for d in deps) if share_cores else None
    if trace is not None:
        exp = Experiment.from_trace(
            read_trace(trace, known_models=models),
            deps,
            seed=seed,
            deterministic=deterministic,
            node_cores=node,
            frontend=front,
        )
    else:
        spec = parse_workload(workload or "")
        unknown = [m for m in spec.models if m not in models]
        if unknown:
            raise UserError(
                f"workload model {unknown[0]!r} has no profile (loaded: {', '.join(models)})"
            )
        exp = Experiment.from_spec(
            spec, deps, seed=seed, deterministic=deterministic, node_cores=node, frontend=front
        )
    if tune:
        specs = _tune(exp, specs, target, json_out)
    rows = _sweep(exp, specs, target, json_out) if sweep else _compare(exp, specs, json_out, cost)
    if plot is not None:
        _plot(exp, specs, rows, plot, target, sweep, json_out)


def _check_flags(
    has_trace: bool, has_workload: bool, target: float, max_batch: int, tune: str | None
) -> None:
    if has_trace == has_workload:
        raise UserError("give exactly one of --trace FILE or --workload SPEC")
    if not 0 < target <= 1:
        raise UserError(f"--target must be in (0, 1], got {target}")
    if max_batch < 1:
        raise UserError(f"--max-batch must be >= 1, got {max_batch}")
    if tune is not None and tune != "dynamic":
        raise UserError(f"--tune supports dynamic only, got {tune!r}")


def _tune(exp: Any, specs: list[Any], target: float, quiet: bool) -> list[Any]:
    from qosbatch.policies.registry import PolicySpec

    index = next((i for i, s in enumerate(specs) if s.name == "dynamic"), None)
    base = specs[index] if index is not None else PolicySpec("dynamic")
    with err_console.status("tuning dynamic (max_batch_size x max_queue_delay_ms)..."):
        tuned = exp.tune(base, target)
    err_console.print(
        f"tuned dynamic: {tuned.spec.label} (capacity {tuned.best.rate:.1f} req/s at "
        f"{100 * target:g}% attainment, best of {len(tuned.tried)} settings)"
    )
    if index is None:
        return [*specs, tuned.spec]
    return [*specs[:index], tuned.spec, *specs[index + 1 :]]


_COLUMNS = (
    ("requests", "requests", "{:d}"),
    ("on_time", "on time", "{:d}"),
    ("late", "late", "{:d}"),
    ("rejected", "rejected", "{:d}"),
    ("attainment", "attain %", "{:.2%}"),
    ("goodput", "goodput/s", "{:.1f}"),
    ("throughput", "tput/s", "{:.1f}"),
    ("p50_ms", "p50 ms", "{:.1f}"),
    ("p95_ms", "p95 ms", "{:.1f}"),
    ("p99_ms", "p99 ms", "{:.1f}"),
    ("mean_batch", "batch", "{:.2f}"),
    ("core_seconds", "core-s", "{:.1f}"),
    ("utility", "utility", "{:.1f}"),
)


def _cell(fmt: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    return fmt.format(value).replace("%", "") if fmt.endswith("%}") else fmt.format(value)


def _compare(
    exp: Any, specs: list[Any], json_out: bool, price: Price | None = None
) -> list[dict[str, Any]]:
    rows = []
    for spec, m in exp.compare(specs):
        rows.append({"policy": spec.label, **m.to_json(), **priced(price, m)})
    if json_out:
        typer.echo(json.dumps(rows, indent=1))
        return rows
    print_metrics(rows, f"{len(rows)} policies, mean arrival rate {exp.base_rate:.1f} req/s")
    return rows


def price_of(text: str) -> Price:
    """--price: AMOUNT/UNIT, or the name of a node type in the shipped catalogue, billed as
    the catalogue bills it (a rented node per node-hour, a pay-per-use one per core)."""
    if "/" in text:
        return parse_price(text)
    from qosbatch.planner.files import load_catalogue

    catalogue = load_catalogue()
    names = [t.name for t in catalogue.node_types]
    if text not in names:
        raise UserError(
            f"--price takes AMOUNT/UNIT (e.g. 0.04/core-hour) or a node type of the default "
            f"catalogue ({', '.join(names)}), got {text!r}"
        )
    t = catalogue.by_name(text)
    if t.price_per_core_hour is not None:
        return parse_price(f"{t.price_per_core_hour:.10g}/core-hour")
    return parse_price(f"{t.price_per_hour:.10g}/node-hour")


def priced(price: Price | None, m: Any, nodes: int = 1) -> dict[str, Any]:
    """The cost column of a run, when a price was given."""
    if price is None:
        return {}
    per_m = price.per_million_on_time(m.on_time, m.core_seconds, m.span_s, nodes)
    return {COST_KEY: per_m, "price": price.text}


COST_KEY = "usd_per_million_on_time"


def print_metrics(rows: list[dict[str, Any]], title: str) -> None:
    """One row per run, the columns of ``qosbatch.metrics`` (simulated and live alike),
    and the cost per million on-time requests when the rows were priced."""
    columns = list(_COLUMNS)
    if rows and COST_KEY in rows[0]:
        columns.append((COST_KEY, "$/M on time", "{:.2f}"))
    table = Table(title=title)
    table.add_column("policy")
    for _, head, _ in columns:
        table.add_column(head, justify="right")
    for row in rows:
        table.add_row(row["policy"], *(_cell(fmt, row[key]) for key, _, fmt in columns))
    _print_table(table)


def _print_table(table: Table) -> None:
    """Print at the table's natural width when the console is narrower.

    Rich fits a table to the console by cutting cells to "1…"; with 14 columns that
    made every number unreadable at 80 columns, which is also the width it assumes
    when the output goes to a file or a pipe. A too-wide line wraps; a cut number is lost.
    """
    from rich.measure import Measurement

    natural = Measurement.get(console, console.options.update_width(10_000), table).maximum
    if natural <= console.width:
        console.print(table)
        return
    wide = Console(file=console.file, width=natural, force_terminal=console.is_terminal)
    wide.print(table)


def _sweep(exp: Any, specs: list[Any], target: float, json_out: bool) -> list[dict[str, Any]]:
    rows = []
    for spec in specs:
        with err_console.status(f"finding the capacity of {spec.label}..."):
            cap = exp.capacity(spec, target)
        metrics = cap.metrics.to_json() if cap.metrics else {}
        rows.append(
            {
                "policy": spec.label,
                "capacity_rps": cap.rate,
                "capacity_factor": cap.factor,
                "target": target,
                **metrics,
                "curve": [[r, a] for r, a in cap.points],
            }
        )
    if json_out:
        typer.echo(json.dumps(rows, indent=1))
        return rows
    table = Table(title=f"capacity at {100 * target:g}% attainment (workload x load factor)")
    for col in (
        "policy",
        "capacity req/s",
        "load factor",
        "attain %",
        "p99 ms",
        "batch",
        "rejected",
    ):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for row in rows:
        table.add_row(
            row["policy"],
            f"{row['capacity_rps']:.1f}",
            f"{row['capacity_factor']:.3f}",
            _cell("{:.2%}", row.get("attainment")),
            _cell("{:.1f}", row.get("p99_ms")),
            _cell("{:.2f}", row.get("mean_batch")),
            _cell("{:d}", row.get("rejected")),
        )
    _print_table(table)
    first = rows[0]
    for row in rows[1:]:
        if row["capacity_rps"] > 0:
            console.print(
                f"{first['policy']} / {row['policy']}: "
                f"{first['capacity_rps'] / row['capacity_rps']:.2f}x"
            )
    return rows


def _plot(
    exp: Any,
    specs: list[Any],
    rows: list[dict[str, Any]],
    path: Path,
    target: float,
    sweep: bool,
    quiet: bool,
) -> None:
    from qosbatch.sim.experiment import plot_factors
    from qosbatch.viz.sim_plot import plot_attainment

    if sweep:
        caps = [r["capacity_factor"] for r in rows if r["capacity_factor"] > 0] or [1.0]
        factors = plot_factors(0.5 * min(caps), 1.6 * max(caps))
        marks = {r["policy"]: r["capacity_rps"] for r in rows}
    else:
        factors = plot_factors(0.25, 2.0)
        marks = None
    with err_console.status("tracing attainment against load for the plot..."):
        curves = {spec.label: exp.load_curve(spec, factors) for spec in specs}
    out = plot_attainment(curves, path, target, marks, title="SLO attainment against load")
    (err_console if quiet else console).print(f"wrote {out}")


@workload_app.command("generate")
def generate(
    spec: Annotated[
        str, typer.Argument(help="Workload spec, e.g. poisson:rate=100,duration_s=60,slo_ms=100.")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Trace CSV to write.")],
    seed: Annotated[int, typer.Option(help="Seed of the arrivals and budgets.")] = 0,
    model: Annotated[str, typer.Option(help="Model name when the spec names none.")] = "model",
) -> None:
    """Draw a trace from a workload spec and write it as CSV (time_s,model,slo_ms)."""
    from qosbatch.workloads import parse_workload, write_trace

    trace = parse_workload(spec).generate(np.random.default_rng(seed), model)
    write_trace(trace, output)
    rate = len(trace) / trace.duration_s if trace.duration_s > 0 else float("nan")
    console.print(
        f"wrote {len(trace)} requests ({rate:.1f} req/s over {trace.duration_s:.1f} s, "
        f"slo {np.median(trace.slo_ms):.1f} ms median) to {output}"
    )
