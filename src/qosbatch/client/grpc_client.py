"""The open-loop load generator over KServe v2 gRPC (``bench --protocol grpc``).

The same schedule, the same records and the same rule for late answers as the
HTTP load generator (``loadgen``), only the transport differs: one ``grpc.aio``
channel (HTTP/2 multiplexes the requests), tritonclient's generated messages,
the input as ``raw_input_contents``. A gRPC refusal is recorded as its HTTP
counterpart, so the summary reads the same: RESOURCE_EXHAUSTED (shed) as 429,
UNAVAILABLE (draining, queue full) as 503, anything else as an error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from qosbatch.client.loadgen import (
    ERROR_PREFIX,
    LoadResult,
    SloParameters,
    _Outcomes,
    _send_open_loop,
    slo_ms_parameter,
)
from qosbatch.core.errors import UserError
from qosbatch.serve.grpc_service import CODES
from qosbatch.serve.protocol import DATATYPES
from qosbatch.workloads.trace import Trace

# gRPC code -> the HTTP status the records keep: the server's table read backwards
# (RESOURCE_EXHAUSTED, both 413 and 429 there, comes back as 429, the later: a shed).
STATUS = {code: status for status, code in CODES.items()}


def grpc_target(url: str) -> str:
    """``host:port`` from ``grpc://host:port`` or ``host:port``."""
    target = url.removeprefix("grpc://").rstrip("/")
    if "://" in target or ":" not in target:
        raise UserError(f"a gRPC --url is host:port or grpc://host:port, got {url!r}")
    return target


def set_parameter(entry: Any, value: Any) -> None:
    """One InferParameter from a Python value, as tritonclient sets them."""
    if isinstance(value, bool):
        entry.bool_param = value
    elif isinstance(value, int):
        entry.int64_param = value
    elif isinstance(value, float):
        entry.double_param = value
    else:
        entry.string_param = str(value)


async def _template(stub: Any, model: str) -> Any:
    """A request for ``model`` with one random sample, built from its metadata."""
    try:
        meta = await stub.ModelMetadata(pb.ModelMetadataRequest(name=model), timeout=10)
    except grpc.aio.AioRpcError as exc:
        raise UserError(f"model {model!r}: {exc.code().name}: {exc.details()}") from None
    spec = meta.inputs[0]
    if spec.datatype not in DATATYPES:
        raise UserError(f"model {model!r} takes {spec.datatype}, which bench cannot generate")
    shape = [1 if d == -1 else int(d) for d in spec.shape]
    sample = np.random.default_rng(0).standard_normal(shape).astype(DATATYPES[spec.datatype])
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name=spec.name, datatype=spec.datatype, shape=shape)
    request.raw_input_contents.append(sample.tobytes())
    return request


async def run_grpc_load(
    target: str,
    model: str,
    trace: Trace,
    *,
    grace_s: float = 10.0,
    progress: Callable[[int, int], None] | None = None,
    slo_parameters: SloParameters = slo_ms_parameter,
    stream: bool = False,
) -> LoadResult:
    """Send ``trace`` (one model's requests) to the gRPC server at ``target`` open-loop.

    ``stream``: every request on one ModelStreamInfer call (Triton's streaming API, as
    ``tritonclient.grpc``'s ``async_stream_infer`` sends), each matched to its answer
    by its ``id``; else one ModelInfer call per request.
    """
    if not len(trace):
        raise UserError("the workload has no requests")
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        template = await _template(stub, model)
        outcomes = _Outcomes.of(len(trace))
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.05
        slos = trace.slo_ms.tolist()
        opened = _Stream(stub, outcomes, lambda: loop.time() - start) if stream else None

        async def one(i: int) -> None:
            request = pb.ModelInferRequest()
            request.CopyFrom(template)
            for key, value in slo_parameters(slos[i]).items():
                set_parameter(request.parameters[key], value)
            if opened is not None:
                await opened.send(request, i)
            else:
                await _call(stub, request, outcomes, i, lambda: loop.time() - start)

        try:
            await _send_open_loop(trace.time_s.tolist(), one, start, grace_s, progress)
        finally:
            if opened is not None:
                await opened.close()
        wall = loop.time() - start
    outcomes.unanswered(wall, grace_s)
    errors = sum(1 for r in outcomes.reason if r.startswith(ERROR_PREFIX))
    return LoadResult(outcomes.records(trace, model), errors, wall)


