"""The KServe v2 gRPC face of the server, as Triton speaks it (``inference.GRPCInferenceService``).

Why gRPC beside HTTP: Triton, MLServer and KServe serve both, and many production
clients (``tritonclient.grpc``) speak gRPC for its lower cost per request. The
messages and the servicer base are tritonclient's generated code, not a copy of
the protocol. The server runs on ``grpc.aio`` in the HTTP server's event loop,
and every request goes through the same ``Front`` and the same codec checks
(``protocol.infer_request``) as over HTTP: a gRPC message is put in the v2 JSON
head form and judged by the same rules, then submitted to the same batcher, so a
policy sees one queue whatever the transport. Refusals keep their reasons; the
HTTP status becomes the gRPC code Triton would answer with.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from qosbatch.core.errors import UserError
from qosbatch.serve.front import Front, admit
from qosbatch.serve.protocol import ProtocolError, answered_outputs, datatype_of, infer_request

log = logging.getLogger("qosbatch.serve")

# The HTTP status of a refusal -> the gRPC code that says the same.
CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,  # shed: the reason says why
    500: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,  # draining, queue full, past --max-in-flight
}
# A datatype's typed field in InferTensorContents (FP16 has none: raw bytes only).
CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}


def _value(p: Any) -> Any:
    """An InferParameter's value (bool, int, float or str), None when none is set."""
    which = p.WhichOneof("parameter_choice")
    return None if which is None else getattr(p, which)


def _params(entries: Any) -> dict[str, Any]:
    return {k: _value(v) for k, v in entries.items()}


def as_v2_head(request: Any) -> tuple[dict[str, Any], memoryview]:
    """A ModelInferRequest in the v2 JSON head form, and the raw bytes of its input.

    ``raw_input_contents`` becomes the binary extension's ``binary_data_size`` (so the
    size is checked against shape and datatype as for HTTP); typed ``contents`` become
    ``data``. Malformed messages come out as heads the codec refuses with a reason.
    """
    raw = request.raw_input_contents
    inputs = []
    for i, t in enumerate(request.inputs):
        spec: dict[str, Any] = {
            "name": t.name,
            "datatype": t.datatype,
            "shape": list(t.shape),
            "parameters": _params(t.parameters),
        }
        if i < len(raw):
            spec["parameters"]["binary_data_size"] = len(raw[i])
        elif t.HasField("contents") and t.datatype in CONTENTS:
            spec["data"] = list(getattr(t.contents, CONTENTS[t.datatype]))
        inputs.append(spec)
    head: dict[str, Any] = {"inputs": inputs, "parameters": _params(request.parameters)}
    if request.id:
        head["id"] = request.id
    if request.outputs:
        head["outputs"] = [{"name": o.name} for o in request.outputs]
    binary = raw[0] if len(raw) == 1 else b"".join(raw)
    return head, memoryview(binary)


