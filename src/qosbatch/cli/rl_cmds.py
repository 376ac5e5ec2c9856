"""The learning layer's command: ``train`` a SAC agent on the simulator (BCEdge)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from qosbatch.cli import app
from qosbatch.core.errors import UserError

if TYPE_CHECKING:
    from rich.console import Console

    from qosbatch.policies.registry import PolicySpec
    from qosbatch.rl.env import Scheduled
    from qosbatch.rl.evaluate import Scores

DEFAULT_WORKLOADS = (
    "mmpp:rates=8/50,switch_s=5/1,duration_s=60,slo=netdelay,base_ms=250,delay_ms=40",
)

# The options with long help, named once (the command's signature stays readable).
WorkloadOption = Annotated[
    list[str] | None,
    typer.Option(
        help="Workload spec to train on; repeatable (one is drawn per episode). "
        "Without model=, requests go to the models evenly."
    ),
]
InstancesOption = Annotated[
    int | None,
    typer.Option(
        help="Most concurrent instances per model, on as many cores, which the running "
        "ones split (default: the profiles' most cores)."
    ),
]
RivalsOption = Annotated[
    list[str] | None,
    typer.Option(
        help="More policies to judge the agent against on the held-out runs, beside slo "
        "and tuned dynamic: ours or your own module:Class[:knob=value,...] (checked first)."
    ),
]


@app.command()
def train(
    profile: Annotated[
        list[Path],
        typer.Option(help="A model's profile JSON; repeat for one agent over several models."),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Agent file to write (.zip).")],
    steps: Annotated[int, typer.Option(help="Environment steps (decision intervals).")] = 20_000,
    workload: WorkloadOption = None,
    held_out: Annotated[
        list[str] | None, typer.Option(help="Extra workload shapes for the evaluation only.")
    ] = None,
    instances: InstancesOption = None,
    node_cores: Annotated[
        int | None,
        typer.Option(help="Cores several models share (default: --instances); one model: unused."),
    ] = None,
    max_batch: Annotated[int, typer.Option(help="Largest batch the agent may choose.")] = 32,
    interval: Annotated[float, typer.Option(help="Seconds between the agent's decisions.")] = 0.5,
    seed: Annotated[int, typer.Option(help="Seed of training (SB3, torch, workloads).")] = 0,
    eval_runs: Annotated[
        int, typer.Option(help="Held-out seeds per workload in the final evaluation (0: skip).")
    ] = 3,
    plot: Annotated[
        Path | None, typer.Option(help="Learning curve PNG (default: next to the agent).")
    ] = None,
    policy: RivalsOption = None,
) -> None:
    """Train a SAC agent that sets batch size and concurrency; use it as --policy rl:FILE.

    With several --profile, one agent sets every model's knobs at once, the models
    sharing the node's cores. Ends with the agent against slo, utility-tuned
    dynamic and any --policy on held-out seeds.
    """
    from rich.console import Console

    from qosbatch.core.profile import load_profile
    from qosbatch.policies.registry import parse_policy_list
    from qosbatch.rl.env import for_models
    from qosbatch.rl.train import train as run_training
    from qosbatch.sim.check import checked
    from qosbatch.viz.learning_plot import plot_learning_curve
    from qosbatch.workloads.spec import parse_workload

    _check_numbers(steps, max_batch, interval, eval_runs)
    profs = [load_profile(p) for p in profile]
    names = [p.model.name for p in profs]
    if len(set(names)) != len(names):
        raise UserError(f"a model is profiled twice: {', '.join(names)}; give one per model")
    workloads = list(workload or DEFAULT_WORKLOADS)
    k = instances if instances is not None else max(c for p in profs for c in p.core_counts)
    if k < 1:
        raise UserError(f"--instances must be >= 1, got {k}")
    for w in [*workloads, *(held_out or [])]:
        for_models(parse_workload(w), names)  # a bad spec fails now, not after training
    # A bad or contract-breaking policy fails now too, not after minutes of training.
    rivals = [checked(s) for s in parse_policy_list(",".join(policy))] if policy else []
    if rivals and not eval_runs:
        raise UserError("--policy adds to the held-out evaluation; it needs --eval-runs >= 1")
    label = " + ".join(names)
    console = Console()
    with _bar(console) as bar:
        task = bar.add_task(f"training SAC on {label}", total=steps)
        result = run_training(
            profs,
            workloads,
            steps,
            output,
            instances=k,
            node_cores=node_cores,  # (checked against --instances as training starts)
            max_batch=max_batch,
            interval_s=interval,
            seed=seed,
            on_step=lambda n: bar.update(task, completed=n),
        )
    console.print(f"wrote {result.path} ({steps} steps in {result.seconds:.0f} s)")
    curve = plot or result.path.with_suffix(".png")
    plot_learning_curve(result.episode_returns, curve, f"SAC on {label}")
    console.print(f"wrote {curve}")
    if eval_runs:
        _evaluate(console, result, profs, k, rivals, workloads, held_out or [], eval_runs)


def _evaluate(
    console: Console,
    result: Any,
    profs: list[Any],
    instances: int,
    rivals: list[PolicySpec],
    workloads: list[str],
    held_out: list[str],
    runs: int,
) -> None:
    """The trained agent, slo, tuned dynamic and the rivals on held-out seeds: the table."""
    from qosbatch.rl.evaluate import evaluate
    from qosbatch.rl.train import scheduled

    models = scheduled(profs, instances, result.info.max_batch)
    cores = result.info.node_cores
    with console.status("evaluating on held-out seeds (tuning dynamic for utility first)..."):
        scores = evaluate(str(result.path), models, cores, workloads, held_out, runs)
        scores += _score_rivals(rivals, models, cores, workloads, held_out, runs)
    _print_scores(console, scores, f"{runs} seed(s) x {len(workloads) + len(held_out)}")


def _check_numbers(steps: int, max_batch: int, interval: float, eval_runs: int) -> None:
    if steps < 100:
        raise UserError(f"--steps must be >= 100, got {steps}")
    if not 1 <= max_batch <= 128:
        raise UserError(f"--max-batch must be 1 to 128, got {max_batch}")
    if not interval > 0:
        raise UserError(f"--interval must be > 0, got {interval}")
    if eval_runs < 0:
        raise UserError(f"--eval-runs must be >= 0, got {eval_runs}")


def _bar(console: Console) -> Any:
    """Training's progress bar: steps done of all, and the time so far."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def _print_scores(console: Console, scores: list[Scores], runs: str) -> None:
    """The held-out table, then the agent's utility as a ratio to slo's and tuned dynamic's."""
    from rich.table import Table

    table = Table(title=f"held-out: {runs} workload(s)")
    for col in ("policy", "utility", "attainment %"):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for s in scores:
        table.add_row(s.policy, f"{s.utility:.2f}", f"{100 * s.attainment:.2f}")
    console.print(table)
    rl, slo, dynamic = scores[:3]  # (then the --policy rivals, in the table only)
    if dynamic.utility > 0:
        console.print(f"agent / tuned dynamic utility: {rl.utility / dynamic.utility:.2f}x")
    if slo.utility > 0:
        console.print(f"agent / slo utility: {rl.utility / slo.utility:.2f}x")


def _score_rivals(
    rivals: list[PolicySpec],
    models: list[Scheduled],
    node_cores: int | None,
    workloads: list[str],
    held_out: list[str],
    runs: int,
) -> list[Scores]:
    """The --policy extras on the very runs the agent was judged on (same deployment, seeds)."""
    # (_Bench: the evaluation's own runner, so the rivals share its deployment and seeds)
    from qosbatch.rl.evaluate import HELD_OUT_SEED, Scores, _Bench

    bench = _Bench(models, node_cores)
    seeds = [HELD_OUT_SEED + i for i in range(runs)]
    return [
        Scores(spec.label, *bench.run(spec.factory, [*workloads, *held_out], seeds))
        for spec in rivals
    ]
