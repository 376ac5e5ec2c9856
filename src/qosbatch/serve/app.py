"""The HTTP face of the server: KServe v2 routes on Starlette, ``/metrics`` and an OpenAPI document.

Thin by design: a handler looks the model up, reads the body within the size
limit, lets ``protocol`` decode it, hands the tensor to the model's batcher and
encodes whatever ``Answer`` comes back. Every refusal is ``{"error": reason}``
with a 4xx or 5xx status, as Triton answers, and none of them stops the server.
"""

from __future__ import annotations

import inspect
import logging
import re
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from qosbatch.serve.front import Front, admit
from qosbatch.serve.openapi import document
from qosbatch.serve.protocol import (
    HEADER_LENGTH,
    ProtocolError,
    decode_admission,
    decode_infer,
    encode_infer,
    error_body,
    header_size,
    parse_budget_header,
)
from qosbatch.serve.server import ServedModel, Server

log = logging.getLogger("qosbatch.serve")
_INFER_PATH = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")


def _error(status: int, reason: str, **extra: Any) -> Response:
    return Response(error_body(reason, **extra), status, media_type="application/json")


def build_app(server: Server, front: Front | None = None) -> ASGIApp:
    """The ASGI app serving ``server``'s models (through ``front``, when gRPC shares it)."""
    return _V2Routes(server, front or Front(server))


class _V2Routes:
    """The routes of one server: KServe v2, health, ``/metrics`` and the OpenAPI document.

    A handler per route, each a method. The instance is the ASGI app: a call sends
    POST .../infer to ``infer`` directly and everything else through Starlette. (An
    instance with an async ``__call__``, not a bound method: uvicorn tells ASGI 3 from
    ASGI 2 by that, and took a bound method for ASGI 2.)
    """

    def __init__(self, server: Server, front: Front) -> None:
        self.server = server
        self.front = front
        self.limit = server.config.max_body_bytes
        self.app = Starlette(
            routes=self.routes(), exception_handlers={HTTPException: self.http_error}
        )

    def routes(self) -> list[Route]:
        routes = [Route("/v2", self.server_metadata, methods=["GET"])]
        routes += [
            Route("/v2/health/live", self.live, methods=["GET"]),
            Route("/v2/health/ready", self.ready, methods=["GET"]),
        ]
        for base in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
            routes += [
                Route(base, self.model_metadata, methods=["GET"]),
                Route(f"{base}/ready", self.model_ready, methods=["GET"]),
                Route(f"{base}/infer", self.infer, methods=["POST"]),
            ]
        routes += [
            Route("/metrics", self.metrics, methods=["GET"]),
            Route("/openapi.json", self.openapi, methods=["GET"], include_in_schema=False),
        ]
        return routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """POST .../infer straight to ``infer``; every other request through Starlette.

        Why: on a core the model shares, Starlette's middleware stack and route matching
        were about a tenth of the front end's CPU per request (py-spy, alexnet at 3x
        the limit), and infer needs none of it: it answers every error itself.
        """
        if scope["type"] == "http" and scope["method"] == "POST":
            hit = _INFER_PATH.fullmatch(scope["path"])
            if hit is not None:
                model, version = hit.groups()
                params = (
                    {"model": model} if version is None else {"model": model, "version": version}
                )
                scope["path_params"] = params
                try:
                    response = await self.infer(Request(scope, receive))
                except Exception as exc:  # as Starlette's ServerErrorMiddleware would: 500
                    log.exception("infer failed")
                    response = _error(500, f"internal error: {type(exc).__name__}: {exc}")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def lookup(self, request: Request) -> ServedModel:
        return self.front.lookup(request.path_params["model"], request.path_params.get("version"))

    async def server_metadata(self, request: Request) -> Response:
        """Server metadata (KServe v2).
        ---
        responses:
          200: {description: "name, version and protocol extensions"}
        """
        return JSONResponse(self.front.server_metadata())

    async def live(self, request: Request) -> Response:
        """Liveness: 200 while the process serves HTTP.
        ---
        responses:
          200: {description: live}
        """
        return JSONResponse({"live": True})

    async def ready(self, request: Request) -> Response:
        """Readiness: 200 when every model has a worker up and the server is not draining.
        ---
        responses:
          200: {description: ready}
          503: {description: "starting, draining, or a model has no worker"}
        """
        ok = self.server.ready
        return JSONResponse({"ready": ok}, 200 if ok else 503)

    async def model_metadata(self, request: Request) -> Response:
        """Model metadata: inputs and outputs with name, datatype and shape (-1: the batch).
        ---
        responses:
          200: {description: metadata}
          404: {description: unknown model or version}
        """
        try:
            m = self.lookup(request)
        except ProtocolError as exc:
            return _error(exc.status, exc.reason)
        return JSONResponse(self.front.model_metadata(m))

    async def model_ready(self, request: Request) -> Response:
        """Model readiness.
        ---
        responses:
          200: {description: ready}
          503: {description: not ready}
          404: {description: unknown model}
        """
        try:
            m = self.lookup(request)
        except ProtocolError as exc:
            return _error(exc.status, exc.reason)
        ok = self.front.model_ready(m)
        return JSONResponse({"name": m.name, "ready": ok}, 200 if ok else 503)

    async def infer(self, request: Request) -> Response:
        """Inference (KServe v2), JSON or Triton's binary tensor extension.
        ---
        description: >
          The latency budget comes from parameters.slo_ms, Triton's parameters.timeout
          (microseconds), the x-slo-ms header, or the model's default SLO. Triton's
          parameters.priority (1 is the highest) orders requests ahead of deadlines.
        responses:
          200: {description: the outputs}
          400: {description: "malformed request, wrong shape or datatype"}
          404: {description: unknown model or version}
          413: {description: body over the size limit}
          429: {description: "shed: it cannot meet its deadline (the reason says why)"}
          500: {description: "the model failed or its worker died (the reason says which)"}
          503: {description: "queue full, or the server is shutting down"}
        """
        front = self.front
        params = request.path_params
        try:
            m = front.enter(params["model"], params.get("version"))
            try:
                return await self._infer(request, m)
            finally:
                front.leave()
        except ProtocolError as exc:
            return _error(exc.status, exc.reason, **exc.extra)

    async def _infer(self, request: Request, m: ServedModel) -> Response:
        body = _Body(request, self.limit)
        header_length = request.headers.get(HEADER_LENGTH)
        if header_length is not None:
            # Binary extension: the JSON header comes first. Shed from it, before the
            # tensor's bytes are read or decoded: a 429 then costs the parse of a few
            # hundred bytes, and uvicorn discards the rest of the body unread.
            size = header_size(header_length, body.declared)
            head = await body.head(size)
            if len(head) < size:  # the body ended inside the header: say so as for a whole body
                header_size(header_length, len(head))
            budget, priority = decode_admission(head)
            budget = budget or parse_budget_header(request.headers.get("x-slo-ms"))
            admit(m, budget, priority)
        req = decode_infer(
            await body.whole(), header_length, m.input, m.outputs, m.config.max_batch
        )
        if header_length is None:  # plain JSON: the budget is known once the body is parsed
            budget = req.budget_s or parse_budget_header(request.headers.get("x-slo-ms"))
            admit(m, budget, req.priority)
        answer = await self.front.run(m, req, budget)
        assert answer.output is not None  # (for the type checker: run raises otherwise)
        payload, headers = encode_infer(
            m.name,
            req,
            {m.outputs[0].name: answer.output},
            {"outcome": answer.outcome, "batch_size": answer.batch_size},
        )
        return Response(payload, headers=headers)

    async def metrics(self, request: Request) -> Response:
        """Prometheus metrics.
        ---
        responses:
          200: {description: text exposition format}
        """
        body = self.server.telemetry.render()
        if inspect.isawaitable(body):  # (a deployment gathers its replicas' metrics)
            body = await body
        return Response(body, media_type=self.server.telemetry.content_type)

    async def openapi(self, request: Request) -> Response:
        """This document.
        ---
        responses:
          200: {description: OpenAPI 3 document}
        """
        return JSONResponse(document(self.app.routes, self.server.models))

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, f"{exc.detail}: {request.method} {request.url.path}")


