"""Commands of the profiling layer: models, node, profile, predict, plot."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from qosbatch.cli import app
from qosbatch.core.errors import UserError
from qosbatch.core.profile import Profile, load_node, load_profile, save_node, save_profile

console = Console()
err_console = Console(stderr=True)


def int_list(text: str, what: str) -> list[int]:
    """'1,2,4' -> [1, 2, 4], with a one-line error naming the option."""
    try:
        values = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise UserError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values:
        raise UserError(f"{what} must list at least one integer")
    return values


@app.command()
def models() -> None:
    """List the model zoo: input shape, parameters and GFLOP per sample."""
    from qosbatch.models.flops import count_flops_per_sample, count_params
    from qosbatch.models.zoo import ZOO, build_zoo_model

    table = Table(title="qosbatch model zoo (seeded random weights)")
    for col in ("model", "input shape", "params", "GFLOP/sample", "what"):
        table.add_column(col, justify="right" if col in ("params", "GFLOP/sample") else "left")
    for name, entry in ZOO.items():
        module = build_zoo_model(name)
        flops = count_flops_per_sample(module, entry.input_shape)
        params = count_params(module) or 0
        table.add_row(
            name,
            "x".join(map(str, entry.input_shape)),
            f"{params / 1e6:.2f} M",
            f"{flops / 1e9:.3f}" if flops else "-",
            entry.summary,
        )
    console.print(table)
    console.print(
        "GFLOP counts 2 FLOPs per multiply-accumulate (halve to compare with GMAC figures)."
    )


@app.command()
def node(
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the node file.")],
    cores: Annotated[
        str | None, typer.Option(help="Core counts to measure, e.g. 1,2 (default: 1..all).")
    ] = None,
) -> None:
    """Measure this node's compute power c (float32 GEMM GFLOP/s per core count)."""
    from qosbatch.profiling.node import (
        default_core_counts,
        describe_node,
        measure_compute_power,
    )

    counts = int_list(cores, "--cores") if cores else default_core_counts()
    with console.status("measuring GEMM throughput..."):
        info = describe_node(measure_compute_power(counts))
    save_node(info, output)
    for c, g in sorted(info.compute_gflops.items()):
        console.print(f"{c} core{'s' * (c > 1)}: {g:.1f} GFLOP/s")
    console.print(f"{info.cpu_model}: wrote {output}")


@app.command()
def profile(
    model: Annotated[
        str, typer.Argument(help="Zoo name, .onnx/.pt2/TorchScript file, or pkg.mod:factory.")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Profile JSON to write.")] = Path(
        "profile.json"
    ),
    batch_sizes: Annotated[
        str, typer.Option(help="Batch sizes to fit on.")
    ] = "1,2,3,4,6,8,12,16,24,32",
    cores: Annotated[
        str | None, typer.Option(help="Core counts, e.g. 1,2 (default: 1..all).")
    ] = None,
    holdout: Annotated[
        str,
        typer.Option(
            help="Sizes measured only to score the fit: auto (midpoints), none, or a list."
        ),
    ] = "auto",
    backend: Annotated[str, typer.Option(help="torch or onnx.")] = "torch",
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    warmup: Annotated[int, typer.Option(min=0, help="Untimed runs per point.")] = 2,
    repeats: Annotated[int, typer.Option(min=3, help="Timed runs per point.")] = 10,
    max_seconds: Annotated[float, typer.Option(min=0.0, help="Time budget per point (s).")] = 10.0,
    input_shape: Annotated[
        str | None, typer.Option(help="One sample's shape, e.g. 3,224,224.")
    ] = None,
) -> None:
    """Measure a model's batch latency over batch sizes and cores, count its FLOPs, fit."""
    from qosbatch.models.loading import parse_shape, resolve_model
    from qosbatch.profiling.node import default_core_counts
    from qosbatch.profiling.profiler import ProfileRequest, holdout_sizes, run_profile
    from qosbatch.profiling.runner import RunSettings

    sizes = int_list(batch_sizes, "--batch-sizes")
    if any(b < 1 for b in sizes):
        raise UserError(f"--batch-sizes must be integers >= 1, got {batch_sizes!r}")
    if holdout == "auto":
        held = holdout_sizes(sizes)
    elif holdout == "none":
        held = []
    else:
        held = sorted(set(int_list(holdout, "--holdout")) - set(sizes))
    counts = int_list(cores, "--cores") if cores else default_core_counts()
    ref = resolve_model(model, parse_shape(input_shape) if input_shape else None)
    request = ProfileRequest(
        ref, sizes, counts, held, RunSettings(warmup, repeats, max_seconds, backend, device)
    )
    total = len(counts) * (len(set(sizes)) + len(held))
    # SIGTERM is handled like Ctrl-C: what was measured is kept, marked partial.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task(f"profiling {ref.name}", total=total)

        def advance(m: Any) -> None:
            bar.update(task, advance=1, description=f"{ref.name} b={m.batch} c={m.cores}")

        result = run_profile(request, advance)
    if not result.measurements:
        raise UserError(
            f"nothing was measured ({result.settings.get('stopped', 'stopped')}); no file written"
        )
    save_profile(result, output)
    print_fit(result)
    if result.partial:
        err_console.print(
            f"[yellow]partial profile ({result.settings['stopped']}): "
            f"{len(result.measurements)} of {total} points, written to {output} marked partial"
        )
        raise typer.Exit(1)
    console.print(f"wrote {output}")


