"""Commands of offline batch jobs: ``job plan`` (what to rent) and ``job run`` (do it here)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from qosbatch.cli import app
from qosbatch.core.errors import UserError

if TYPE_CHECKING:
    from qosbatch.core.profile import Profile
    from qosbatch.jobs.inputs import JobInput
    from qosbatch.jobs.job import LocalChoice
    from qosbatch.jobs.layout import JobOutput
    from qosbatch.jobs.plan import JobPlan
    from qosbatch.models.loading import ModelRef
    from qosbatch.planner.service import ModelService

console = Console()
err_console = Console(stderr=True)

job_app = typer.Typer(
    help="Offline batch inference: N samples by a deadline at the least pay-per-use cost.",
    no_args_is_help=True,
)
app.add_typer(job_app, name="job")

InputArg = Annotated[
    Path,
    typer.Argument(
        metavar="INPUT",
        help="A .npy file (N x sample shape, memory-mapped) or a folder of .npy/.npz files.",
    ),
]
ModelOption = Annotated[
    str,
    typer.Option(
        "--model", "-m", help="A zoo name, a .onnx/.pt2/TorchScript file or pkg.mod:factory."
    ),
]
ProfileOption = Annotated[
    Path | None,
    typer.Option(
        "--profile", help="The model's profile (qosbatch profile): its latency drives the plan."
    ),
]
MarginOption = Annotated[
    float, typer.Option(help="Constant safety margin on compute time, beside the spread's.")
]


def _inputs(
    input_path: Path, model: str, profile_path: Path | None
) -> tuple[JobInput, ModelRef, Profile | None]:
    """The input, the model (shape checked against it) and the profile (of that model)."""
    from qosbatch.core.profile import load_profile
    from qosbatch.jobs.inputs import check_shape, open_input

    job_input = open_input(input_path)
    if job_input.n == 0:
        raise UserError(f"input {input_path} holds no samples")
    ref = _model(model, job_input.sample_shape)
    check_shape(job_input, ref.input_shape, ref.name)
    profile = load_profile(profile_path) if profile_path is not None else None
    if profile is not None and profile.model.name != ref.name:
        raise UserError(f"profile {profile_path} is of model {profile.model.name}, not {ref.name}")
    return job_input, ref, profile


def _model(spec: str, sample_shape: tuple[int, ...]) -> ModelRef:
    """The model; one that declares no input shape (a factory, TorchScript) takes the input's."""
    from qosbatch.models.loading import onnx_sample_shape, resolve_model
    from qosbatch.models.zoo import ZOO

    if spec in ZOO:
        return resolve_model(spec)
    if spec.lower().endswith(".onnx") and Path(spec).is_file():
        return resolve_model(spec, onnx_sample_shape(str(Path(spec).resolve())) or sample_shape)
    return resolve_model(spec, sample_shape)


@job_app.command("plan")
def job_plan(
    input_path: InputArg,
    model: ModelOption,
    deadline: Annotated[str, typer.Option(help="Finish within this long: 2h, 90m, 1h30m, 45s.")],
    profile_path: ProfileOption = None,
    nodes: Annotated[
        str, typer.Option(help="Node catalogue YAML, or 'default' (shipped cloud instances).")
    ] = "default",
    budget: Annotated[
        str | None, typer.Option(help="Most the job may cost, e.g. 5usd (with its margin).")
    ] = None,
    max_nodes: Annotated[
        int, typer.Option(min=1, help="Most nodes of one type (where the catalogue sets none).")
    ] = 64,
    margin: MarginOption = 0.05,
) -> None:
    """The cheapest node type, node count, cores, batch size and workers that meet the deadline.

    Latency comes from the profile on the node it was taken on and is carried to
    every other node type by flops*p/c. A deadline or budget nothing meets exits 2,
    saying by how much it is missed.
    """
    from qosbatch.jobs.plan import JobSettings, plan_job
    from qosbatch.jobs.units import parse_duration_s, parse_money
    from qosbatch.planner.files import load_catalogue
    from qosbatch.planner.service import ModelService

    deadline_s = parse_duration_s(deadline)
    if margin < 0:
        raise UserError(f"--margin must be >= 0, got {margin:g}")
    if profile_path is None:
        raise UserError(
            f"job plan needs the model's profile: run `qosbatch profile {model} -o "
            f"{Path(model).stem}.json` and pass --profile {Path(model).stem}.json"
        )
    job_input, ref, profile = _inputs(input_path, model, profile_path)
    assert profile is not None
    catalogue = load_catalogue(nodes)
    money = parse_money(budget, catalogue.currency) if budget is not None else None
    settings = JobSettings(margin=margin, max_nodes=max_nodes)
    largest = max(m.batch for m in profile.measurements)
    service = ModelService.from_profile(
        profile, max_cores=max(t.cores for t in catalogue.node_types), max_batch=largest
    )
    result = plan_job(job_input.n, service, catalogue, deadline_s, money, settings)
    _print_plan(result, ref.name, catalogue.currency)


