"""The load generator's accounting against a scripted v2 server (aiohttp, 127.0.0.1).

One rule for every server: a 200 after the request's budget is late, a 429/503 is
a rejection with the server's reason, anything else (a 500, an answer that is not
v2 JSON, no answer) is an error, and every request ends in exactly one record.
"""

import asyncio

import numpy as np
import pytest
from aiohttp import web

from qosbatch.client.loadgen import ERROR_PREFIX, run_load
from qosbatch.core.requests import OUTCOMES
from qosbatch.workloads.trace import Trace


def script_server(received):
    """Request i (its first input value) is answered by plan[i % 5]."""

    async def metadata(_request):
        return web.json_response({"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]})

    async def infer(request):
        body = await request.json()
        received.append(body)
        i = int(body["parameters"]["i"])
        kind = ("fast", "slow", "shed", "fail", "garbage")[i % 5]
        if kind == "slow":
            await asyncio.sleep(0.15)  # past its 50 ms budget
        if kind == "shed":
            return web.json_response({"error": "deadline cannot be met"}, status=429)
        if kind == "fail":
            return web.json_response({"error": "boom"}, status=500)
        if kind == "garbage":
            return web.Response(text="not json")
        out = {"outputs": [{"name": "y", "shape": [1, 3], "datatype": "FP32", "data": [0, 0, 0]}]}
        return web.json_response(out)

    app = web.Application()
    app.router.add_get("/v2/models/m", metadata)
    app.router.add_post("/v2/models/m/infer", infer)
    return app


async def run_against_script(trace, parameters):
    received = []
    runner = web.AppRunner(script_server(received))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        result = await run_load(
            f"http://127.0.0.1:{port}", "m", trace, encoding="json",
            slo_parameters=parameters, grace_s=5.0,
        )  # fmt: skip
    finally:
        await runner.cleanup()
    return result, received


def one_model_trace(times):
    n = len(times)
    return Trace(times, np.zeros(n, dtype=np.int64), ("m",), np.full(n, 50.0))


def test_json_mode_accounts_every_request_by_one_rule():
    n = 10
    trace = one_model_trace(np.arange(n) * 0.01)
    counter = iter(range(n))
    result, received = asyncio.run(
        run_against_script(trace, lambda slo: {"i": next(counter), "timeout": int(slo * 1e3)})
    )
    table = result.records
    outcome = [OUTCOMES[int(code)] for code in table.outcome]
    assert len(outcome) == n
    # Sent as plain v2 JSON, with the system's own parameters for the budget.
    first = received[0]
    assert first["inputs"][0]["shape"] == [1, 3] and len(first["inputs"][0]["data"]) == 3
    assert first["parameters"]["timeout"] == 50_000
    by_i = {int(b["parameters"]["i"]): None for b in received}
    assert sorted(by_i) == list(range(n))
    counts = {k: outcome.count(k) for k in ("on_time", "late", "rejected")}
    assert counts == {"on_time": 2, "late": 2, "rejected": 6}
    reasons = [r for r in table.reason if r]
    assert sum(r == "deadline cannot be met" for r in reasons) == 2  # 429: the server's reason
    assert sum(r.startswith(ERROR_PREFIX) for r in reasons) == 4  # 500s and unreadable 200s
    assert result.errors == 4


def test_an_unknown_encoding_is_refused():
    trace = one_model_trace(np.zeros(1))
    with pytest.raises(Exception, match="unknown encoding"):
        asyncio.run(run_load("http://127.0.0.1:9", "m", trace, encoding="xml"))


def test_shared_parts_are_byte_for_byte_the_whole_body():
    import orjson

    from qosbatch.client.bodies import Parts, json_parts

    inputs = [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [0.5, -1.0, 2.0]}]
    head, tail = json_parts(inputs)
    for params in ({}, {"slo_ms": 12.5, "priority": 2}):
        whole = {"inputs": inputs, **({"parameters": params} if params else {})}
        body = Parts((head, tail(params)), "application/json")
        assert asyncio.run(body.as_bytes()) == orjson.dumps(whole)
        assert body.size == len(orjson.dumps(whole))

    class Writer:
        def __init__(self):
            self.out = b""

        async def write(self, chunk):
            self.out += bytes(chunk)

    body = Parts((b"head", b"raw-bytes"), "application/octet-stream")
    w = Writer()
    asyncio.run(body.write_with_length(w, 7))  # a shorter Content-Length cuts across parts
    assert w.out == b"headraw"
    w = Writer()
    asyncio.run(body.write_with_length(w, None))
    assert w.out == b"headraw-bytes"
