"""What a plan asks of a cluster, per model, and whether the cluster can hold it. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qosbatch.core.errors import UserError
from qosbatch.planner.files import ALL_NODES, read_plan_models


@dataclass(frozen=True)
class ModelDeployment:
    """One model of the plan as one Ray Serve deployment."""

    model: str
    policy: str
    slo_ms: float
    replicas: int
    cores: int  # per replica (Ray's num_cpus)
    memory_mib: float  # per replica, as the planner estimated it (0: unknown)


def read_layout(path: str | Path) -> list[ModelDeployment]:
    """Every replica of every node of the plan, grouped by model."""
    out = [
        ModelDeployment(
            m.model,
            m.policy,
            m.slo_ms,
            len(m.replica_cores),
            max(m.replica_cores),
            max(m.replica_memory_mib),
        )
        for m in read_plan_models(path, ALL_NODES)
    ]
    if not out:
        raise UserError(f"plan {path} places no replica")
    return out


def check_fits(layout: list[ModelDeployment], cpus: float, memory_bytes: float) -> None:
    """Refuse, with the numbers, a plan the cluster's CPUs or memory cannot hold."""
    need_cpus = sum(d.replicas * d.cores for d in layout)
    if need_cpus > cpus:
        raise UserError(
            f"the plan needs {need_cpus} CPUs ({describe(layout)}); the cluster has {cpus:g}"
        )
    need_mib = sum(d.replicas * d.memory_mib for d in layout)
    if memory_bytes and need_mib * (1 << 20) > memory_bytes:
        raise UserError(
            f"the plan needs {need_mib:.0f} MiB of memory; the cluster has "
            f"{memory_bytes / (1 << 20):.0f} MiB"
        )


def describe(layout: list[ModelDeployment]) -> str:
    return ", ".join(f"{d.model}: {d.replicas} x {d.cores} core(s)" for d in layout)
