"""The path a plan is served through, and the share of each SLO it takes.

The planner predicts the time from a request's arrival at a replica's queue to
its answer. A client sees more: the HTTP front end of ``qosbatch serve``, or
Ray Serve's proxy, ingress and handle calls on top of it. On Ray that is not
small: a plan predicting p99 1.7 ms was seen at p99 71.5 ms through Ray Serve.
So a plan is made for the server-side budget ``SLO - overhead``, with the
overhead at the target's statistic (the mean, or the 99th percentile for any
percentile target, the conservative side), and the plan file says both.

The figures are measured with ``benchmarks/ray_vs_serve.py`` (small-cnn, one
1-core replica, Poisson 40 and 80 req/s, client, proxies and replicas on one
2-core machine; docs/deploy.md has the tables). They are the client-side
latency less the model's own time, rounded up. They depend on the machine and the
load: give your own with ``--path-overhead MEAN_MS,P99_MS``. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

from qosbatch.core.errors import UserError
from qosbatch.planner.targets import Target


@dataclass(frozen=True)
class ServingPath:
    """Per-request latency the path adds beyond the replica's queue and batch."""

    name: str
    mean_s: float
    p99_s: float

    def overhead_s(self, target: Target) -> float:
        return self.mean_s if target.percentile is None else self.p99_s

    def budget(self, target: Target, model: str = "") -> Target:
        """The server-side target: the SLO less this path's overhead at its statistic."""
        left = target.slo_s - self.overhead_s(target)
        if left <= 0:
            who = f"model {model}: " if model else ""
            raise UserError(
                f"{who}the {self.name} path alone takes {self.overhead_s(target) * 1e3:g} ms "
                f"({target.label}), the whole SLO of {target.slo_s * 1e3:g} ms"
            )
        return Target(left, target.percentile)


# Local: qosbatch serve measured 2.0-2.5 ms p50 and 3.7-8.3 ms p99 end to end on small-cnn,
# whose batch of one takes 0.26 ms (p50, one thread). Ray: deploy measured p50 12-21 ms,
# p99 48-80 ms on the same model and loads. The mean is taken as the p50 (rounded up).
PATHS: dict[str, ServingPath] = {
    "none": ServingPath("none", 0.0, 0.0),
    "local": ServingPath("local", 0.002, 0.008),
    "ray": ServingPath("ray", 0.021, 0.080),
}


def serving_path(name: str, overhead: str | None = None) -> ServingPath:
    """``--serve-via`` (none, local, ray) with ``--path-overhead MEAN_MS,P99_MS`` over it."""
    if name not in PATHS:
        raise UserError(f"--serve-via must be one of {', '.join(PATHS)}, got {name!r}")
    if overhead is None:
        return PATHS[name]
    parts = overhead.split(",")
    try:
        mean_ms, p99_ms = (float(p) for p in parts)
    except ValueError:
        mean_ms = p99_ms = -1.0
    if len(parts) != 2 or not 0 <= mean_ms <= p99_ms:
        raise UserError(
            f"--path-overhead takes MEAN_MS,P99_MS with 0 <= mean <= p99, got {overhead!r}"
        )
    return ServingPath(name, mean_ms / 1e3, p99_ms / 1e3)
