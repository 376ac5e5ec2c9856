"""Agent files: training a SAC agent on the environment, saving it, loading it as a Policy.

An agent file is Stable-Baselines3's zip plus one entry of ours,
``qosbatch.json``: the models it was trained for and the environment's settings,
so that a file trained for other models, or not by qosbatch, is refused in one
line. Loading an SB3 file unpickles Python objects it holds (spaces, schedules):
load only agents you trained or trust, as with any pickle.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qosbatch.core.errors import UserError
from qosbatch.policies.base import CompletedBatch, Decision, QueueView
from qosbatch.policies.knobs import (
    OBSERVATION_SIZE,
    IntervalStats,
    KnobPolicy,
    KnobRange,
    to_all_knobs,
)

META = "qosbatch.json"
SCHEMA = "qosbatch.agent/2"  # 2: several models (``models``, ``instances`` per model)


@dataclass(frozen=True)
class AgentInfo:
    """What an agent was trained for; saved in its file."""

    models: tuple[str, ...]
    max_batch: int
    instances: tuple[int, ...]  # per model, on as many cores (the running ones split them)
    node_cores: int | None  # the pool the models shared (None: one model on its own cores)
    interval_s: float
    slo_scale_s: float
    workloads: tuple[str, ...]
    steps: int
    seed: int
    observation_size: int = OBSERVATION_SIZE  # per model
    schema: str = SCHEMA

    @property
    def ranges(self) -> list[KnobRange]:
        pairs = zip(self.models, self.instances, strict=True)
        return [KnobRange(m, self.max_batch, k) for m, k in pairs]


def write_info(path: Path, info: AgentInfo) -> None:
    with zipfile.ZipFile(path, "a") as z:
        z.writestr(META, json.dumps(asdict(info), indent=1))


def read_info(path: str | Path) -> AgentInfo:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"agent file not found: {path}")
    try:
        with zipfile.ZipFile(path) as z:
            data = json.loads(z.read(META))
    except (zipfile.BadZipFile, OSError):
        raise UserError(f"{path} is not an agent file (not a zip archive)") from None
    except KeyError:
        raise UserError(f"{path} is not a qosbatch agent (no {META} inside)") from None
    except ValueError:
        raise UserError(f"{path}: its {META} is corrupt") from None
    if isinstance(data, dict) and data.get("schema") == "qosbatch.agent":
        raise UserError(f"{path} was saved by an older qosbatch (one model per agent): retrain it")
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise UserError(f"{path}: its {META} is not a qosbatch agent description")
    try:
        tuples = {k: tuple(data[k]) for k in ("models", "instances", "workloads")}
        info = AgentInfo(**{**data, **tuples})
    except (TypeError, KeyError) as exc:
        raise UserError(f"{path}: its {META} is incomplete ({exc})") from None
    if not info.models or len(info.models) != len(info.instances):
        raise UserError(f"{path}: its {META} names {info.models} with instances {info.instances}")
    if info.observation_size != OBSERVATION_SIZE:
        raise UserError(
            f"{path} was trained on {info.observation_size} observations; "
            f"this qosbatch gives {OBSERVATION_SIZE}"
        )
    return info


def check_trained_for(path: str | Path, info: AgentInfo, model: str) -> None:
    """Refuse an agent not trained for ``model`` (its observations mean something else).

    An agent for several models may serve some of them: the others look idle to it.
    """
    if model not in info.models:
        trained = ", ".join(repr(m) for m in info.models)
        raise UserError(f"agent {path} was trained for model {trained}, not {model!r}")


_LOADED: dict[str, tuple[AgentInfo, Any]] = {}


def load_agent(path: str | Path) -> tuple[AgentInfo, Any]:
    """The file's description and its SB3 model (cached: one load per file per process)."""
    key = str(Path(path).resolve())
    if key not in _LOADED:
        info = read_info(path)
        from stable_baselines3 import SAC

        try:
            model = SAC.load(key, device="cpu")
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"{path}: the agent does not load: {first}") from None
        want = (info.observation_size * len(info.models),)
        if tuple(model.observation_space.shape) != want:
            raise UserError(
                f"{path}: its network takes {model.observation_space.shape} observations; "
                f"its description says {want} ({len(info.models)} model(s))"
            )
        _LOADED[key] = (info, model)
    return _LOADED[key]


class AgentPolicy:
    """``rl:agent.zip``: the ``KnobPolicy`` with a trained agent turning every model's knobs.

    ``serves_all_models``: a policy factory hands this one object to every model of
    a run (see ``PolicySpec.factory``), so that the agent sees all their queues at
    once, as in training.
    """

    name = "rl"
    serves_all_models = True

    def __init__(self, agent: str = "", rng: np.random.Generator | None = None) -> None:
        del rng
        if not agent:
            raise UserError("policy rl needs an agent file: rl:agent.zip")
        self.agent = agent
        self.info, model = load_agent(agent)
        predict: Callable[..., Any] = model.predict
        ranges = self.info.ranges

        def controller(obs: list[float], stats: list[IntervalStats]) -> list[tuple[int, int]]:
            x = np.clip(np.asarray(obs, dtype=np.float32), -1.0, 5.0)
            action, _ = predict(x, deterministic=True)
            return to_all_knobs(action, ranges)

        self.knobs = KnobPolicy(controller, ranges, self.info.interval_s, self.info.slo_scale_s)

    def decide(self, view: QueueView) -> list[Decision]:
        if view.model not in self.info.models:
            check_trained_for(self.agent, self.info, view.model)
        return self.knobs.decide(view)

    def observe(self, done: CompletedBatch) -> None:
        self.knobs.observe(done)
