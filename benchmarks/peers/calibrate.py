"""What each model's comparison is built from: its limit, its SLOs, and every system's grid.

Nothing here is fixed per harness: the rate range, the budgets and the knob grids
all follow from the model's profile, measured on the server's cores with the
backend every system runs (ONNX Runtime). A fixed rate guess was what made every
system score 0 on resnet18 (issue 18): it never tried a load the model could carry.

* **limit**: the profile's best ``b / s(b)``, the in-process throughput no server
  can beat. Load factor 1 is the limit, for every scenario: a *nominal* load, the
  same for every system, never a trace's realised rate.
* **SLO**: four times the batch time of ``b90``, the smallest batch reaching 90% of
  the limit (at least 100 ms): room to wait for a batch, run it and absorb noise.
* **grids**: two batch sizes (``b90``, and the largest whose batch time fits in half
  the SLO) times two queue delays (2% and 10% of the SLO), in each system's own
  knob names. Triton's grid adds its deadline knobs: each request's ``timeout`` is
  the SLO minus the batch's expected time, its preferred batch sizes are the grid's
  sizes up to its maximum, and ``max_queue_size`` is either unbounded or what the
  limit serves within the budget. Every system's first setting is the one most
  likely to win, which the tuning search treats best.
"""

from __future__ import annotations

import itertools
import math
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.peers.systems import Knobs, ModelFiles
from qosbatch.core.profile import load_profile
from qosbatch.latency.table import LatencyTable
from qosbatch.launch import tail

BATCHES = (1, 2, 4, 8, 16, 32, 64)
MMPP_SHAPE = (0.25, 2.0)  # state rates as multiples of r, dwelling 5 s and 1 s
MMPP_DWELL = (5.0, 1.0)


@dataclass(frozen=True)
class Calibration:
    """One model on the server's cores, as the profile says."""

    model: str
    batch_s: dict[int, float]  # mean batch time on one core, by batch size
    slo_ms: float  # scenario (a)'s and (c)'s fixed budget

    @property
    def limit(self) -> float:
        return max(b / s for b, s in self.batch_s.items())

    @property
    def best_batch(self) -> int:
        return max(self.batch_s, key=lambda b: b / self.batch_s[b])

    @property
    def b90(self) -> int:
        """The smallest batch that reaches 90% of the limit."""
        return min(b for b, s in self.batch_s.items() if b / s >= 0.9 * self.limit)

    def batch_sizes(self) -> tuple[int, int]:
        """The grid's two batch sizes: ``b90``, and the largest fitting half the SLO."""
        fits = [b for b, s in self.batch_s.items() if s * 1e3 <= self.slo_ms / 2]
        big = max(fits, default=min(self.batch_s))
        small = min(self.b90, big)
        if small == big and small > 1:
            small = max(b for b in self.batch_s if b < big)
        return small, big

    def delays_ms(self) -> tuple[float, float]:
        return round(0.02 * self.slo_ms, 1), round(0.10 * self.slo_ms, 1)

    def poisson(self, duration_s: float) -> str:
        """Scenario (a) at factor 1: Poisson at the limit."""
        return f"poisson:rate={self.limit:.4g},duration_s={duration_s:g},slo_ms={self.slo_ms:g}"

    def mmpp(self, duration_s: float) -> str:
        """Scenario (b) at factor 1: bursts 1:8 whose *mean* rate is the limit."""
        mean_shape = sum(m * d for m, d in zip(MMPP_SHAPE, MMPP_DWELL, strict=True)) / sum(
            MMPP_DWELL
        )
        r = self.limit / mean_shape
        base, delay = 1.2 * self.slo_ms, 0.2 * self.slo_ms
        rates = "/".join(f"{m * r:.4g}" for m in MMPP_SHAPE)
        dwell = "/".join(f"{d:g}" for d in MMPP_DWELL)
        return (
            f"mmpp:rates={rates},switch_s={dwell},duration_s={duration_s:g},slo=netdelay,"
            f"base_ms={base:g},delay_ms={delay:g},delay_sigma=0.5"
        )


