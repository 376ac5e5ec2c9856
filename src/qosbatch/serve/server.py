"""A live server: its models, their batchers and workers, start, drain and stop.

``Server`` owns what outlives a request: one ``Batcher`` per model, each with
its worker processes and a latency table (the profile's fitted model when the
user gives one, otherwise a short calibration on the worker at start-up, which
the ``slo`` policy then corrects online from observed batches). ``run`` puts
it behind uvicorn and turns SIGTERM or Ctrl-C into a drain: new requests get
503, everything accepted is answered, then the process exits 0.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType

import numpy as np
import uvicorn

from qosbatch.core.errors import UserError
from qosbatch.core.profile import Profile
from qosbatch.engine.queue import split_evenly
from qosbatch.latency.amdahl import AmdahlModel
from qosbatch.latency.table import DEFAULT_MAX_BATCH, LatencyTable
from qosbatch.models.loading import ModelRef
from qosbatch.policies.base import PolicyFactory
from qosbatch.policies.registry import PolicySpec
from qosbatch.serve.batcher import Batcher
from qosbatch.serve.core_pool import CorePool
from qosbatch.serve.protocol import TensorSpec, datatype_of
from qosbatch.serve.records import RecordWriter
from qosbatch.serve.telemetry import Telemetry
from qosbatch.serve.worker import CALIBRATION_BATCHES, WorkerFailed, WorkerHandle, WorkerSpec
from qosbatch.serve.worker_protocol import Worker, WorkerFactory

log = logging.getLogger("qosbatch.serve")

PLATFORMS = {"torch": "pytorch_libtorch", "onnx": "onnxruntime_onnx"}
CALIBRATION_CV = 0.1  # spread assumed for a calibrated table (three repeats say little)


@dataclass(frozen=True)
class ModelConfig:
    """One served model: what it is, its policy, its default SLO and its CPUs."""

    ref: ModelRef
    policy: PolicySpec
    slo_s: float
    cpus: tuple[int, ...]
    workers: int = 1
    backend: str = "torch"
    device: str = "cpu"
    profile: Profile | None = None
    max_batch: int = DEFAULT_MAX_BATCH

    def __post_init__(self) -> None:
        if not 1 <= self.workers <= len(self.cpus):
            raise UserError(
                f"{self.ref.name}: workers must be between 1 and its {len(self.cpus)} core(s), "
                f"got {self.workers}"
            )
        if not self.slo_s > 0:
            raise UserError(f"{self.ref.name}: the SLO must be > 0, got {self.slo_s * 1e3} ms")


@dataclass(frozen=True)
class ServerConfig:
    models: tuple[ModelConfig, ...]
    max_queue: int = 10_000  # waiting requests per model before 503
    max_body_bytes: int = 64 << 20
    drain_timeout_s: float = 30.0
    seed: int = 0
    share_cores: bool = False  # one pool of CPUs for all models' batches (see core_pool)
    max_in_flight: int = 1024  # infer requests being read or waiting at once, before 503
    records: str | None = None  # a JSONL file: one line per answered request (serve.records)


@dataclass
class ServedModel:
    """A model as the HTTP layer sees it."""

    name: str
    config: ModelConfig
    batcher: Batcher
    input: TensorSpec
    outputs: tuple[TensorSpec, ...]
    platform: str
    latency_source: str  # "profile" or "calibrated"


@dataclass
class Server:
    config: ServerConfig
    telemetry: Telemetry = field(default_factory=Telemetry)
    # Worker processes by default; InProcessWorker where a host (Ray) places processes;
    # qosbatch.testing.FakeWorker to test the server with no model.
    worker_kind: WorkerFactory = WorkerHandle
    models: dict[str, ServedModel] = field(default_factory=dict)
    pool: CorePool | None = None  # the node's CPUs, when the models share them
    # One factory per policy spec, as in a simulation: a policy that schedules all its
    # models together (rl) hands each the same object.
    factories: dict[str, PolicyFactory] = field(default_factory=dict)
    records: RecordWriter | None = None
    drain_requested: bool = False
    draining: bool = False
    started: bool = False
    grpc_port: int | None = None  # where the gRPC endpoint listens, when there is one

    async def start(self) -> None:
        """Start every model's workers, build its latency table, start its batcher."""
        names = [m.ref.name for m in self.config.models]
        if len(set(names)) != len(names):
            raise UserError(f"a model is served twice: {', '.join(names)}")
        seeds = np.random.SeedSequence(self.config.seed).spawn(len(self.config.models))
        if self.config.records is not None:
            origin = asyncio.get_running_loop().time()
            self.records = RecordWriter(self.config.records, origin)
        if self.config.share_cores:
            node = sorted({c for m in self.config.models for c in m.cpus})
            self.pool = CorePool(tuple(node))
        try:
            for mc, seed in zip(self.config.models, seeds, strict=True):
                self.models[mc.ref.name] = await self._start_model(mc, seed)
        except BaseException:
            await self.stop()
            raise
        self.started = True

    async def _start_model(self, mc: ModelConfig, seed: np.random.SeedSequence) -> ServedModel:
        name = mc.ref.name
        spec = WorkerSpec(mc.ref, mc.backend, mc.device)
        handles, at = [], 0
        for i, n in enumerate(split_evenly(len(mc.cpus), mc.workers)):
            handles.append(self.worker_kind(spec, mc.cpus[at : at + n], f"worker {i} of {name}"))
            at += n
        started = time.perf_counter()
        try:
            ios = await asyncio.gather(*(h.start() for h in handles))
        except WorkerFailed as exc:
            await asyncio.gather(*(h.stop() for h in handles))
            raise UserError(str(exc)) from None
        io = ios[0]
        log.info("%s: %d worker(s) up in %.1f s", name, len(handles), time.perf_counter() - started)
        if mc.profile is not None:
            latency = LatencyTable.from_profile(mc.profile, len(mc.cpus), mc.max_batch)
            source = "profile"
        else:
            latency = await calibrate(handles[0], mc.cpus, mc.max_batch)
            source = "calibrated"
        factory = self.factories.get(mc.policy.label)
        if factory is None:
            factory = self.factories[mc.policy.label] = mc.policy.factory()
        policy = factory(np.random.default_rng(seed))
        self.telemetry.add_model(name, mc.policy.name, dict(mc.policy.params))
        batcher = Batcher(
            name,
            policy,
            latency,
            handles,
            mc.cpus,
            self.telemetry,
            max_queue=self.config.max_queue,
            pool=self.pool,
            records=self.records,
        )
        await batcher.start()
        inp = TensorSpec("input", datatype_of(np.dtype(io.input_dtype)), io.input_shape)
        out = TensorSpec("output", datatype_of(np.dtype(io.output_dtype)), io.output_shape)
        return ServedModel(name, mc, batcher, inp, (out,), PLATFORMS[mc.backend], source)

    @property
    def ready(self) -> bool:
        return (
            self.started
            and not self.draining
            and all(m.batcher.ready for m in self.models.values())
        )

    @property
    def idle(self) -> bool:
        return all(m.batcher.idle for m in self.models.values())

    def begin_drain(self) -> None:
        if not self.draining:
            self.draining = True
            for m in self.models.values():
                m.batcher.drain()

    async def stop(self) -> None:
        await asyncio.gather(*(m.batcher.stop() for m in self.models.values()))
        if self.records is not None:
            self.records.close()  # (after the batchers: their last answers are recorded)
            log.info("wrote %d request records to %s", self.records.written, self.records.path)