def _print_plan(result: JobPlan, model: str, currency: str) -> None:
    from qosbatch.jobs.units import format_duration, format_money

    best = result.best
    source = "predicted via flops*p/c" if best.predicted else "as profiled"
    console.print(
        f"[bold]{model}[/], {result.samples:,} samples within "
        f"{format_duration(result.deadline_s or 0)}: {best.setup}"
    )
    console.print(
        f"  predicted {format_duration(best.duration_s)} "
        f"({format_duration(best.guarded_s)} with the safety margin), "
        f"{best.throughput:,.1f} samples/s, cost {format_money(best.cost, currency)} "
        f"({format_money(best.guarded_cost, currency)} with margin); latency {source}"
    )
    if result.alternatives:
        table = Table(title="next best (cheapest per node type)")
        for col in ("node type", "nodes", "workers x cores", "batch", "duration", "cost"):
            table.add_column(col, justify="left" if col == "node type" else "right")
        for c in result.alternatives:
            table.add_row(
                c.node_type.name,
                str(c.nodes),
                f"{c.workers_per_node} x {c.cores}",
                str(c.batch),
                format_duration(c.duration_s),
                format_money(c.cost, currency),
            )
        console.print(table)


@job_app.command("run")
def job_run(
    input_path: InputArg,
    model: ModelOption,
    output: Annotated[Path, typer.Option("-o", "--output", help="Output folder (resumable).")],
    deadline: Annotated[
        str | None, typer.Option(help="Finish within this long of the start: 2h, 90m, 45s.")
    ] = None,
    profile_path: ProfileOption = None,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Samples per batch (default: planned).")
    ] = None,
    cores: Annotated[
        int | None, typer.Option(min=1, help="Intra-op threads (default: planned).")
    ] = None,
    backend: Annotated[str, typer.Option(help="torch or onnx (ONNX Runtime).")] = "torch",
    price: Annotated[
        float | None,
        typer.Option(help="Price per core-hour for the cost (default: the catalogue's cheapest)."),
    ] = None,
    part_size: Annotated[
        int | None, typer.Option(min=1, help="Samples per output part (default: ~10 s of work).")
    ] = None,
    margin: MarginOption = 0.05,
    engine: Annotated[
        str, typer.Option(help="local (this process) or ray (Ray Data map_batches, actor pool).")
    ] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address for --engine ray (default: local Ray).")
    ] = None,
    actors: Annotated[
        int | None,
        typer.Option(min=1, help="--engine ray: actors (default: the cluster's CPUs / cores)."),
    ] = None,
) -> None:
    """Run the job here, resumably: rerun the same command after a crash to go on.

    With --profile, batch size and cores are planned (fewest core-seconds that meet
    --deadline, else the fastest) and re-planned when measured batch times drift
    from the profile's by more than 20%. OUT/outputs.npy holds the N outputs in input
    order at the end, OUT/job.json the summary.
    """
    from qosbatch.jobs.job import LOCAL_STARTUP_S, choose_local, identity
    from qosbatch.jobs.job import part_size as default_part_size
    from qosbatch.jobs.layout import open_output
    from qosbatch.jobs.plan import JobSettings, predict_one
    from qosbatch.jobs.units import parse_duration_s
    from qosbatch.models.backends import check_backend

    started = time.perf_counter()
    check_backend(backend, "cpu")
    if engine not in ("local", "ray"):
        raise UserError(f"--engine must be local or ray, got {engine!r}")
    if engine == "local" and (address is not None or actors is not None):
        raise UserError("--address and --actors need --engine ray")
    deadline_s = parse_duration_s(deadline) if deadline is not None else None
    job_input, ref, profile = _inputs(input_path, model, profile_path)
    settings = JobSettings(margin=margin, startup_s=LOCAL_STARTUP_S)
    choice, service = choose_local(job_input.n, profile, batch_size, cores, deadline_s, settings)
    batch_s = choice.config.batch_s if choice.config else None
    size = part_size or default_part_size(choice.batch, batch_s, job_input)
    out = open_output(output, identity(ref, backend, job_input), size)
    if out.complete:
        console.print(f"{output}: the job is already complete ({out.n:,} samples)")
        _print_summary(out.summary() or {}, output)
        return
    left = out.n - out.samples_done()
    predicted = None
    if service is not None:
        predicted = predict_one(left, service, choice.batch, choice.cores, settings).duration_s
    _announce(choice, deadline_s, predicted)
    ray = (str(input_path.resolve()), address, actors) if engine == "ray" else None
    summary = _run(
        job_input, ref, backend, out, choice, service, deadline_s, predicted, price, started, ray
    )
    _print_summary(summary, output)


