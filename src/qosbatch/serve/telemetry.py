"""Prometheus metrics of a live server, in one registry per server.

A registry per server (not the library's global one) so that tests and
benchmarks can run several servers in one process. Outcomes are the simulator's
three (on time, late, rejected) plus ``error`` for what only a live server
has: a worker that died or a model that raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LIVE_OUTCOMES = ("on_time", "late", "rejected", "error")
_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
)  # fmt: skip
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass(frozen=True)
class ModelSeries:
    """One model's series, their labels bound once: the batcher updates them per request,
    and ``labels()`` costs a dictionary lookup under a lock each time it is called."""

    outcome: dict[str, Any]  # outcome -> its requests counter
    latency: Any
    batch_size: Any
    queue_depth: Any
    worker_cores: list[Any]  # per worker
    restarts: Any
    core_seconds: Any
    policy_faults: Any


class Telemetry:
    """The counters, histograms and gauges ``/metrics`` exposes."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "qosbatch_requests", "Requests by model and outcome.", ["model", "outcome"], registry=r
        )
        self.latency = Histogram(
            "qosbatch_request_latency_seconds",
            "Arrival to answer, of requests that were served.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "qosbatch_batch_size",
            "Requests per batch run.",
            ["model"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "qosbatch_queue_depth", "Requests waiting for a batch.", ["model"], registry=r
        )
        self.worker_cores = Gauge(
            "qosbatch_worker_cores",
            "Cores of the worker's running batch (its nominal cores while idle).",
            ["model", "worker"],
            registry=r,
        )
        self.policy_setting = Gauge(
            "qosbatch_policy_setting",
            "The policy's knobs (numeric ones), as configured.",
            ["model", "policy", "knob"],
            registry=r,
        )
        self.core_seconds = Counter(
            "qosbatch_core_seconds",
            "Cores held x seconds, summed over the model's batches: what a pay-per-core node "
            "bills, and what in-place scaling saves.",
            ["model"],
            registry=r,
        )
        self.in_flight = Gauge(
            "qosbatch_requests_in_flight",
            "Infer requests being read, waiting or running (all models); see --max-in-flight.",
            registry=r,
        )
        # process_cpu_seconds_total & co. of this process alone, the front end (HTTP, codec,
        # batchers), not its workers: the front end's CPU per request is its rate over
        # the requests' rate.
        ProcessCollector(registry=r)
        self.worker_restarts = Counter(
            "qosbatch_worker_restarts", "Worker processes restarted after dying.", ["model"],
            registry=r,
        )  # fmt: skip
        self.policy_faults = Counter(
            "qosbatch_policy_faults",
            "Times the model's policy raised or broke its contract; the model then runs the "
            "fallback policy (dynamic).",
            ["model", "policy"],
            registry=r,
        )

    def add_model(self, model: str, policy: str, knobs: dict[str, object]) -> None:
        for outcome in LIVE_OUTCOMES:  # every series exists from the start, at 0
            self.requests.labels(model, outcome)
        self.queue_depth.labels(model).set(0)
        for knob, value in knobs.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                self.policy_setting.labels(model, policy, knob).set(float(value))

    def series(self, model: str, workers: int) -> ModelSeries:
        return ModelSeries(
            {o: self.requests.labels(model, o) for o in LIVE_OUTCOMES},
            self.latency.labels(model),
            self.batch_size.labels(model),
            self.queue_depth.labels(model),
            [self.worker_cores.labels(model, str(i)) for i in range(workers)],
            self.worker_restarts.labels(model),
            self.core_seconds.labels(model),
            self.policy_faults,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