async def calibrate(handle: Worker, cpus: tuple[int, ...], max_batch: int) -> LatencyTable:
    """A first latency table from a few timed batches on 1 .. all the model's cores."""
    counts = sorted({1, len(cpus), *(c for c in (2, 4, 8, 16, 32) if c < len(cpus))})
    b_, c_, s_ = [], [], []
    for c in counts:
        seconds = await handle.calibrate(cpus[:c], CALIBRATION_BATCHES)
        b_ += list(CALIBRATION_BATCHES)
        c_ += [c] * len(seconds)
        s_ += seconds
    model = AmdahlModel.fit(b_, c_, np.maximum(s_, 1e-6))
    log.info(
        "%s: calibrated s(b, c) on %s core(s): s(1, %d) = %.2f ms, s(32, %d) = %.2f ms",
        handle.label,
        counts,
        len(cpus),
        float(model.predict_s(1, len(cpus))) * 1e3,
        len(cpus),
        float(model.predict_s(32, len(cpus))) * 1e3,
    )
    return LatencyTable.from_model(model, max_batch, len(cpus), CALIBRATION_CV)


class _Uvicorn(uvicorn.Server):
    """uvicorn whose SIGTERM/SIGINT drains the batchers before the socket closes."""

    def __init__(self, config: uvicorn.Config, server: Server) -> None:
        super().__init__(config)
        self.qos = server
        self.drain_deadline = math.inf

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler: set flags only; on_tick (every 0.1 s, in the loop) acts on them.
        if self.qos.drain_requested and sig == signal.SIGINT:
            self.force_exit = True
            self.should_exit = True
        self.qos.drain_requested = True

    async def on_tick(self, counter: int) -> bool:
        qos = self.qos
        if qos.drain_requested:
            if not qos.draining:
                log.info("draining: new requests get 503, accepted ones are answered")
                qos.begin_drain()
                self.drain_deadline = time.monotonic() + qos.config.drain_timeout_s
            if qos.idle or time.monotonic() > self.drain_deadline or self.force_exit:
                return True
        return await super().on_tick(counter)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before any model loads, so a busy port fails at once."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UserError(f"--host {host}: {exc.strerror}") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit TCP_NODELAY from the listener (Linux). Without it, a
    # response written as headers then body waits for the client's delayed ACK: every
    # request after the first on a keep-alive connection took 44 ms instead of 1.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)  # connections wait in the backlog until uvicorn accepts them
    sock.set_inheritable(False)
    return sock


