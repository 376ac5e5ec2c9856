"""An open-loop load generator for KServe v2 servers: each request leaves at its trace time.

Open loop, as real users arrive: a request is sent at its scheduled time whether
or not earlier ones were answered, so a slow server meets a growing backlog
instead of a politely waiting client (the closed-loop error that hides
overload). Each request carries its own budget (``parameters.slo_ms``, from the
trace), and its outcome is judged from the client's side: the latency runs
from the scheduled send time to the last byte of the answer, so time spent
waiting for a connection counts too.

The run writes one ``Record`` per request, the simulator's format, so the same
``qosbatch.metrics.summarize`` turns a live run into the same numbers and JSON
keys as a simulated one. Bounded: at most the trace's requests, and the run ends
``grace_s`` after the last scheduled send, answering what is still in flight as
an error ("no answer in time").
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import numpy as np
import orjson

from qosbatch.client.bodies import Parts, json_parts
from qosbatch.core.errors import UserError
from qosbatch.core.requests import Record, RecordTable
from qosbatch.serve.protocol import BINARY_CONTENT_TYPE, DATATYPES, HEADER_LENGTH
from qosbatch.workloads.trace import Trace

ERROR_PREFIX = "error: "  # reasons of failures that were not the server's deliberate rejection
Encoding = Literal["binary", "json"]
SloParameters = Callable[[float], dict[str, Any]]  # a request's budget (ms) -> its parameters


def slo_ms_parameter(slo_ms: float) -> dict[str, Any]:
    """qosbatch's own field; a server without a deadline field ignores it."""
    return {"slo_ms": slo_ms}


@dataclass(frozen=True)
class LoadResult:
    records: RecordTable
    errors: int  # requests that ended in an error (not a 429/503 rejection)
    wall_s: float


async def _input_spec(
    session: aiohttp.ClientSession, url: str, model: str
) -> tuple[str, str, list[int]]:
    try:
        async with session.get(f"{url}/v2/models/{model}") as r:
            text = await r.text()
            if r.status != 200:
                raise UserError(f"model {model!r}: the server answered {r.status}: {text[:200]}")
            spec = json.loads(text)["inputs"][0]
    except aiohttp.ClientError as exc:
        raise UserError(f"cannot reach the server at {url}: {exc}") from None
    shape = [1 if d == -1 else int(d) for d in spec["shape"]]
    if spec["datatype"] not in DATATYPES:
        raise UserError(f"model {model!r} takes {spec['datatype']}, which bench cannot generate")
    return spec["name"], spec["datatype"], shape


def _header(
    name: str, datatype: str, shape: list[int], nbytes: int, parameters: dict[str, Any]
) -> bytes:
    """The JSON part of a binary-extension request; the raw tensor follows it."""
    head = {
        "inputs": [
            {
                "name": name,
                "shape": shape,
                "datatype": datatype,
                "parameters": {"binary_data_size": nbytes},
            }
        ],
        "parameters": {**parameters, "binary_data_output": True},
    }
    return orjson.dumps(head)


def _batch_size(body: bytes, size: int) -> int:
    """The batch the server says the request ran in (qosbatch answers it; 0: not said)."""
    params = orjson.loads(body[:size]).get("parameters") or {}
    return int(params.get("batch_size", 0))


async def run_load(
    url: str,
    model: str,
    trace: Trace,
    *,
    max_connections: int = 256,
    grace_s: float = 10.0,
    progress: Callable[[int, int], None] | None = None,
    encoding: Encoding = "binary",
    slo_parameters: SloParameters = slo_ms_parameter,
) -> LoadResult:
    """Send ``trace`` (one model's requests) to ``url`` open-loop; one record per request.

    ``encoding`` "json" sends plain v2 JSON, for servers without Triton's binary
    extension; ``slo_parameters`` turns a request's budget into the ``parameters``
    the server reads it from (qosbatch's ``slo_ms``, Triton's ``timeout``, or none).
    Either way a reply after the budget counts as late: one rule for every server.
    """
    if encoding not in ("binary", "json"):
        raise UserError(f"unknown encoding {encoding!r}; choose binary or json")
    if not len(trace):
        raise UserError("the workload has no requests")
    url = url.rstrip("/")
    connector = aiohttp.TCPConnector(limit=max_connections)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5.0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        encode = _encoder(*await _input_spec(session, url, model), encoding, slo_parameters)
        outcomes = _Outcomes.of(len(trace))
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.05
        infer = f"{url}/v2/models/{model}/infer"
        slos = trace.slo_ms.tolist()

        async def one(i: int) -> None:
            await outcomes.post(session, infer, i, *encode(slos[i]), lambda: loop.time() - start)

        await _send_open_loop(trace.time_s.tolist(), one, start, grace_s, progress)
        wall = loop.time() - start
    outcomes.unanswered(wall, grace_s)
    errors = sum(1 for r in outcomes.reason if r.startswith(ERROR_PREFIX))
    return LoadResult(outcomes.records(trace, model), errors, wall)


