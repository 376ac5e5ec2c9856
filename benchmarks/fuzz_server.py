"""Fuzz a live ``qosbatch serve`` from its own OpenAPI document (Schemathesis), and its
gRPC endpoint from tritonclient's messages (Hypothesis), for minutes.

Goals (issue 22): no 5xx (no INTERNAL or UNKNOWN over gRPC) for any input the
document allows or forbids, no request that hangs, and the server still live
afterwards. Every operation of ``/openapi.json`` is fuzzed in turn with data that
fits its schemas and data that breaks them (Schemathesis' positive and negative
modes), round after round with new seeds until the time is up; each request has
its own timeout, so a hang is counted, not waited for. Then ``GET /v2/health/live``
and one real inference must still answer 200.

    .venv/bin/python benchmarks/fuzz_server.py --minutes 5           # a server it starts
    .venv/bin/python benchmarks/fuzz_server.py --url http://127.0.0.1:8000 --grpc HOST:PORT

Prints the counts by status and every failure (method, path, status, a curl line),
and exits 1 when any 5xx, hang or lost liveness was found. ``tests/test_fuzz_server.py``
runs a bounded version of the same in ``make test``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import itertools
import json
import math
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hypothesis
import hypothesis.errors
import requests
import schemathesis
from hypothesis import strategies as st

from qosbatch.client.grpc_client import set_parameter
from qosbatch.launch import running
from qosbatch.testing import banner_url

QOSBATCH = str(Path(sys.executable).parent / "qosbatch")
_SETTINGS = {
    "deadline": None,
    "database": None,
    "suppress_health_check": list(hypothesis.HealthCheck),
    "phases": [hypothesis.Phase.explicit, hypothesis.Phase.generate],
}


@dataclass
class Report:
    """What a fuzzing run saw: answers by status, and each failure it must not see."""

    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    server_errors: list[str] = field(default_factory=list)  # 5xx, INTERNAL/UNKNOWN
    hangs: list[str] = field(default_factory=list)  # no answer within the timeout
    live_after: bool | None = None
    seconds: float = 0.0

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def ok(self) -> bool:
        return not self.server_errors and not self.hangs and self.live_after is not False

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "statuses": dict(sorted(self.statuses.items())),
            "server_errors": len(self.server_errors),
            "hangs": len(self.hangs),
            "live_after": self.live_after,
            "seconds": round(self.seconds, 1),
            "failures": (self.server_errors + self.hangs)[:20],
        }


def fuzz_http(
    base: str,
    report: Report,
    examples: int,
    seed: int,
    model: str | None = None,
    timeout_s: float = 5.0,
) -> None:
    """One round: every operation of the document, positive then negative data; each twice
    when ``model`` is given, with any path and with the served model's (to reach its body)."""
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    session = requests.Session()
    for result in schema.get_all_operations():
        op = result.ok()
        paths: list[dict[str, str] | None] = [None]
        if model is not None and "{model}" in op.path:
            paths.append(
                {"model": model, "version": "1"} if "{version}" in op.path else {"model": model}
            )
        for mode, path in itertools.product(schemathesis.GenerationMode, paths):
            strategy = op.as_strategy(generation_mode=mode, path_parameters=path)

            @hypothesis.settings(max_examples=examples, **_SETTINGS)  # type: ignore[arg-type]
            @hypothesis.seed(seed)
            @hypothesis.given(case=strategy)
            def one(case: schemathesis.Case) -> None:
                try:
                    r = case.call(base_url=base, session=session, timeout=timeout_s)
                except requests.Timeout:
                    report.hangs.append(f"no answer in {timeout_s} s: {case.as_curl_command()}")
                    return
                report.statuses[str(r.status_code)] += 1
                if r.status_code >= 500:
                    line = f"{r.status_code} {r.text[:200]!r}: {case.as_curl_command()}"
                    report.server_errors.append(line)

            # (Unsatisfiable: there is no negative data for an operation that takes nothing.)
            with contextlib.suppress(hypothesis.errors.Unsatisfiable):
                one()


def fuzz_grpc(
    address: str,
    report: Report,
    examples: int,
    seed: int,
    example: tuple[str, dict[str, Any]] | None,
    timeout_s: float = 5.0,
) -> None:
    """Random ModelInferRequests at the gRPC endpoint, some near the served model's own."""
    import grpc
    from tritonclient.grpc import service_pb2_grpc as pb_grpc

    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)

        @hypothesis.settings(max_examples=examples, **_SETTINGS)  # type: ignore[arg-type]
        @hypothesis.seed(seed)
        @hypothesis.given(request=infer_requests(example))
        def one(request: Any) -> None:
            try:
                stub.ModelInfer(request, timeout=timeout_s)
                code = "OK"
            except grpc.RpcError as exc:
                code = exc.code().name
                if code == "DEADLINE_EXCEEDED":
                    report.hangs.append(f"gRPC: no answer in {timeout_s} s: {request}"[:400])
                elif code in ("INTERNAL", "UNKNOWN"):
                    report.server_errors.append(f"gRPC {code} {exc.details()}: {request}"[:400])
            report.statuses[f"grpc {code}"] += 1

        one()


