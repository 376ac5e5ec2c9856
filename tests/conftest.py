"""Shared fixtures: synthetic profiles built from known latency laws."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from qosbatch.cli import app
from qosbatch.core.profile import Measurement, ModelInfo, NodeInfo, Profile

_runner = CliRunner()


def run_cli(*args):
    """Invoke ``qosbatch ARGS...`` in-process; the Result has exit_code, output, stderr."""
    return _runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *fragments):
    """Bad input: exit status 2, one line on stderr naming the problem, no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


def make_profile(
    law,
    batches=(1, 2, 4, 8, 16, 32),
    cores=(1, 2),
    holdout=(3, 6, 12, 24),
    flops=1e9,
    gflops=None,
    name="synthetic",
) -> Profile:
    """A profile whose medians follow ``law(batch, cores) -> seconds`` exactly."""
    gflops = gflops or {c: 100.0 * c for c in cores}
    points = [(b, False) for b in batches] + [(b, True) for b in holdout]
    measurements = [
        Measurement(b, c, law(b, c) * 1e3, law(b, c) * 1e3 * 1.05, 0.02, 1000 * b, 10, h)
        for c in cores
        for b, h in points
    ]
    return Profile(
        model=ModelInfo(name, "zoo", (8,), flops, 1000, "torch"),
        node=NodeInfo("test cpu", max(cores), dict(gflops)),
        measurements=measurements,
    )


@pytest.fixture
def amdahl_law():
    def law(b, c):
        return (0.010 * b + 0.004) / c + 0.001 * b + 0.002

    return law
