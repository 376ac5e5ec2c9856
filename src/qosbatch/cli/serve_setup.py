"""What ``qosbatch serve``'s flags (or a plan) mean: the models, their cores, their configs.

Kept apart from the command so that each step is one named function with one job,
checked in the order the command always checked them: limits, models, agents,
profiles, cores. Each raises a ``UserError`` saying which flag is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from qosbatch.core.errors import UserError

if TYPE_CHECKING:  # imported when used: `qosbatch --help` stays quick
    from qosbatch.core.profile import Profile
    from qosbatch.models.loading import ModelRef
    from qosbatch.policies.registry import PolicySpec
    from qosbatch.serve.server import ModelConfig


@dataclass(frozen=True)
class Wanted:
    """One model to serve, from the flags or from the plan."""

    ref: ModelRef
    policy: PolicySpec
    slo_s: float
    cores: int | None  # the plan's; None: from --cores
    workers: int


def check_limits(
    max_batch: int,
    max_queue: int,
    max_in_flight: int,
    max_body_mb: float,
    port: int,
    records: Path | None,
    grpc_port: int | None = None,
) -> None:
    """Refuse nonsense limits before any model is loaded."""
    for name, value, low in (
        ("--max-batch", max_batch, 1),
        ("--max-queue", max_queue, 1),
        ("--max-in-flight", max_in_flight, 1),
    ):
        if value < low:
            raise UserError(f"{name} must be >= {low}, got {value}")
    if not max_body_mb > 0:
        raise UserError(f"--max-body-mb must be > 0, got {max_body_mb}")
    for flag, value in (("--port", port), ("--grpc-port", grpc_port)):
        if value is not None and not 0 <= value <= 65535:
            raise UserError(f"{flag} must be 0 to 65535, got {value}")
    if grpc_port is not None and grpc_port == port != 0:
        raise UserError(f"--grpc-port and --port are both {port}; give each its own")
    if records is not None and not records.parent.is_dir():
        raise UserError(f"--records: no directory {records.parent} to write {records.name} in")


# What a plan fixes that each of serve's flags would otherwise set.
_PLAN_FIXED = {
    "policy": ("--policy", "policy"),
    "slo": ("--slo", "SLO"),
    "workers": ("--workers", "replicas"),
    "cores": ("--cores", "cores"),
    "share_cores": ("--share-cores", "cores"),
}


def refuse_plan_conflicts(given: list[str]) -> None:
    """A flag the plan overrides is refused, never ignored: the user would believe it applied.

    ``given``: the parameters (``PLAN_FIXES`` names) given on the command line with --plan.
    """
    if not given:
        return
    flags = [_PLAN_FIXED[p][0] for p in given]
    what = list(dict.fromkeys(_PLAN_FIXED[p][1] for p in given))
    verb = "conflicts" if len(flags) == 1 else "conflict"
    raise UserError(
        f"{_and(flags)} {verb} with --plan: the plan fixes each model's {_and(what)}; "
        f"edit the plan or drop the flag{'s' if len(flags) > 1 else ''}"
    )


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def wanted_models(
    model: list[str] | None,
    plan: Path | None,
    node: str | None,
    shape: tuple[int, ...] | None,
    spec: PolicySpec,
    slo_s: float,
    workers: int,
) -> list[Wanted]:
    """The models to serve: the plan's on ``node``, or each --model with the flags' settings."""
    from qosbatch.models.loading import resolve_model
    from qosbatch.planner.files import read_plan_models
    from qosbatch.policies.registry import parse_policy
    from qosbatch.sim.check import checked

    if plan is not None:
        if model:
            raise UserError("give --model or --plan, not both")
        return [
            Wanted(
                resolve_model(a.model, shape),
                checked(parse_policy(a.policy)),
                a.slo_ms / 1e3,
                sum(a.replica_cores),
                len(a.replica_cores),
            )
            for a in read_plan_models(plan, node)
        ]
    if model:
        if node is not None:
            raise UserError("--node picks a node of --plan; there is no plan")
        return [Wanted(resolve_model(m, shape), spec, slo_s, None, workers) for m in model]
    raise UserError("give --model (repeatable) or --plan")


def refuse_foreign_agents(wanted: list[Wanted]) -> None:
    """An agent trained for another model: refused before any model is loaded."""
    for w in wanted:
        if w.policy.name == "rl":
            from qosbatch.policies.learned import check_trained_for, read_info

            agent = w.policy.params["agent"]
            check_trained_for(agent, read_info(agent), w.ref.name)


def given_profiles(paths: list[Path], served: set[str]) -> dict[str, Profile]:
    """The given profiles by model name; one of a model not served here is a mistake."""
    from qosbatch.core.profile import load_profile

    profiles = {}
    for path in paths:
        p = load_profile(path)
        if p.model.name not in served:
            raise UserError(f"{path} profiles {p.model.name!r}, which is not served here")
        profiles[p.model.name] = p
    return profiles


def core_counts(
    wanted: list[Wanted], planned: bool, cores: int | None, share_cores: bool, cpus: list[int]
) -> list[int]:
    """Cores per model: the plan's, or --cores split evenly (each gets all of them, shared)."""
    from qosbatch.engine.queue import split_evenly

    if planned:
        counts = [w.cores or 0 for w in wanted]
        if sum(counts) > len(cpus):
            raise UserError(
                f"the plan puts {sum(counts)} cores on this node; "
                f"this machine lets us use {len(cpus)}"
            )
    else:
        total = len(cpus) if cores is None else cores
        if not len(wanted) <= total <= len(cpus):
            raise UserError(
                f"--cores must be between {len(wanted)} (one per model) and the {len(cpus)} "
                f"this machine lets us use, got {total}"
            )
        counts = [total] * len(wanted) if share_cores else split_evenly(total, len(wanted))
    return counts


def model_configs(
    wanted: list[Wanted],
    counts: list[int],
    cpus: list[int],
    share_cores: bool,
    backend: str,
    device: str,
    profiles: dict[str, Profile],
    max_batch: int,
) -> list[ModelConfig]:
    """Each model's server configuration, on its own CPUs (or all of them, shared)."""
    from qosbatch.serve.server import ModelConfig

    configs, at = [], 0
    for w, n in zip(wanted, counts, strict=True):
        configs.append(
            ModelConfig(
                w.ref,
                w.policy,
                w.slo_s,
                tuple(cpus[at : at + n]),
                w.workers,
                backend,
                device,
                profiles.get(w.ref.name),
                max_batch,
            )
        )
        at += 0 if share_cores else n
    return configs
