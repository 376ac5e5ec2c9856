"""What a simulation runs (one model's deployment) and what it returns."""

from __future__ import annotations

from dataclasses import dataclass

from qosbatch.core.errors import UserError
from qosbatch.core.requests import RecordTable
from qosbatch.engine.queue import split_evenly
from qosbatch.latency.table import LatencyTable


@dataclass(frozen=True)
class Deployment:
    """One model on the node: its latency model, its core pool and its workers.

    ``cores`` is the pool the model's batches may hold at once; ``workers`` replicas
    share it, each with a nominal ``cores // workers`` (the first ones get the
    remainder). Policies with fixed sizes dispatch on nominal cores; ``slo`` picks
    per batch within the free pool. ``actual`` is how the node really behaves when
    it differs from the table the policy predicts with (a drift experiment).
    """

    model: str
    latency: LatencyTable
    cores: int
    workers: int = 1
    actual: LatencyTable | None = None

    def __post_init__(self) -> None:
        if self.cores < 1:
            raise UserError(f"{self.model}: cores must be >= 1, got {self.cores}")
        if not 1 <= self.workers <= self.cores:
            raise UserError(
                f"{self.model}: workers must be between 1 and the cores ({self.cores}), "
                f"got {self.workers}"
            )
        for table in (self.latency, self.actual or self.latency):
            if table.max_cores < self.cores:
                raise UserError(
                    f"{self.model}: its latency table covers {table.max_cores} cores, "
                    f"fewer than the {self.cores} deployed"
                )

    def worker_cores(self) -> list[int]:
        return split_evenly(self.cores, self.workers)


@dataclass(frozen=True)
class SimResult:
    """Records of one run and how much work it took."""

    policy: str
    records: RecordTable
    batches: int
    events: int
    wall_s: float