async def serve(
    config: ServerConfig,
    sock: socket.socket,
    on_ready: Callable[[Server], None] | None = None,
    grpc_at: tuple[str, int] | None = None,
) -> None:
    """Start the models, serve HTTP on ``sock`` (and gRPC at ``grpc_at``, host and port)
    until SIGTERM/SIGINT, drain, stop the workers."""
    from qosbatch.serve.app import build_app
    from qosbatch.serve.front import Front

    server = Server(config)
    front = Front(server)  # one for both transports: one in-flight bound, one set of rules
    listener = None
    if grpc_at is not None:  # bound now, as the HTTP socket is: a busy port fails at once
        from qosbatch.serve.grpc_service import GrpcListener

        listener = GrpcListener(front, *grpc_at)
        server.grpc_port = listener.port
    try:
        await server.start()
    except BaseException:
        if listener is not None:
            await listener.stop(0)
        raise
    # Everything loaded so far lives as long as the process: move it out of the collector's
    # reach, so a full collection under load walks only request garbage. (With torch in
    # this process, as a user's own model file still brings it, such pauses put p99 near
    # 100 ms on a no-op model.)
    gc.collect()
    gc.freeze()
    try:
        if listener is not None:
            await listener.start()
        uv_config = uvicorn.Config(
            build_app(server, front),
            log_level="warning",
            access_log=False,
            # Bound to loopback by default and answering machines, not browsers: no proxy
            # header rewriting, no Server or Date header to build per response.
            proxy_headers=False,
            server_header=False,
            date_header=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
        uv = _Uvicorn(uv_config, server)
        if on_ready is not None:
            on_ready(server)
        await uv.serve(sockets=[sock])
    finally:
        if listener is not None:  # drained by now (server.idle covers gRPC's requests too)
            await listener.stop(1.0)
        await server.stop()
