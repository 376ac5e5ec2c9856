"""A Gymnasium environment over the simulator: the agent turns the batcher's knobs.

One episode is one workload drawn from the given specs with the episode's seed
(Poisson, MMPP, diurnal, network-delay SLOs: whatever the specs say), simulated
with the profile's latency model. Every ``interval_s`` of simulated time the
``KnobPolicy`` stops and asks for a batch size and a concurrency: the
environment returns that observation to the agent, takes its action, and lets
the simulation run on. The reward is the interval's utility (on-time requests
earn 1 - latency/(2 x budget), late and shed ones cost ``LATE_PENALTY``) per
request the node could serve in the interval, so it is of order 1.

The simulator runs in a thread of its own and the two hand over strictly in
turn (two queues), so the simulator needs no resumable loop and an episode is
as deterministic as a simulation: same seed, same trajectory.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from qosbatch.policies.latency_table import LatencyTable
from qosbatch.rl.knobs import OBSERVATION_SIZE, IntervalStats, KnobPolicy, to_knobs
from qosbatch.sim.kernel import Deployment, simulate
from qosbatch.workloads.spec import parse_workload


class _Abort(Exception):
    """Raised inside the simulation thread when the episode is abandoned."""


class BatchingEnv(gym.Env[np.ndarray, np.ndarray]):
    """See the module docstring."""

    metadata = {"render_modes": []}  # noqa: RUF012 (gymnasium's convention)

    def __init__(
        self,
        model: str,
        latency: LatencyTable,
        instances: int,
        workloads: Sequence[str],
        max_batch: int = 32,
        interval_s: float = 0.5,
        slo_scale_s: float = 0.5,
    ) -> None:
        if not workloads:
            raise ValueError("at least one workload spec")
        self.model = model
        self.latency = latency
        self.instances = instances
        self.specs = [parse_workload(w) for w in workloads]
        self.max_batch = min(max_batch, latency.max_batch)
        self.interval_s = interval_s
        self.slo_scale_s = slo_scale_s
        cores_each = 1
        self.norm = interval_s * self.max_batch / latency.s(self.max_batch, cores_each) * instances
        self.observation_space = gym.spaces.Box(-1.0, 5.0, (OBSERVATION_SIZE,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self._thread: threading.Thread | None = None
        self._ended = False  # reset() met a workload with nothing to decide
        self._to_agent: queue.Queue[tuple[str, Any, float]] = queue.Queue()
        self._to_sim: queue.Queue[tuple[int, int] | None] = queue.Queue()

    # ---- gymnasium ----------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._abandon()
        spec = self.specs[int(self.np_random.integers(len(self.specs)))]
        trace_seed = int(self.np_random.integers(2**31))
        trace = spec.generate(np.random.default_rng(trace_seed), self.model)
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
            return np.zeros(OBSERVATION_SIZE, np.float32), {}
        self._ended = False
        return self._clip(obs), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._ended:
            self._ended = False
            return np.zeros(OBSERVATION_SIZE, np.float32), 0.0, True, False, {}
        if self._thread is None:
            raise RuntimeError("call reset() first")
        self._to_sim.put(to_knobs(action, self.max_batch, self.instances))
        kind, obs, reward = self._to_agent.get()
        if kind == "error":
            raise obs
        done = kind == "end"
        if done:
            self._thread.join()
            self._thread = None
            obs = np.zeros(OBSERVATION_SIZE, np.float32)
        return self._clip(obs), reward / self.norm, done, False, {}

    def close(self) -> None:
        self._abandon()

    # ---- the simulation thread ----------------------------------------------------------

    def _simulate(self, trace: Any, seed: int) -> None:
        def controller(obs: list[float], stats: IntervalStats) -> tuple[int, int]:
            self._to_agent.put(("obs", obs, stats.utility))
            knobs = self._to_sim.get()
            if knobs is None:
                raise _Abort
            return knobs

        policy: KnobPolicy | None = None

        def factory(rng: np.random.Generator) -> KnobPolicy:
            nonlocal policy
            policy = KnobPolicy(
                controller, self.max_batch, self.instances, self.interval_s, self.slo_scale_s
            )
            return policy

        deployment = Deployment(self.model, self.latency, self.instances, self.instances)
        try:
            simulate(trace, [deployment], factory, seed=seed)
        except _Abort:
            return
        except Exception as exc:  # surfaced in the agent's thread by step()
            self._to_agent.put(("error", exc, 0.0))
            return
        last = policy.stats.utility if policy is not None else 0.0
        self._to_agent.put(("end", None, last))

    def _abandon(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._to_sim.put(None)
            self._thread.join()
        self._thread = None

    def _clip(self, obs: Any) -> np.ndarray:
        return np.clip(np.asarray(obs, dtype=np.float32), -1.0, 5.0)
