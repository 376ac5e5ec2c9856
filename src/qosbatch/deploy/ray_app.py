"""The Ray Serve application: one deployment per model, one ingress speaking KServe v2.

Nothing here re-implements the server. A model replica is a ``Server`` of one
model whose worker runs in the replica's own process (``InProcessWorker``),
pinned to cores it claims on its node (``deploy.pinning``: Ray gives a count of
CPUs, no ids), so the batcher and the Policy are the very objects ``qosbatch
serve`` runs, with per-request deadlines, EDF and shedding.
The ingress mounts the very Starlette app of ``qosbatch serve``
(``serve.app.build_app``) over a facade whose models submit to the replicas
through Ray's deployment handles; Ray spreads requests over a model's replicas.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prometheus_client import Gauge
from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from qosbatch.serve.answer import Answer
from qosbatch.serve.in_process_worker import InProcessWorker
from qosbatch.serve.protocol import TensorSpec
from qosbatch.serve.server import ModelConfig, ServedModel, Server, ServerConfig
from qosbatch.serve.telemetry import Telemetry

# Ray Serve admits only a few requests per replica at a time by default (5) and queues
# the rest ahead of the replica, where no deadline is seen: the batcher must see them all.
MAX_ONGOING = 10_000


@serve.deployment(graceful_shutdown_timeout_s=5, max_ongoing_requests=MAX_ONGOING)
class ModelReplica:
    """One replica of one model: the qosbatch batcher and policy, the model in-process."""

    def __init__(self, config: ModelConfig, max_queue: int, pin: bool = True) -> None:
        self.claim = None  # held for the replica's life: its cores stay ours
        if pin:
            import ray

            from qosbatch.deploy.pinning import pin_replica

            session = ray.get_runtime_context().get_session_name()
            self.claim = pin_replica(f"model-{config.ref.name}", len(config.cpus), session)
        if self.claim is not None:  # the ids (the count, hence the threads, is the plan's)
            config = dataclasses.replace(config, cpus=self.claim.cpus)
        self.config = config
        self.server = Server(
            ServerConfig((config,), max_queue=max_queue), worker_kind=InProcessWorker
        )
        self._started: asyncio.Task[None] | None = None

    async def _ready(self) -> ServedModel:
        if self._started is None:
            self._started = asyncio.get_running_loop().create_task(self.server.start())
        await asyncio.shield(self._started)
        return self.server.models[self.config.ref.name]

    async def describe(self) -> dict[str, Any]:
        m = await self._ready()
        return {
            "input": m.input,
            "outputs": m.outputs,
            "platform": m.platform,
            "latency_source": m.latency_source,
        }

    async def infer(self, tensor: np.ndarray, budget_s: float, priority: int) -> Answer:
        m = await self._ready()
        return await m.batcher.submit(tensor, budget_s, priority)

    async def metrics(self) -> bytes:
        await self._ready()
        return self.server.telemetry.render()


class _RemoteBatcher:
    """What the HTTP layer calls ``batcher``: submits to the model's replicas."""

    def __init__(self, name: str, handle: Any) -> None:
        self.name = name
        self.handle = handle
        self.ready = True

    def admit(self, budget_s: float, priority: int = 0) -> str:
        """Take everything here: a replica's own batcher sheds (its queue is over there)."""
        return ""

    async def submit(self, tensor: np.ndarray, budget_s: float, priority: int = 0) -> Answer:
        try:
            return await self.handle.infer.remote(tensor, budget_s, priority)
        except Exception as exc:  # the replica died mid-request (Ray replaces it): say so
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return Answer(500, "error", reason=f"a replica of {self.name} failed: {reason}")


class _RemoteTelemetry:
    content_type = Telemetry.content_type

    def __init__(self, handles: dict[str, Any]) -> None:
        self.handles = handles
        # The ingress's own count, kept for --max-in-flight; not rendered (the replicas' are).
        self.in_flight = Gauge("qosbatch_requests_in_flight", "", registry=None)

    async def render(self) -> bytes:
        # One replica's view per model (Ray picks which): not a sum over replicas.
        parts = await asyncio.gather(*(h.metrics.remote() for h in self.handles.values()))
        return b"".join(parts)


@dataclass
class _Facade:
    """The ``Server`` attributes the HTTP layer reads, backed by deployment handles."""

    config: ServerConfig
    telemetry: Any
    models: dict[str, ServedModel] = field(default_factory=dict)
    draining: bool = False
    ready: bool = True


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=MAX_ONGOING)
class Ingress:
    """KServe v2 over HTTP: the ``qosbatch serve`` app, its models behind Ray handles."""

    def __init__(self, configs: list[ModelConfig], handles: dict[str, Any]) -> None:
        from qosbatch.serve.app import build_app

        self.configs = {c.ref.name: c for c in configs}
        self.handles = handles
        self.facade = _Facade(ServerConfig(tuple(configs)), _RemoteTelemetry(handles))
        self.app = build_app(self.facade)  # type: ignore[arg-type]
        self._described: asyncio.Task[None] | None = None

    async def _describe(self) -> None:
        async def one(name: str) -> ServedModel:
            d = await self.handles[name].describe.remote()
            inp: TensorSpec = d["input"]
            return ServedModel(
                name,
                self.configs[name],
                _RemoteBatcher(name, self.handles[name]),  # type: ignore[arg-type]
                inp,
                tuple(d["outputs"]),
                d["platform"],
                d["latency_source"],
            )

        models = await asyncio.gather(*(one(n) for n in self.configs))
        self.facade.models.update({m.name: m for m in models})

    async def __call__(self, request: Request) -> Response:
        if self._described is None:
            self._described = asyncio.get_running_loop().create_task(self._describe())
        await asyncio.shield(self._described)
        status, headers, body = 500, [], []

        async def send(message: dict[str, Any]) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.get("headers", [])
            elif message["type"] == "http.response.body":
                body.append(message.get("body", b""))

        await self.app(request.scope, request.receive, send)
        kept = {k.decode(): v.decode() for k, v in headers if k.lower() != b"content-length"}
        return Response(b"".join(body), status_code=status, headers=kept)


def build_application(
    configs: list[ModelConfig], replicas: dict[str, int], max_queue: int, pin: bool = True
) -> Any:
    """The bound Serve application: a deployment per model, the ingress in front.

    ``pin``: each replica claims and pins its cores (False: the OS places its threads).
    """
    handles = {}
    for c in configs:
        name = c.ref.name
        handles[name] = ModelReplica.options(
            name=f"model-{name}",
            num_replicas=replicas[name],
            ray_actor_options={"num_cpus": len(c.cpus)},
        ).bind(c, max_queue, pin)
    return Ingress.bind(configs, handles)
