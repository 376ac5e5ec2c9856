"""Traces generated once and replayed byte-for-byte: every system meets the same requests.

A trace is keyed by scenario, load factor and repeat (its seed), written to an
``.npz`` the first time it is asked for, and read back from there every time after,
for every system. Its SHA-256 goes into the results, so that a reader can check
that two systems' runs at one load replayed the same arrivals and budgets.
Load factors are *nominal*: factor 1 is the model's limit for every scenario, and
a factor's trace is whatever its seed draws. A bursty trace's realised rate is not
monotone in the factor over a short run, which is why capacity is never read
from it (issue 18).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from qosbatch.workloads import parse_workload
from qosbatch.workloads.trace import Trace


class TraceStore:
    """Traces of named workload specs at load factors and repeats, generated once each."""

    def __init__(self, folder: Path, specs: dict[str, str], model: str, seed: int = 0) -> None:
        self.folder = folder
        self.specs = specs  # scenario key -> workload spec at load factor 1
        self.model = model
        self.seed = seed
        self.digests: dict[str, str] = {}  # file name -> sha256 of its bytes
        folder.mkdir(parents=True, exist_ok=True)

    def path(self, scenario: str, factor: float, repeat: int) -> Path:
        return self.folder / f"{self.model}-{scenario}-x{factor:.4f}-r{repeat}.npz"

    def get(self, scenario: str, factor: float, repeat: int) -> Trace:
        path = self.path(scenario, factor, repeat)
        if not path.exists():
            spec = parse_workload(self.specs[scenario]).scaled(factor)
            rng = np.random.default_rng([self.seed, repeat])
            trace = spec.generate(rng, self.model)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, time_s=trace.time_s, slo_ms=trace.slo_ms)
            tmp.replace(path)
        data = np.load(path)
        self.digests[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
        n = len(data["time_s"])
        return Trace(data["time_s"], np.zeros(n, dtype=np.int64), (self.model,), data["slo_ms"])
