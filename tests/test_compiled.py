"""The compiled build (``make compiled``, mypyc) decides exactly what the Python source does.

``make test-compiled`` runs this file with the compiled build first on the path: it
fails unless the hot modules it imported are compiled, then simulates a matrix of
policies, shapes, loads and workloads in this process (compiled) and in a child
running the plain source, and asserts that every record of every run is the same.
In the plain suite, which imports qosbatch from src/, it skips.

    python tests/test_compiled.py   # prints the matrix's digests (what the child runs)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import qosbatch
from qosbatch.engine import queue
from qosbatch.latency.amdahl import AmdahlModel
from qosbatch.policies import slo, slo_choose, slo_cores, slo_plan, slo_shed
from qosbatch.policies.registry import parse_policy
from qosbatch.sim import kernel, service, state
from qosbatch.sim.kernel import Deployment, simulate
from qosbatch.testing import records_digest, synthetic_table
from qosbatch.workloads import parse_workload

HOT = (kernel, state, service, queue, slo, slo_choose, slo_cores, slo_plan, slo_shed)
ROOT = Path(__file__).resolve().parents[1]
POLICIES = (
    "slo",
    "slo:scale_down=false",
    "slo:shed=false",
    "slo:wait=false,boost=false",
    "slo:lookahead=0",
    "dynamic",
    "aimd",
    "single",
    "fixed:batch_size=4,timeout_ms=10",
)
# (name, model): a CNN with a batching gain, and one whose batch time is nearly linear in b.
MODELS = (
    ("batching", AmdahlModel(alpha=0.0141, beta=0.0, gamma=0.0026, delta=0.0124)),
    ("linear", AmdahlModel(alpha=0.055, beta=0.0, gamma=0.001, delta=0.002)),
)


def digests() -> dict[str, str]:
    """Every run of the matrix, by name: a digest of all its records."""
    out: dict[str, str] = {}
    for name, model in MODELS:
        table = synthetic_table(model, max_batch=64, max_cores=4, cv=0.1)
        for cores, workers in ((2, 1), (2, 2), (4, 2)):
            dep = [Deployment(name, table, cores, workers)]
            capacity = workers / table.s(1, cores // workers)
            slo_ms = 4e3 * table.s(1, cores)
            for load in (0.7, 1.5):
                rate = load * capacity
                for workload in (
                    f"poisson:rate={rate},requests=1500,slo_ms={slo_ms}",
                    f"mmpp:rates={rate / 2}/{rate * 3},switch_s=2/0.5,duration_s={1500 / rate},"
                    f"slo=netdelay,base_ms={slo_ms},delay_ms={slo_ms / 5}",
                ):
                    trace = parse_workload(workload).generate(np.random.default_rng(7), name)
                    for policy in POLICIES:
                        result = simulate(trace, dep, parse_policy(policy).factory(), seed=3)
                        key = f"{name} {cores}c{workers}w load={load} {workload[:4]} {policy}"
                        out[key] = records_digest(result.records)
    # Two models on one shared pool of cores.
    tables = [synthetic_table(m, max_batch=64, max_cores=2, cv=0.1) for _, m in MODELS]
    deps = [Deployment(n, t, 2, 2) for (n, _), t in zip(MODELS, tables, strict=True)]
    spec = parse_workload("poisson:rate=40,requests=3000,slo_ms=200,model=batching/linear,mix=2/1")
    trace = spec.generate(np.random.default_rng(8))
    for policy in ("slo", "dynamic"):
        result = simulate(trace, deps, parse_policy(policy).factory(), seed=4, node_cores=2)
        out[f"shared pool {policy}"] = records_digest(result.records)
    return out


BUILD = Path(qosbatch.__file__ or "").resolve().parents[1]  # where qosbatch was imported from


@pytest.mark.skipif(
    BUILD == ROOT / "src", reason="qosbatch comes from src/: make test-compiled runs this"
)
def test_the_hot_path_is_compiled_and_decides_exactly_as_the_source() -> None:
    plain = [m.__name__ for m in HOT if Path(m.__file__ or "").suffix == ".py"]
    assert not plain, f"{BUILD} holds plain Python for {plain}: rebuild it (make compiled)"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}  # the plain source, first
    child = subprocess.run(
        [sys.executable, str(Path(__file__))], env=env, capture_output=True, text=True, check=True
    )
    source = json.loads(child.stdout)
    compiled = digests()
    assert len(compiled) == len(source) > 200
    differ = [key for key in compiled if compiled[key] != source[key]]
    assert not differ, f"{len(differ)} runs differ, the first: {differ[:3]}"


if __name__ == "__main__":
    print(json.dumps(digests()))
