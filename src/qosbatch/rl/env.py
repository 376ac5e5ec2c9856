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

No thread: the environment runs the steppable ``Simulation`` up to the next
ask (``run(until=...)``), reads the observation and the interval's stats from the
policy, returns them, and on ``step`` sets the knobs and runs on. An episode is as
deterministic as a simulation: same seed, same trajectory. An ask falls on the
interval's boundary, or, when nothing happens until then, at the next event, as a
driver asks the policy only at events.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import gymnasium as gym
import numpy as np

from qosbatch.core.errors import UserError
from qosbatch.latency.table import LatencyTable
from qosbatch.policies.knobs import (
    OBSERVATION_SIZE,
    KnobPolicy,
    KnobRange,
    to_all_knobs,
)
from qosbatch.sim.kernel import Deployment, Simulation
from qosbatch.workloads.spec import WorkloadSpec, parse_workload


@dataclass(frozen=True)
class Scheduled:
    """One model the agent schedules: its latency model and most instances (as many cores)."""

    model: str
    latency: LatencyTable
    instances: int

    def deployment(self) -> Deployment:
        """As trained and judged: a worker per instance, on a core per instance in all."""
        return Deployment(self.model, self.latency, self.instances, self.instances)


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
        self._sim: Simulation | None = None
        self._policy: KnobPolicy | None = None
        self._ask_s = 0.0  # when the agent is asked next (the knobs it gives start then)
        self._ended = False  # reset() met a workload with nothing to decide

    # ---- gymnasium ----------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        spec = self.specs[int(self.np_random.integers(len(self.specs)))]
        trace_seed = int(self.np_random.integers(2**31))
        trace = spec.generate(np.random.default_rng(trace_seed))
        policy = KnobPolicy(None, self.ranges, self.interval_s, self.slo_scale_s)
        deps = [m.deployment() for m in self.models]
        sim = Simulation(
            trace, deps, lambda rng: policy, seed=trace_seed, node_cores=self.node_cores
        )
        first = sim.peek()
        if first == math.inf:  # an empty workload: nothing to decide; the first step ends it
            self._sim = self._policy = None
            self._ended = True
            return self._zeros(), {}
        self._sim, self._policy, self._ended = sim, policy, False
        self._ask_s = first
        obs, _ = policy.report(first)
        return self._clip(obs), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._ended:
            self._ended = False
            return self._zeros(), 0.0, True, False, {}
        sim, policy = self._sim, self._policy
        if sim is None or policy is None:
            raise RuntimeError("call reset() first")
        policy.set_knobs(to_all_knobs(action, self.ranges), self._ask_s)
        ask = policy.next_s
        # Every event before the ask runs under these knobs; those at the ask, under the next.
        more = sim.run(until=math.nextafter(ask, -math.inf))
        if not more:  # the workload is over: its last interval's utility, and the contract
            sim.result()
            self._sim = self._policy = None
            last = sum(m.stats.utility for m in policy.models)
            return self._zeros(), last / self.norm, True, False, {}
        self._ask_s = max(ask, sim.peek())  # (nothing until the boundary: at the next event)
        obs, stats = policy.report(self._ask_s)
        reward = sum(st.utility for st in stats)
        return self._clip(obs), reward / self.norm, False, False, {}

    def close(self) -> None:
        self._sim = self._policy = None

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