def default_slo_ms(batch_s: dict[int, float]) -> float:
    limit = max(b / s for b, s in batch_s.items())
    b90 = min(b for b, s in batch_s.items() if b / s >= 0.9 * limit)
    return max(100.0, 10.0 * math.ceil(4 * batch_s[b90] * 1e3 / 10.0))


def profile(model: ModelFiles, cpus: str, qosbatch: Path, logs: Path) -> Path:
    """The model's ONNX Runtime profile on ``cpus`` (one thread), measured once per file."""
    path = model.onnx.with_suffix(f".cpus{cpus.replace(',', '_')}.profile.json")
    if path.exists():
        return path
    sizes = ",".join(str(b) for b in BATCHES if b <= model.max_batch)
    argv = [
        "taskset", "-c", cpus, str(qosbatch), "profile", str(model.onnx), "--backend", "onnx",
        "--cores", "1", "--batch-sizes", sizes, "--holdout", "none", "--repeats", "5",
        "-o", str(path),
    ]  # fmt: skip
    log_path = logs / f"profile-{model.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as out:
        rc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    if rc != 0:
        raise RuntimeError(f"profiling {model.onnx} failed; see {log_path}:\n{tail(log_path)}")
    return path


def calibrate(profile_path: Path, max_batch: int, slo_ms: float | None = None) -> Calibration:
    prof = load_profile(profile_path)
    table = LatencyTable.from_profile(prof, 1)
    batch_s = {b: table.s(b, 1) for b in BATCHES if b <= min(max_batch, table.max_batch)}
    return Calibration(prof.model.name, batch_s, slo_ms or default_slo_ms(batch_s))


# Each system's grid, in its own knob names, from (batch, delay ms) and the calibration.
def _triton(cal: Calibration) -> list[Knobs]:
    """Triton's batch knobs, its deadline knobs, and one or two model instances.

    Two instances first: with one, Triton 2.51's batcher sleeps up to 500 ms when a
    request arrives while that instance is busy and the server shares one core with
    it (the batcher's default wait; a pair of requests 3 ms apart: the second answered
    in about 548 ms in 8 of 15 tries, in under 50 ms with two instances or two cores).
    """
    small, big = cal.batch_sizes()
    out: list[Knobs] = []
    for instances, bounded, b, d in itertools.product(
        (2, 1), (True, False), (big, small), cal.delays_ms()
    ):
        budget_ms = cal.slo_ms - 1e3 * cal.batch_s[b]
        bound = max(b, math.ceil(cal.limit * budget_ms / 1e3))
        out.append(
            {
                "max_batch_size": b,
                "max_queue_delay_microseconds": round(d * 1000),
                "preferred_batch_size": [x for x in (small, big) if x <= b],
                "max_queue_size": bound if bounded else 0,
                "timeout_margin_ms": round(1e3 * cal.batch_s[b], 1),
                "instances": instances,
            }
        )
    return out


def _pairs(make: Callable[[int, float], Knobs]) -> Callable[[Calibration], list[Knobs]]:
    def grid(cal: Calibration) -> list[Knobs]:
        small, big = cal.batch_sizes()
        return [make(b, d) for b in (big, small) for d in cal.delays_ms()]

    return grid


def _bentoml(cal: Calibration) -> list[Knobs]:
    """BentoML's ``max_latency_ms`` is a cap on predicted latency, not a wait: the SLO, or 10x."""
    small, big = cal.batch_sizes()
    return [
        {"max_batch_size": b, "max_latency_ms": round(cap)}
        for b in (big, small)
        for cap in (cal.slo_ms, 10 * cal.slo_ms)
    ]


GRIDS: dict[str, Callable[[Calibration], list[Knobs]]] = {
    "qosbatch": lambda cal: [{"policy": "slo"}],
    "qosbatch-dynamic": _pairs(
        lambda b, d: {"policy": f"dynamic:max_batch_size={b},max_queue_delay_ms={d:g}"}
    ),
    "triton": _triton,
    "ray": _pairs(lambda b, d: {"max_batch_size": b, "batch_wait_timeout_s": d / 1e3}),
    "bentoml": _bentoml,
    "mlserver": _pairs(lambda b, d: {"max_batch_size": b, "max_batch_time": d / 1e3}),
}