def infer_requests(example: tuple[str, dict[str, Any]] | None) -> st.SearchStrategy[Any]:
    """ModelInferRequests with any mix of names, datatypes, shapes, contents and parameters;
    the served model's name and shape among them, so that some get past the first check."""
    from tritonclient.grpc import service_pb2 as pb

    models, shapes = [""], [[1]]
    if example is not None:
        models.append(example[0])
        shapes.append(example[1]["inputs"][0]["shape"])
    shape_of = st.sampled_from(shapes) | st.lists(st.integers(-2, 2**40), max_size=4)
    # Weighted towards the served model's own name, input and datatype (FP32 in the zoo).
    datatypes = st.sampled_from(["FP32"] * 4 + ["FP16", "INT8", "INT64", "BOOL", "BYTES", "x", ""])
    values = st.one_of(
        st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(), st.text(max_size=8)
    )

    @st.composite
    def build(draw: Callable[[st.SearchStrategy[Any]], Any]) -> Any:
        r = pb.ModelInferRequest(
            model_name=draw(st.sampled_from(models[-1:] * 3 + models) | st.text(max_size=8)),
            model_version=draw(st.sampled_from(["", "1", "2"])),
            id=draw(st.text(max_size=4)),
        )
        for key, value in draw(st.dictionaries(_PARAM_NAMES, values, max_size=3)).items():
            set_parameter(r.parameters[key], value)
        for _ in range(draw(st.integers(0, 2))):
            t = r.inputs.add(
                name=draw(st.sampled_from(["input"] * 4 + ["x", ""])),
                datatype=draw(datatypes),
                shape=draw(shape_of),
            )
            if draw(st.booleans()):
                t.contents.fp32_contents.extend(draw(st.lists(st.floats(width=32), max_size=8)))
            if draw(st.booleans()) and 0 < math.prod(t.shape) <= 4096:  # the right size
                n = 4 * math.prod(t.shape)
                r.raw_input_contents.append(draw(st.binary(min_size=n, max_size=n)))
        for blob in draw(st.lists(st.binary(max_size=64), max_size=2)):
            r.raw_input_contents.append(blob)
        for name in draw(st.lists(st.sampled_from(["output", "y"]), max_size=2)):
            r.outputs.add(name=name)
        return r

    return build()


_PARAM_NAMES = st.sampled_from(["slo_ms", "timeout", "priority", "binary_data_output", "other"])


def served_example(base: str) -> tuple[str, dict[str, Any]] | None:
    """The document's example: a served model's name and a request it takes (None: none)."""
    try:
        doc = requests.get(f"{base}/openapi.json", timeout=5).json()
        op = doc["paths"]["/v2/models/{model}/infer"]["post"]
        body = op["requestBody"]["content"]["application/json"]["example"]
        return str(op["parameters"][0]["example"]), body
    except (requests.RequestException, KeyError, IndexError, ValueError):
        return None


def still_live(base: str) -> bool:
    """Live, and one real inference (the document's own example) answered 200."""
    try:
        if requests.get(f"{base}/v2/health/live", timeout=5).status_code != 200:
            return False
        example = served_example(base)
        if example is None:
            return False
        r = requests.post(f"{base}/v2/models/{example[0]}/infer", json=example[1], timeout=10)
        return r.status_code == 200
    except requests.RequestException:
        return False


def fuzz(
    base: str,
    *,
    examples: int,
    seconds: float | None = None,
    grpc_address: str | None = None,
    seed: int = 0,
    progress: Callable[[Report], None] | None = None,
) -> Report:
    """Rounds of ``examples`` per operation and mode until ``seconds`` (one round: None)."""
    report = Report()
    example = served_example(base)
    start = time.monotonic()
    round_ = 0
    while True:
        fuzz_http(base, report, examples, seed + round_, example and example[0])
        if grpc_address is not None:
            fuzz_grpc(grpc_address, report, examples * 4, seed + round_, example)
        round_ += 1
        if progress is not None:
            progress(report)
        if seconds is None or time.monotonic() - start > seconds:
            break
    report.seconds = time.monotonic() - start
    report.live_after = still_live(base)
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--examples", type=int, default=100, help="per operation, mode and round")
    ap.add_argument("--url", help="a running server (default: start one, with gRPC)")
    ap.add_argument("--grpc", help="its gRPC host:port (with --url)")
    ap.add_argument("--model", default="noop", help="the model of the server it starts")
    ap.add_argument("--cpus", default=None, help="pin the server it starts (taskset -c form)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    def progress(r: Report) -> None:
        print(
            f"{r.requests} requests, {len(r.server_errors)} server errors, {len(r.hangs)} hangs",
            file=sys.stderr,
            flush=True,
        )

    def run(base: str, grpc_address: str | None) -> Report:
        return fuzz(
            base,
            examples=args.examples,
            seconds=args.minutes * 60,
            grpc_address=grpc_address,
            progress=progress,
        )

    if args.url:
        report = run(args.url.rstrip("/"), args.grpc)
    else:
        cmd = [QOSBATCH, "serve", "--model", args.model, "--port", "0", "--grpc-port", "0"]
        with running("qosbatch serve", cmd, banner_url, 120, cpus=args.cpus) as server:
            assert server.url is not None
            found = re.search(r"gRPC \(KServe v2\) on (\S+)", server.log_text())
            report = run(server.url, found.group(1) if found else None)
            if not server.alive():
                report.live_after = False
    out = report.to_json()
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(
            f"{out['requests']} requests in {out['seconds']:g} s: {out['server_errors']} server "
            f"errors, {out['hangs']} hangs, live after: {out['live_after']}"
        )
        print("by status: " + ", ".join(f"{k} {v}" for k, v in out["statuses"].items()))
        for line in out["failures"]:
            print("  " + line)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