class _Stream:
    """One ModelStreamInfer call: requests written in order, answers matched by ``id``."""

    def __init__(self, stub: Any, outcomes: _Outcomes, now: Callable[[], float]) -> None:
        self.outcomes = outcomes
        self.now = now
        self.outbox: asyncio.Queue[Any] = asyncio.Queue()
        self.waiting: dict[str, asyncio.Future[None]] = {}
        self.rpc = stub.ModelStreamInfer(self._requests())
        self.reader = asyncio.ensure_future(self._read())

    async def _requests(self) -> Any:
        while (request := await self.outbox.get()) is not None:
            yield request

    async def send(self, request: Any, i: int) -> None:
        """Send request ``i`` on the stream and wait for its answer to be recorded."""
        request.id = key = str(i)
        answered = self.waiting[key] = asyncio.get_running_loop().create_future()
        self.outbox.put_nowait(request)
        await answered

    async def _read(self) -> None:
        outcomes = self.outcomes
        try:
            async for reply in self.rpc:
                response = reply.infer_response
                answered = self.waiting.pop(response.id, None)
                if answered is None:
                    continue  # (an id it did not send: nothing to record it against)
                i = int(response.id)
                if reply.error_message:
                    name, _, text = reply.error_message.partition(": ")
                    code = _CODE_NAMES.get(name)
                    if code is None:  # (not "CODE: reason": all of it is the reason)
                        code, text = grpc.StatusCode.UNKNOWN, reply.error_message
                    _record(outcomes, i, self.now(), code=code, text=text)
                else:
                    _record(outcomes, i, self.now(), response)
                answered.set_result(None)
        except grpc.aio.AioRpcError as exc:  # the stream itself ended: all still waiting fail
            for key, answered in self.waiting.items():
                i = int(key)
                outcomes.done_s[i] = self.now()
                outcomes.reason[i] = f"{ERROR_PREFIX}gRPC stream {exc.code().name}: {exc.details()}"
                answered.set_result(None)
            self.waiting.clear()

    async def close(self) -> None:
        """No more requests: let the server answer those in flight, then end."""
        self.outbox.put_nowait(None)
        await self.reader


_CODE_NAMES = {code.name: code for code in grpc.StatusCode}


async def _call(
    stub: Any, request: Any, outcomes: _Outcomes, i: int, now: Callable[[], float]
) -> None:
    """Send request ``i`` and record its answer, or why there was none."""
    try:
        response = await stub.ModelInfer(request)
    except grpc.aio.AioRpcError as exc:
        _record(outcomes, i, now(), code=exc.code(), text=exc.details())
        return
    _record(outcomes, i, now(), response)


def _record(
    outcomes: _Outcomes,
    i: int,
    done_s: float,
    response: Any = None,
    code: grpc.StatusCode | None = None,
    text: str | None = None,
) -> None:
    """Request ``i``'s end, a call's or a stream's: its response, or a refusal's code and
    reason (a shed or a full queue is a rejection, anything else an error)."""
    outcomes.done_s[i] = done_s
    if code is None:
        outcomes.status[i] = 200
        outcomes.batch[i] = int(response.parameters["batch_size"].int64_param)
        return
    status = outcomes.status[i] = STATUS.get(code, 0)
    text = text or code.name
    shed = status in (429, 503)
    outcomes.reason[i] = text if shed else f"{ERROR_PREFIX}gRPC {code.name}: {text}"
