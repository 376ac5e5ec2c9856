"""What every transport does around the codec: which model, whether to take a request now,
whether the policy sheds it, and what its answer means.

HTTP (``app``) and gRPC (``grpc_service``) differ only in how bytes become an
``InferRequest`` and how an answer goes back. The rules in between live here once,
so that a request is judged the same whichever way it came, and both count
against one ``--max-in-flight`` bound and feed the same batcher. Every refusal
is a ``ProtocolError`` with the HTTP status; the gRPC layer maps it to a code.
"""

from __future__ import annotations

from typing import Any

import qosbatch
from qosbatch.serve.answer import Answer
from qosbatch.serve.protocol import InferRequest, ProtocolError
from qosbatch.serve.server import ServedModel, Server


class Front:
    """The shared front door of one server's models (``Server`` or a deployment's facade)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.max_in_flight = server.config.max_in_flight
        self.in_flight = 0  # infer requests between arrival and answer, all transports
        self.gauge = server.telemetry.in_flight

    def lookup(self, name: str, version: str | None) -> ServedModel:
        """The served model, or 404 saying what this server has (version: None or '1')."""
        served = self.server.models.get(name)
        if served is None:
            known = ", ".join(self.server.models) or "none"
            raise ProtocolError(404, f"unknown model {name!r}; this server serves: {known}")
        if version is not None and version != "1":
            raise ProtocolError(404, f"model {name!r} has no version {version!r}; it has '1'")
        return served

    def enter(self, name: str, version: str | None) -> ServedModel:
        """Take an infer request for ``name`` now, or refuse it (404, 503) before reading it.

        Once this returns, the request counts in flight until ``leave``.
        """
        m = self.lookup(name, version)
        if self.server.draining:
            raise ProtocolError(503, "the server is shutting down")
        if self.in_flight >= self.max_in_flight:
            # Bounded: past this many, a request is refused before its body is read,
            # instead of queueing in the event loop behind work it cannot catch up on.
            raise ProtocolError(
                503, f"{self.in_flight} requests in flight, the limit (--max-in-flight)"
            )
        self.in_flight += 1
        self.gauge.set(self.in_flight)
        return m

    def leave(self) -> None:
        self.in_flight -= 1
        self.gauge.set(self.in_flight)

    async def run(self, m: ServedModel, req: InferRequest, budget_s: float | None) -> Answer:
        """Submit a decoded request to its model's batcher; a non-200 answer is raised."""
        answer = await m.batcher.submit(req.tensor, budget_s or m.config.slo_s, req.priority)
        if answer.status != 200:
            raise ProtocolError(answer.status, answer.reason, outcome=answer.outcome)
        assert answer.output is not None
        return answer

    def model_ready(self, m: ServedModel) -> bool:
        return bool(m.batcher.ready) and not self.server.draining

    @staticmethod
    def server_metadata() -> dict[str, Any]:
        return {
            "name": "qosbatch",
            "version": qosbatch.__version__,
            "extensions": ["binary_tensor_data"],
        }

    @staticmethod
    def model_metadata(m: ServedModel) -> dict[str, Any]:
        return {
            "name": m.name,
            "versions": ["1"],
            "platform": m.platform,
            "inputs": [m.input.metadata()],
            "outputs": [o.metadata() for o in m.outputs],
            "parameters": {
                "policy": m.config.policy.label,
                "slo_ms": m.config.slo_s * 1e3,
                "cores": len(m.config.cpus),
                "workers": m.config.workers,
                "latency_model": m.latency_source,
            },
        }


def admit(m: ServedModel, budget_s: float | None, priority: int) -> None:
    """Shed a request now (429) if the policy says it cannot make its budget."""
    reason = m.batcher.admit(budget_s or m.config.slo_s, priority)
    if reason:
        raise ProtocolError(429, reason, outcome="rejected")