class InferenceService(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """ServerLive/Ready, ModelReady, Server/ModelMetadata and ModelInfer over one ``Front``.

    The methods keep the proto's names: the generated base dispatches by them.

    ModelStreamInfer carries many requests on one call (below). The other methods of
    the service (repository, shared memory, statistics) answer UNIMPLEMENTED, from the
    generated base.
    """

    def __init__(self, front: Front) -> None:
        self.front = front

    async def ServerLive(self, request: Any, context: Any) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=self.front.server.ready)

    async def ModelReady(self, request: Any, context: Any) -> Any:
        try:
            m = self.front.lookup(request.name, request.version or None)
        except ProtocolError as exc:
            await _abort(context, exc)
        return pb.ModelReadyResponse(ready=self.front.model_ready(m))

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        meta = self.front.server_metadata()
        return pb.ServerMetadataResponse(
            name=meta["name"], version=meta["version"], extensions=meta["extensions"]
        )

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        try:
            m = self.front.lookup(request.name, request.version or None)
        except ProtocolError as exc:
            await _abort(context, exc)
        meta = self.front.model_metadata(m)
        tensor = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=meta["name"],
            versions=meta["versions"],
            platform=meta["platform"],
            inputs=[tensor(**t) for t in meta["inputs"]],
            outputs=[tensor(**t) for t in meta["outputs"]],
        )

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        try:
            return await self._infer(request)
        except ProtocolError as exc:
            await _abort(context, exc)
        except Exception as exc:  # as HTTP answers 500: say what failed, keep serving
            log.exception("gRPC infer failed")
            await context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")

    async def ModelStreamInfer(
        self, requests: AsyncIterator[Any], context: Any
    ) -> AsyncIterator[Any]:
        """Triton's streaming inference: requests in on one call, each answer out when done.

        Why: a unary call pays gRPC's per-call setup (a new HTTP/2 stream, its headers,
        a completion-queue round trip) for every request; a stream pays it once, so a
        client that keeps one open costs the server less per request. Each request is
        judged, admitted and batched exactly as ModelInfer's (the same ``_infer``), and
        its answer comes back in completion order with the request's ``id``, as Triton
        answers. A refusal is a response with ``error_message`` (the reason, prefixed
        by the gRPC code ModelInfer would end with) and the stream goes on, as Triton
        does for a non-decoupled model; nothing accepted goes unanswered while the
        client keeps the stream open.
        """
        done: asyncio.Queue[Any] = asyncio.Queue()
        running: set[asyncio.Task[None]] = set()

        async def one(request: Any) -> None:
            try:
                reply = pb.ModelStreamInferResponse(infer_response=await self._infer(request))
            except ProtocolError as exc:
                reply = _stream_error(request, f"{_code(exc).name}: {exc.reason}")
            except Exception as exc:  # as ModelInfer answers INTERNAL: say what, go on
                log.exception("gRPC stream infer failed")
                reply = _stream_error(request, f"INTERNAL: {type(exc).__name__}: {exc}")
            done.put_nowait(reply)

        async def read() -> None:
            try:
                async for request in requests:
                    task = asyncio.ensure_future(one(request))
                    running.add(task)
                    task.add_done_callback(running.discard)
                while running:  # the client has sent all: answer what is in flight
                    await asyncio.wait(list(running))
            finally:
                done.put_nowait(None)  # (also when reading failed: no wait for nothing)

        reader = asyncio.ensure_future(read())
        try:
            while (reply := await done.get()) is not None:
                yield reply
            await reader  # (raises what reading raised)
        finally:  # the client went away: stop reading, and stop waiting for answers
            reader.cancel()
            for task in list(running):
                task.cancel()

    async def _infer(self, request: Any) -> Any:
        front = self.front
        m = front.enter(request.model_name, request.model_version or None)
        try:
            head, binary = as_v2_head(request)
            req = infer_request(head, binary, m.input, m.outputs, m.config.max_batch)
            admit(m, req.budget_s, req.priority)
            answer = await front.run(m, req, req.budget_s)
        finally:
            front.leave()
        assert answer.output is not None  # (run raises otherwise)
        response = pb.ModelInferResponse(model_name=m.name, model_version="1", id=req.id or "")
        response.parameters["outcome"].string_param = answer.outcome
        response.parameters["batch_size"].int64_param = answer.batch_size
        for name, array in answered_outputs(req, {m.outputs[0].name: answer.output}):
            response.outputs.add(name=name, datatype=datatype_of(array.dtype), shape=array.shape)
            response.raw_output_contents.append(array.tobytes())
        return response


def _stream_error(request: Any, message: str) -> Any:
    """A stream's refusal of one request: its reason, and its id to match it by."""
    response = pb.ModelInferResponse(model_name=request.model_name, id=request.id)
    return pb.ModelStreamInferResponse(error_message=message, infer_response=response)


def _code(exc: ProtocolError) -> grpc.StatusCode:
    """The gRPC code that says what the refusal's HTTP status says."""
    return CODES.get(exc.status, grpc.StatusCode.UNKNOWN)


async def _abort(context: Any, exc: ProtocolError) -> None:
    """End the call with the refusal's code and reason (raises, as ``abort`` does)."""
    await context.abort(_code(exc), exc.reason)


class GrpcListener:
    """The gRPC server of a ``Front``: bound at construction, serving once started."""

    def __init__(self, front: Front, host: str, port: int) -> None:
        config = front.server.config
        # Calls that arrive faster than the loop picks them up wait in gRPC's core; past
        # its default of 1,000 it cancels them with no reason (seen under a burst of 2,000).
        # Past --max-in-flight we refuse with one (UNAVAILABLE) instead, as HTTP does.
        pending = max(8192, 4 * config.max_in_flight)
        self.server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", config.max_body_bytes),
                ("grpc.max_send_message_length", -1),
                ("grpc.so_reuseport", 0),  # a busy port fails here, as HTTP's does
                ("grpc.server.max_pending_requests", pending),
                ("grpc.server.max_pending_requests_hard_limit", pending),
            ]
        )
        pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceService(front), self.server)
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            self.port = self.server.add_insecure_port(address)
        except RuntimeError as exc:
            raise UserError(f"cannot listen for gRPC on {address}: {exc}") from None
        if self.port == 0:  # (older grpcio reports a failed bind as port 0)
            raise UserError(f"cannot listen for gRPC on {address}")

    async def start(self) -> None:
        await self.server.start()

    async def stop(self, grace_s: float) -> None:
        """Stop taking calls; those still running get ``grace_s`` to finish."""
        await self.server.stop(grace_s)
