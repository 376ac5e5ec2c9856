"""Training: Stable-Baselines3's SAC on ``BatchingEnv``, one agent for one or several models.

Deterministic for a seed (SB3 seeds torch, numpy and the environment; the
simulator is deterministic), on the CPU. The learning curve is the return of
each finished episode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qosbatch.core.profile import Profile
from qosbatch.latency.table import LatencyTable
from qosbatch.policies.learned import AgentInfo, write_info
from qosbatch.rl.env import BatchingEnv, Scheduled


@dataclass(frozen=True)
class TrainResult:
    path: Path
    info: AgentInfo
    episode_returns: list[tuple[int, float]]  # (step at the episode's end, its return)
    seconds: float


def scheduled(profiles: Sequence[Profile], instances: int, max_batch: int) -> list[Scheduled]:
    """The models an agent schedules, each with up to ``instances`` instances on as many cores."""
    return [
        Scheduled(p.model.name, LatencyTable.from_profile(p, instances, max_batch), instances)
        for p in profiles
    ]


def train(
    profiles: Sequence[Profile],
    workloads: Sequence[str],
    steps: int,
    out: str | Path,
    *,
    instances: int,
    node_cores: int | None = None,
    max_batch: int = 32,
    interval_s: float = 0.5,
    slo_scale_s: float = 0.5,
    seed: int = 0,
    on_step: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train for ``steps`` environment steps and save the agent to ``out``.

    Several models share ``node_cores`` cores (default: ``instances``).
    """
    import time

    import torch
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    torch.set_num_threads(1)  # small networks: threads cost more than they give
    models = scheduled(profiles, instances, max_batch)
    node = node_cores if node_cores is not None else instances
    env = BatchingEnv(models, workloads, max_batch, interval_s, slo_scale_s, node)
    returns: list[tuple[int, float]] = []

    class Track(BaseCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.episode = 0.0

        def _on_step(self) -> bool:
            self.episode += float(self.locals["rewards"][0])
            if self.locals["dones"][0]:
                returns.append((self.num_timesteps, self.episode))
                self.episode = 0.0
            if on_step is not None:
                on_step(self.num_timesteps)
            return True

    start = time.perf_counter()
    agent: Any = SAC(
        "MlpPolicy",
        env,
        seed=seed,
        device="cpu",
        learning_starts=min(500, max(1, steps // 10)),
        batch_size=128,
        train_freq=1,
        gamma=0.95,
        verbose=0,
        policy_kwargs={"net_arch": [64, 64]},
    )
    agent.learn(total_timesteps=steps, callback=Track())
    seconds = time.perf_counter() - start
    env.close()
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    agent.save(path)
    if path.suffix != ".zip":  # SB3 appends .zip when the name lacks it
        path = path.with_name(path.name + ".zip")
    info = AgentInfo(
        tuple(m.model for m in models),
        env.max_batch,
        tuple(m.instances for m in models),
        env.node_cores,
        interval_s,
        slo_scale_s,
        tuple(workloads),
        steps,
        seed,
    )
    write_info(path, info)
    return TrainResult(path, info, returns, seconds)
