"""A Gymnasium environment over the simulator: the agent turns the batcher's knobs.

One episode is one workload drawn from the given specs with the episode's seed
(Poisson, MMPP, diurnal, network-delay SLOs: whatever the specs say), simulated
with the profiles' latency models. A spec that names no model sends each
request to one of the agent's models, evenly. Every ``interval_s`` of simulated
time the ``KnobPolicy`` stops and asks for every model's batch size and
concurrency: the environment returns the observation (``OBSERVATION_SIZE``
numbers per model) to the agent, takes its action (two numbers per model), and
lets the simulation run on. With several models they share ``node_cores`` cores,
so one model's concurrency competes with another's. The reward is the
interval's utility summed over the models (on-time requests earn
1 - latency/(2 x budget), late and shed ones cost ``LATE_PENALTY``) per request
the node could serve in the interval, so it is of order 1.

The simulator runs in a thread of its own and the two hand over strictly in
turn (two queues), so the simulator needs no resumable loop and an episode is
as deterministic as a simulation: same seed, same trajectory.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import gymnasium as gym
import numpy as np

from qosbatch.core.errors import UserError
from qosbatch.latency.table import LatencyTable
from qosbatch.policies.knobs import (
    OBSERVATION_SIZE,
    IntervalStats,
    KnobPolicy,
    KnobRange,
    to_all_knobs,
)
from qosbatch.sim.kernel import Deployment, simulate
from qosbatch.workloads.spec import WorkloadSpec, parse_workload
from qosbatch.workloads.trace import Trace


@dataclass(frozen=True)
class Scheduled:
    """One model the agent schedules: its latency model and most instances (as many cores)."""

    model: str
    latency: LatencyTable
    instances: int

    def deployment(self) -> Deployment:
        """As trained and judged: a worker per instance, on a core per instance in all."""
        return Deployment(self.model, self.latency, self.instances, self.instances)


class _Abort(Exception):
    """Raised inside the simulation thread when the episode is abandoned."""


class BatchingEnv(gym.Env[np.ndarray, np.ndarray]):
    """See the module docstring."""

    metadata = {"render_modes": []}  # noqa: RUF012 (gymnasium's convention)

    def __init__(
        self,
        models: Sequence[Scheduled],
        workloads: Sequence[str],
        max_batch: int = 32,
        interval_s: float = 0.5,
        slo_scale_s: float = 0.5,
        node_cores: int | None = None,
    ) -> None:
        if not workloads:
            raise ValueError("at least one workload spec")
        if not models:
            raise ValueError("at least one model")
        self.models = list(models)
        names = [m.model for m in self.models]
        if len(set(names)) != len(names):
            raise UserError(f"a model twice among {', '.join(names)}")
        self.specs = [for_models(parse_workload(w), names) for w in workloads]
        self.max_batch = min([max_batch, *(m.latency.max_batch for m in self.models)])
        self.ranges = [KnobRange(m.model, self.max_batch, m.instances) for m in self.models]
        self.interval_s = interval_s
        self.slo_scale_s = slo_scale_s
        # One pool for several models (they compete); a lone model owns its instances' cores.
        self.node_cores = node_cores if len(self.models) > 1 else None
        if self.node_cores is not None and self.node_cores < max(m.instances for m in models):
            raise UserError(
                f"{self.node_cores} node cores (--node-cores) are fewer than the "
                f"{max(m.instances for m in models)} a model may use (--instances)"
            )
        # Requests the node serves per interval at its best (each model alone, at b = max).
        cores_each = 1
        self.norm = sum(
            interval_s * self.max_batch / m.latency.s(self.max_batch, cores_each) * m.instances
            for m in self.models
        ) / len(self.models)
        size = OBSERVATION_SIZE * len(self.models)
        self.observation_space = gym.spaces.Box(-1.0, 5.0, (size,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2 * len(self.models),), np.float32)
        self._thread: threading.Thread | None = None
        self._ended = False  # reset() met a workload with nothing to decide
        self._to_agent: queue.Queue[tuple[str, Any, float]] = queue.Queue()
        self._to_sim: queue.Queue[list[tuple[int, int]] | None] = queue.Queue()

    # ---- gymnasium ----------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._abandon()
        spec = self.specs[int(self.np_random.integers(len(self.specs)))]
        trace_seed = int(self.np_random.integers(2**31))
        trace = spec.generate(np.random.default_rng(trace_seed))
        self._to_agent = queue.Queue()
        self._to_sim = queue.Queue()
        self._thread = threading.Thread(
            target=self._simulate, args=(trace, trace_seed), daemon=True
        )
        self._thread.start()
        kind, obs, _ = self._to_agent.get()
        if kind == "error":
            raise obs
        if kind != "obs":  # an empty workload: nothing to decide; the first step ends it
            self._thread.join()
            self._thread = None
            self._ended = True
            return self._zeros(), {}
        self._ended = False
        return self._clip(obs), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._ended:
            self._ended = False
            return self._zeros(), 0.0, True, False, {}
        if self._thread is None:
            raise RuntimeError("call reset() first")
        self._to_sim.put(to_all_knobs(action, self.ranges))
        kind, obs, reward = self._to_agent.get()
        if kind == "error":
            raise obs
        done = kind == "end"
        if done:
            self._thread.join()
            self._thread = None
            obs = self._zeros()
        return self._clip(obs), reward / self.norm, done, False, {}

    def close(self) -> None:
        self._abandon()

    # ---- the simulation thread ----------------------------------------------------------

    def _simulate(self, trace: Trace, seed: int) -> None:
        def controller(obs: list[float], stats: list[IntervalStats]) -> list[tuple[int, int]]:
            self._to_agent.put(("obs", obs, sum(s.utility for s in stats)))
            knobs = self._to_sim.get()
            if knobs is None:
                raise _Abort
            return knobs

        policy = KnobPolicy(controller, self.ranges, self.interval_s, self.slo_scale_s)
        deps = [m.deployment() for m in self.models]
        try:
            simulate(trace, deps, lambda rng: policy, seed=seed, node_cores=self.node_cores)
        except _Abort:
            return
        except Exception as exc:  # surfaced in the agent's thread by step()
            self._to_agent.put(("error", exc, 0.0))
            return
        last = sum(m.stats.utility for m in policy.models)
        self._to_agent.put(("end", None, last))

    def _abandon(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._to_sim.put(None)
            self._thread.join()
        self._thread = None

    def _clip(self, obs: Any) -> np.ndarray:
        return np.clip(np.asarray(obs, dtype=np.float32), -1.0, 5.0)

    def _zeros(self) -> np.ndarray:
        return np.zeros(self.observation_space.shape, np.float32)


def for_models(spec: WorkloadSpec, names: Sequence[str]) -> WorkloadSpec:
    """The spec with its requests sent to the agent's models (evenly, unless it says)."""
    if not spec.models:
        return replace(spec, models=tuple(names), mix=())
    unknown = [m for m in spec.models if m not in names]
    if unknown:
        raise UserError(
            f"workload {spec.text or spec.kind} names model {unknown[0]!r}, which is not "
            f"trained here ({', '.join(names)})"
        )
    return spec
