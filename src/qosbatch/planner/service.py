"""One model's batch service time and memory, as every option of the model reads them.

The planner prices hundreds of (node type, cores, batch setting) options per
model; each needs s(j) for every batch size j up to its b. They all read one
``LatencyTable`` built once per model on the profiled node (the profile's best
latency model, made non-decreasing in b, with the measured spread), the same
table the simulator replays, so a plan and its verification see the same
numbers. Another node type only multiplies a row by its speed factor
(``NodeType.speed_factor``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from qosbatch.core.profile import NodeInfo, Profile
from qosbatch.latency.table import LatencyTable

# A worker process's memory beside the weights and activations: interpreter, runtime
# libraries, thread pools. Measured RSS of a torch CPU worker is 200-350 MiB; the
# profile's peak memory is counted above the loaded model, so this is added back.
DEFAULT_OVERHEAD_BYTES = 256 * 2**20
_BYTES_PER_PARAM = 4  # float32 weights


@dataclass(frozen=True)
class ModelService:
    """Service time (on the profiled node) and memory of one replica of one model."""

    name: str
    node: NodeInfo  # where the profile was taken: speed factors are relative to it
    table: LatencyTable  # s(b, k) and cv(b, k), b <= max_batch, k <= max_cores
    profiled_cores: tuple[int, ...]
    weights_bytes: float
    # Peak activation memory per measured batch size (max over core counts), ascending.
    activation: tuple[tuple[int, float], ...]
    overhead_bytes: float = DEFAULT_OVERHEAD_BYTES
    memory_override_bytes: float | None = None  # the user's figure, used as is

    @classmethod
    def from_profile(
        cls,
        profile: Profile,
        max_cores: int,
        max_batch: int,
        name: str | None = None,
        overhead_bytes: float = DEFAULT_OVERHEAD_BYTES,
        memory_override_bytes: float | None = None,
    ) -> ModelService:
        table = LatencyTable.from_profile(profile, max_cores=max_cores, max_batch=max_batch)
        peaks: dict[int, float] = {}
        for m in profile.measurements:
            peaks[m.batch] = max(peaks.get(m.batch, 0.0), float(m.peak_memory_bytes))
        return cls(
            name=name or profile.model.name,
            node=profile.node,
            table=table,
            profiled_cores=tuple(profile.core_counts),
            weights_bytes=float((profile.model.params or 0) * _BYTES_PER_PARAM),
            activation=tuple(sorted(peaks.items())),
            overhead_bytes=overhead_bytes,
            memory_override_bytes=memory_override_bytes,
        )

    def means(self, cores: int, b: int) -> list[float]:
        """s(j) for j = 0..b at ``cores`` on the profiled node (index 0 is padding)."""
        return self.table.service_s[cores][: b + 1]

    def cvs(self, cores: int, b: int) -> list[float]:
        return self.table.cv[cores][: b + 1]

    def memory_bytes(self, b: int) -> float:
        """One replica serving batches up to b: overhead + weights + peak activations.

        Activations above the largest measured batch grow in proportion to the batch
        (they are per-sample tensors), which is the conservative direction.
        """
        if self.memory_override_bytes is not None:
            return self.memory_override_bytes
        peak = 0.0
        for batch, bytes_ in self.activation:
            if batch <= b:
                peak = max(peak, bytes_)
        if self.activation and b > self.activation[-1][0]:
            top_b, top = self.activation[-1]
            peak = max(peak, top * b / top_b)
        return self.overhead_bytes + self.weights_bytes + peak

    def is_profiled(self, cores: int) -> bool:
        return cores in self.profiled_cores


def powers_of_two(limit: int) -> tuple[int, ...]:
    """1, 2, 4, ... up to ``limit`` (and ``limit`` itself): replica sizes that tile a node.

    Replicas whose core counts are powers of two pack onto a node of 2^n cores
    with no hole whenever their total fits, so the integer program's per-type core
    total is then exact, not a relaxation.
    """
    out = [1 << i for i in range(int(math.log2(limit)) + 1)] if limit >= 1 else []
    if limit not in out:
        out.append(limit)
    return tuple(out)
