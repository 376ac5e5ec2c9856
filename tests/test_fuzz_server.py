"""Schemathesis over the live server's own ``/openapi.json``, and random gRPC messages, bounded.

A short version of ``benchmarks/fuzz_server.py`` (minutes; this takes seconds): every
operation of the document with data that fits its schemas and data that breaks them,
then the same for gRPC's ModelInfer. No 5xx (no INTERNAL/UNKNOWN), no hang, and the
server still answers a real inference afterwards.
"""

from __future__ import annotations

import pytest

pytest.importorskip("schemathesis")

from benchmarks.fuzz_server import fuzz
from tests.test_grpc import grpc_address
from tests.test_serve import Served

pytestmark = pytest.mark.slow


def test_fuzzing_both_endpoints_finds_no_server_error_and_no_hang():
    s = Served("--model", "noop", "--grpc-port", "0")
    try:
        report = fuzz(f"http://{s.url}", examples=50, grpc_address=grpc_address(s))
    finally:
        assert s.stop() == 0
    assert report.server_errors == [] and report.hangs == []
    assert report.live_after
    statuses = report.statuses
    assert statuses["200"] and statuses["400"] and statuses["404"]  # it reached every layer
    assert statuses["grpc INVALID_ARGUMENT"] and statuses["grpc NOT_FOUND"]
    assert report.requests > 300
