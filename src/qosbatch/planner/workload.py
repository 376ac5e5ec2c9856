"""The workload a plan is for: models with their rate, SLO and profile (``models.yaml``).

    models:
      - profile: profiles/resnet18.json   # relative to this file
        rate: 20                          # requests/s, Poisson
        slo: 200ms                        # or slo_ms: 200
        percentile: 99                    # optional; omitted: the mean latency
        name: resnet18                    # optional; default: the profile's model name
        memory_gib: 1.5                   # optional; default: from the profile
    max_batch: [1, 2, 4, 8, 16, 32]       # optional: b of the (1, b) batching rules tried
    cores: [1, 2, 4, 8]                   # optional: replica sizes tried
    headroom: 0.1                         # optional: plan for 10% more than each rate

Pure: parses the mapping; ``qosbatch.planner.files`` reads the file and the profiles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qosbatch.core.errors import UserError
from qosbatch.core.units import duration_ms
from qosbatch.planner.fields import Fields
from qosbatch.planner.targets import Target

_MODEL_FIELDS = ("profile", "rate", "slo", "slo_ms", "percentile", "name", "memory_gib")
_TOP_FIELDS = ("models", "max_batch", "cores", "headroom")


@dataclass(frozen=True)
class WorkloadModel:
    """One model of the workload, its profile still a path."""

    profile: str  # as written, relative to the workload file
    rate: float
    target: Target
    name: str | None = None
    memory_gib: float | None = None


@dataclass(frozen=True)
class Workload:
    models: tuple[WorkloadModel, ...]
    max_batch: tuple[int, ...] | None = None
    cores: tuple[int, ...] | None = None
    headroom: float | None = None


def parse_workload(data: Any, where: str) -> Workload:
    top = Fields(data, where)
    top.check_known(_TOP_FIELDS)
    models = tuple(_model(f) for f in top.items("models"))
    return Workload(
        models=models,
        max_batch=top.integers("max_batch"),
        cores=top.integers("cores"),
        headroom=top.number("headroom", minimum=0.0),
    )


def _model(f: Fields) -> WorkloadModel:
    f.check_known(_MODEL_FIELDS)
    profile = f.text("profile")
    if not profile:
        raise UserError(f"{f.at('profile')}: missing (required: the model's profile JSON)")
    if f.has("slo") and f.has("slo_ms"):
        raise UserError(f"{f.where}: give slo or slo_ms, not both")
    if f.has("slo_ms"):
        slo_ms = f.number("slo_ms", positive=True)
    elif f.has("slo"):
        slo_ms = duration_ms(f.data["slo"], f.at("slo"))
    else:
        raise UserError(f"{f.at('slo')}: missing (required, e.g. slo: 200ms)")
    percentile = f.number("percentile", minimum=0.0, maximum=100.0)
    try:
        target = Target(float(slo_ms or 0.0) / 1e3, percentile)
    except UserError as exc:
        raise UserError(f"{f.at('percentile')}: {exc}") from None
    return WorkloadModel(
        profile=profile,
        rate=float(f.number("rate", positive=True, required=True) or 0.0),
        target=target,
        name=f.text("name"),
        memory_gib=f.number("memory_gib", positive=True),
    )