class _Body:
    """A request body read in chunks within the size limit: its head first, then the rest.

    Refused with 413 as soon as it passes the limit, declared or streamed.
    """

    def __init__(self, request: Request, limit: int) -> None:
        self.limit = limit
        self.declared: int | None = None
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                self.declared = int(declared)
            except ValueError:
                raise ProtocolError(
                    400, f"Content-Length must be an integer, got {declared!r}"
                ) from None
            if self.declared > limit:
                raise ProtocolError(
                    413, f"the body has {self.declared} bytes; the limit is {limit}"
                )
        self._stream = request.stream()
        self._chunks: list[bytes] = []
        self._size = 0
        self._ended = False

    async def _more(self) -> bool:
        try:
            chunk = await anext(self._stream)
        except StopAsyncIteration:
            self._ended = True
            return False
        self._size += len(chunk)
        if self._size > self.limit:
            raise ProtocolError(413, f"the body passed the limit of {self.limit} bytes")
        self._chunks.append(chunk)
        return True

    async def head(self, n: int) -> bytes:
        """The first ``n`` bytes (fewer if the body is shorter), reading no more than needed."""
        while self._size < n and await self._more():
            pass
        first = self._chunks[0] if self._chunks else b""
        if len(first) >= n:
            return first[:n]
        return b"".join(self._chunks)[:n]

    async def whole(self) -> bytes:
        while not self._ended and await self._more():
            pass
        return self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