def print_fit(result: Profile) -> None:
    info = result.model
    flops = (
        f"{info.flops_per_sample / 1e9:.3f} GFLOP/sample" if info.flops_per_sample else "FLOPs n/a"
    )
    gflops = ", ".join(f"{c}c {g:.0f}" for c, g in sorted(result.node.compute_gflops.items()))
    console.print(
        f"{info.name} ({info.backend}, {flops}) on {result.node.cpu_model} [c: {gflops} GFLOP/s]"
    )
    table = Table(title="latency models (held-out: sizes measured but never fitted on)")
    for col in ("model", "held-out MAPE", "held-out max", "points", "in-sample MAPE"):
        table.add_column(col, justify="left" if col == "model" else "right")
    fit = result.fit or {"models": {}}
    for kind, entry in fit["models"].items():
        held = entry["heldout"]
        table.add_row(
            kind + (" (best)" if kind == fit.get("best") else ""),
            f"{held['mape_pct']:.2f}%" if held else "n/a",
            f"{held['max_ape_pct']:.2f}%" if held else "n/a",
            str(held["points"]) if held else "0",
            f"{entry['in_sample']['mape_pct']:.2f}%",
        )
    console.print(table)
    for kind, entry in fit["models"].items():
        console.print(f"  {kind}: {_params_text(entry['params'])}")
    for cc in fit.get("cross_core", []):
        console.print(
            f"flops*p/c from {cc['from_cores']} core(s) predicting {cc['to_cores']}: "
            f"MAPE {cc['mape_pct']:.2f}% (max {cc['max_ape_pct']:.2f}%)"
        )


def _params_text(params: dict[str, Any]) -> str:
    if params["kind"] == "amdahl":
        names = ("alpha_s", "beta_s", "gamma_s", "delta_s")
        terms = " ".join(f"{k[:-2]}={params[k] * 1e3:.3g}" for k in names)
        return f"s = (alpha*b + beta)/c + gamma*b + delta, in ms: {terms}"
    parts = []
    for cores, by_batch in params["density"].items():
        items = list(by_batch.items())
        (b_lo, p_lo), (b_hi, p_hi) = items[0], items[-1]
        parts.append(f"{cores}c p(b={b_lo})={p_lo:.2f}..p(b={b_hi})={p_hi:.2f}")
    return "s = flops*b*p(b)/c, " + "; ".join(parts)


@app.command()
def predict(
    profile_path: Annotated[Path, typer.Argument(metavar="PROFILE", help="A profile JSON.")],
    batch: Annotated[int, typer.Option(help="Batch size.")],
    cores: Annotated[int, typer.Option(help="Core count.")],
    node_path: Annotated[
        Path | None, typer.Option("--node", help="Another node's file (or profile): predict there.")
    ] = None,
    model: Annotated[str, typer.Option(help="auto, amdahl or density.")] = "auto",
) -> None:
    """Predict one batch's latency in ms, with the model used and its held-out error."""
    from qosbatch.latency import MODEL_KINDS, DensityModel, fit_profile, latency_model

    if batch < 1:
        raise UserError(f"--batch must be an integer >= 1, got {batch}")
    if cores < 1:
        raise UserError(f"--cores must be an integer >= 1, got {cores}")
    if model not in MODEL_KINDS:
        raise UserError(f"--model must be one of {', '.join(MODEL_KINDS)}, got {model!r}")
    prof = load_profile(profile_path)
    fit = prof.fit or fit_profile(prof)
    kind = model
    where = prof.node.cpu_model
    if node_path is not None:
        kind = "density"  # only flops*p/c carries to a node that was never profiled
        other = load_node(node_path)
        lat = latency_model(prof, "density")
        assert isinstance(lat, DensityModel)
        lat = lat.on_node(other.compute_gflops)
        where = f"{other.cpu_model} (predicted from its compute power)"
    else:
        kind = fit["best"] if kind == "auto" else kind
        lat = latency_model(prof, kind)  # type: ignore[arg-type]
    ms = float(lat.predict_s(batch, cores)) * 1e3
    entry = fit["models"].get(kind)
    held = entry["heldout"] if entry else None
    err = f"held-out MAPE {held['mape_pct']:.2f}%" if held else "no held-out points"
    if cores not in prof.core_counts or node_path is not None:
        err += "; cores or node not profiled: extrapolated"
    console.print(
        f"{prof.model.name} batch {batch} on {cores} core{'s' * (cores > 1)} of {where}: "
        f"[bold]{ms:.2f} ms[/bold] ({kind}; {err})"
    )


@app.command()
def plot(
    profile_path: Annotated[Path, typer.Argument(metavar="PROFILE", help="A profile JSON.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG to write.")] = Path(
        "profile.png"
    ),
) -> None:
    """Plot measured latency and throughput against batch size, with the fitted curves."""
    from qosbatch.viz.profile_plot import plot_profile

    path = plot_profile(load_profile(profile_path), output)
    console.print(f"wrote {path}")
