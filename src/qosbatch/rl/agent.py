"""Agent files: training a SAC agent on the environment, saving it, loading it as a Policy.

An agent file is Stable-Baselines3's zip plus one entry of ours,
``qosbatch.json``: the model it was trained for and the environment's settings,
so that a file trained for another model, or not by qosbatch, is refused in one
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
from qosbatch.rl.knobs import OBSERVATION_SIZE, IntervalStats, KnobPolicy, to_knobs

META = "qosbatch.json"
SCHEMA = "qosbatch.agent"


@dataclass(frozen=True)
class AgentInfo:
    """What an agent was trained for; saved in its file."""

    model: str
    max_batch: int
    instances: int
    interval_s: float
    slo_scale_s: float
    workloads: tuple[str, ...]
    steps: int
    seed: int
    observation_size: int = OBSERVATION_SIZE
    schema: str = SCHEMA


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
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise UserError(f"{path}: its {META} is not a qosbatch agent description")
    try:
        info = AgentInfo(**{**data, "workloads": tuple(data["workloads"])})
    except (TypeError, KeyError) as exc:
        raise UserError(f"{path}: its {META} is incomplete ({exc})") from None
    if info.observation_size != OBSERVATION_SIZE:
        raise UserError(
            f"{path} was trained on {info.observation_size} observations; "
            f"this qosbatch gives {OBSERVATION_SIZE}"
        )
    return info


def check_trained_for(path: str | Path, info: AgentInfo, model: str) -> None:
    """Refuse an agent trained for another model (its observations mean something else)."""
    if info.model != model:
        raise UserError(f"agent {path} was trained for model {info.model!r}, not {model!r}")


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
        _LOADED[key] = (info, model)
    return _LOADED[key]


class AgentPolicy:
    """``rl:agent.zip``: the ``KnobPolicy`` with a trained agent turning its knobs."""

    name = "rl"

    def __init__(self, agent: str = "", rng: np.random.Generator | None = None) -> None:
        del rng
        if not agent:
            raise UserError("policy rl needs an agent file: rl:agent.zip")
        self.agent = agent
        self.info, model = load_agent(agent)
        predict: Callable[..., Any] = model.predict
        info = self.info

        def controller(obs: list[float], stats: IntervalStats) -> tuple[int, int]:
            x = np.clip(np.asarray(obs, dtype=np.float32), -1.0, 5.0)
            action, _ = predict(x, deterministic=True)
            return to_knobs(action, info.max_batch, info.instances)

        self.knobs = KnobPolicy(
            controller, info.max_batch, info.instances, info.interval_s, info.slo_scale_s
        )

    def decide(self, view: QueueView) -> list[Decision]:
        if view.model != self.info.model:
            check_trained_for(self.agent, self.info, view.model)
        return self.knobs.decide(view)

    def observe(self, done: CompletedBatch) -> None:
        self.knobs.observe(done)