Request = tuple[Parts, dict[str, str]]  # a body and its headers


def _encoder(
    name: str,
    datatype: str,
    shape: list[int],
    encoding: Encoding,
    slo_parameters: SloParameters,
) -> Callable[[float], Request]:
    """One request for a budget (ms): the same random sample every time, in ``encoding``.

    The sample is encoded once; every request shares its bytes (``bodies.Parts``).
    """
    sample = np.random.default_rng(0).standard_normal(shape).astype(DATATYPES[datatype])
    raw = sample.tobytes()
    head, tail = json_parts(
        [{"name": name, "shape": shape, "datatype": datatype, "data": sample.reshape(-1).tolist()}]
    )

    def request(slo_ms: float) -> Request:
        parameters = slo_parameters(slo_ms)
        if encoding == "json":
            return Parts((head, tail(parameters)), "application/json"), {}
        binary = _header(name, datatype, shape, len(raw), parameters)
        return Parts((binary, raw), BINARY_CONTENT_TYPE), {HEADER_LENGTH: str(len(binary))}

    return request


async def _send_open_loop(
    times: list[float],
    one: Callable[[int], Coroutine[Any, Any, None]],
    start: float,
    grace_s: float,
    progress: Callable[[int, int], None] | None,
) -> None:
    """Start request ``i`` at ``start + times[i]`` whatever came back; cancel the rest at the end.

    What is still in flight ``grace_s`` after the last send is cancelled (no answer).
    """
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[None]] = []
    for i, t in enumerate(times):
        delay = start + t - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(loop.create_task(one(i)))
        if progress is not None and i % 256 == 0:
            progress(i, len(times))
    _, pending = await asyncio.wait(tasks, timeout=grace_s) if tasks else (set(), set())
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


@dataclass
class _Outcomes:
    """What became of each request, by index: every send writes its own slot."""

    done_s: list[float]  # since the run's start; NaN: no answer yet
    status: list[int]  # HTTP status; 0: none (a connection error or an unreadable 200)
    reason: list[str]
    batch: list[int]  # the batch the server says it ran in; 0: not said

    @classmethod
    def of(cls, n: int) -> _Outcomes:
        return cls([math.nan] * n, [0] * n, [""] * n, [0] * n)

    async def post(
        self,
        session: aiohttp.ClientSession,
        url: str,
        i: int,
        body: Parts,
        headers: dict[str, str],
        now: Callable[[], float],
    ) -> None:
        """Send request ``i`` and record its answer, or why there was none."""
        try:
            async with session.post(url, data=body, headers=headers) as r:
                answer = await r.read()
                self.done_s[i] = now()
                self.status[i] = r.status
                if r.status != 200:
                    self.reason[i] = _reason(r.status, answer)
                    return
                try:
                    size = int(r.headers.get(HEADER_LENGTH, len(answer)))
                    self.batch[i] = _batch_size(answer, size)
                except ValueError:
                    self.status[i] = 0  # a 200 that is not a v2 answer is no answer
                    self.reason[i] = f"{ERROR_PREFIX}unreadable answer: {answer[:120]!r}"
        except aiohttp.ClientError as exc:
            self.done_s[i] = now()
            self.reason[i] = f"{ERROR_PREFIX}{type(exc).__name__}: {exc}"

    def unanswered(self, wall_s: float, grace_s: float) -> None:
        """Requests cancelled at the end: an error at the run's end."""
        for i, done in enumerate(self.done_s):
            if math.isnan(done):
                self.done_s[i] = wall_s
                self.reason[i] = f"{ERROR_PREFIX}no answer within {grace_s:g} s of the last send"

    def records(self, trace: Trace, model: str) -> RecordTable:
        return _records(trace, model, self.done_s, self.status, self.reason, self.batch)


def _reason(status: int, body: bytes) -> str:
    try:
        text = str(json.loads(body).get("error", body[:200]))
    except ValueError:
        text = body[:200].decode(errors="replace")
    if status in (429, 503):
        return text
    return f"{ERROR_PREFIX}HTTP {status}: {text}"


def _records(
    trace: Trace,
    model: str,
    done_s: list[float],
    status: list[int],
    reason: list[str],
    batch: list[int],
) -> RecordTable:
    rows = []
    for i, (t, slo) in enumerate(zip(trace.time_s.tolist(), trace.slo_ms.tolist(), strict=True)):
        deadline = t + slo / 1e3
        served = status[i] == 200
        rows.append(
            Record(
                request_id=i,
                model=model,
                arrival_s=t,
                deadline_s=deadline,
                dispatch_s=done_s[i] if served else math.nan,
                completion_s=done_s[i],
                outcome=("on_time" if done_s[i] <= deadline else "late") if served else "rejected",
                reason="" if served else reason[i],
                batch_size=batch[i] if served else 0,
                cores=0,
                worker=-1,
            )
        )
    return RecordTable.from_records(rows)
