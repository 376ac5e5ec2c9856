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

No thread: the environment's policy answers ``PAUSE`` when an ask is due, so the
steppable ``Simulation`` stops at that event, before its decision; the environment
reads the observation and the interval's stats from the policy and returns them,
and on ``step`` sets the knobs and runs on, and the policy is asked again. The
ask falls where a controller inside the policy would be asked (the first decision
at or after the interval's boundary, after that event's arrival or completion), so
the trajectory is the one a controller would see. An episode is as deterministic as
a simulation: same seed, same trajectory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import gymnasium as gym
import numpy as np

from qosbatch.core.errors import UserError
from qosbatch.latency.table import LatencyTable
from qosbatch.policies.base import Decision, QueueView
from qosbatch.policies.knobs import (
    OBSERVATION_SIZE,
    KnobPolicy,
    KnobRange,
    to_all_knobs,
)
from qosbatch.sim.kernel import PAUSE, Deployment, Simulation
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
        self._policy: _AskingKnobs | None = None
        self._ended = False  # reset() met a workload with nothing to decide

    # ---- gymnasium ----------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        spec = self.specs[int(self.np_random.integers(len(self.specs)))]
        trace_seed = int(self.np_random.integers(2**31))
        trace = spec.generate(np.random.default_rng(trace_seed))
        policy = _AskingKnobs(self.ranges, self.interval_s, self.slo_scale_s)
        deps = [m.deployment() for m in self.models]
        sim = Simulation(
            trace, deps, lambda rng: policy, seed=trace_seed, node_cores=self.node_cores
        )
        self._sim, self._policy, self._ended = sim, policy, False
        obs, _, done = self._run_to_ask()
        self._ended = done  # an empty workload: nothing to decide; the first step ends it
        return obs, {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._ended:
            self._ended = False
            return self._zeros(), 0.0, True, False, {}
        sim, policy = self._sim, self._policy
        if sim is None or policy is None:
            raise RuntimeError("call reset() first")
        policy.set_knobs(to_all_knobs(action, self.ranges), sim.now)
        obs, utility, done = self._run_to_ask()
        return obs, utility / self.norm, done, False, {}

    def close(self) -> None:
        self._sim = self._policy = None

    def _run_to_ask(self) -> tuple[np.ndarray, float, bool]:
        """Run to the next ask: its observation and interval's utility, or the end's."""
        sim, policy = self._sim, self._policy
        assert sim is not None and policy is not None
        if sim.run():  # (to the end, unless the policy pauses it: an ask)
            obs, stats = policy.report(sim.now)
            return self._clip(obs), sum(st.utility for st in stats), False
        sim.result()  # (the contract: every request dispatched or shed)
        self._sim = self._policy = None
        return self._zeros(), sum(m.stats.utility for m in policy.models), True

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


class _AskingKnobs(KnobPolicy):
    """The knob policy with the environment for controller: a due ask pauses the run.

    Where ``KnobPolicy`` would call its controller (the first decision at or after
    ``next_s``) this one answers ``PAUSE`` instead, having noted the model's queue as
    that call would; the simulation asks again once the agent's knobs are set.
    """

    def __init__(self, ranges: Sequence[KnobRange], interval_s: float, slo_scale_s: float) -> None:
        super().__init__(None, ranges, interval_s, slo_scale_s)

    def decide(self, view: QueueView) -> list[Decision]:
        if view.now_s >= self.next_s:
            for m in self.models:
                if m.range.model == view.model:
                    m.view = view  # (the observation reads the queue as it is now)
                    return PAUSE
        return super().decide(view)  # (a model it does not schedule is refused there)