def _announce(choice: LocalChoice, deadline_s: float | None, predicted: float | None) -> None:
    from qosbatch.jobs.units import format_duration

    how = "planned from the profile" if choice.adapt else "given" if choice.config else "default"
    line = f"batch {choice.batch} on {choice.cores} core{'s' * (choice.cores > 1)} ({how})"
    if predicted is not None:
        line += f"; predicted {format_duration(predicted)}"
    else:
        line += "; no profile: nothing predicted, no drift check"
    if deadline_s is not None and choice.config is not None and not choice.meets_deadline:
        line += f"; [red]cannot meet the {format_duration(deadline_s)} deadline[/]"
    err_console.print(line)


def _run(
    job_input: JobInput,
    ref: ModelRef,
    backend_name: str,
    out: JobOutput,
    choice: LocalChoice,
    service: ModelService | None,
    deadline_s: float | None,
    predicted: float | None,
    price: float | None,
    started: float,
    ray: tuple[str, str | None, int | None] | None,
) -> dict[str, Any]:
    """Run locally, or on Ray Data when ``ray`` is (input path, address, actors)."""
    from qosbatch.jobs.job import available_cores
    from qosbatch.jobs.progress import RichReporter
    from qosbatch.jobs.runner import RunSettings, run_local
    from qosbatch.models.backends import make_backend
    from qosbatch.planner.files import load_catalogue

    catalogue = load_catalogue()
    if price is None:
        price = min(
            t.node_price_per_hour / t.cores
            for t in catalogue.node_types
            if t.node_price_per_hour is not None
        )
    elif price < 0:
        raise UserError(f"--price must be >= 0, got {price:g}")
    settings = RunSettings(
        batch=choice.batch,
        cores=choice.cores,
        max_cores=available_cores(),
        deadline_s=deadline_s,
        adapt=choice.adapt,
        predicted_s=predicted,
        price_per_core_hour=price,
        currency=catalogue.currency,
        meta={
            "engine": "local" if ray is None else "ray",
            "model": ref.name,
            "backend": backend_name,
            "input": str(job_input.chunks[0].path),
        },
    )
    reporter = RichReporter(err_console, ref.name)
    try:
        if ray is not None:
            from qosbatch.jobs.ray_runner import run_ray

            path, address, actors = ray
            return run_ray(
                path, ref, backend_name, out, settings, actors, reporter, started, address
            )
        backend = make_backend(ref, backend_name, threads=choice.cores)
        return run_local(job_input, backend, out, settings, service, reporter, started)
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted: {len(out.done)} of {out.part_count} parts are kept in {out.root}; "
            "rerun the same command to resume"
        )
        raise typer.Exit(130) from None


def _print_summary(summary: dict[str, Any], output: Path) -> None:
    from qosbatch.jobs.units import format_duration, format_money

    if not summary:
        return
    wall = summary["wall_s"]
    line = (
        f"{summary['samples']:,} samples ({summary['samples_this_run']:,} this run) in "
        f"{format_duration(wall)}, {summary['throughput']:,.1f} samples/s, "
        f"{summary['core_seconds']:,.0f} core-seconds, "
        f"cost {format_money(summary['cost'], summary['currency'])}"
    )
    console.print(line)
    if summary.get("predicted_s") is not None:
        console.print(
            f"predicted {format_duration(summary['predicted_s'])}, actual "
            f"{format_duration(wall)} (predicted/actual {summary['predicted_over_actual']:.3f})"
        )
    if summary.get("deadline_s") is not None:
        met = "met" if summary["met_deadline"] else "[red]missed[/]"
        console.print(f"deadline {format_duration(summary['deadline_s'])}: {met}")
    console.print(f"wrote {output / 'outputs.npy'} and {output / 'job.json'}")
