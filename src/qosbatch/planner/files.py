"""The planner's only file I/O: catalogue and workload YAML in, plan YAML out.

Everything else in the package takes and returns numbers and dataclasses. Each
way a file can fail (missing, not YAML, a wrong field) becomes one UserError
line naming the file and, for content errors, the field.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from qosbatch.core.errors import UserError
from qosbatch.core.files import read_user_text
from qosbatch.core.profile import load_profile
from qosbatch.planner.catalogue import Catalogue, parse_catalogue
from qosbatch.planner.options import DEFAULT_MAX_BATCHES, Demand
from qosbatch.planner.plan import Plan
from qosbatch.planner.service import ModelService
from qosbatch.planner.workload import Workload, parse_workload

DEFAULT_CATALOGUE = "default"  # --nodes default: the catalogue shipped with the package


def read_yaml(path: str | Path, what: str) -> Any:
    path = Path(path)
    text = read_user_text(path, what)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "malformed"
        raise UserError(f"{what} {path} is not valid YAML{where}: {problem}") from None


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """The catalogue at ``path``, or the shipped default (None or ``default``)."""
    if path is None or str(path) == DEFAULT_CATALOGUE:
        text = resources.files("qosbatch.planner").joinpath("catalogue.yaml").read_text()
        return parse_catalogue(yaml.safe_load(text), "default catalogue")
    return parse_catalogue(read_yaml(path, "node catalogue"), str(path))


@dataclass(frozen=True)
class LoadedWorkload:
    workload: Workload
    demands: tuple[Demand, ...]
    services: dict[str, ModelService]


def load_workload(path: str | Path, max_cores: int, max_batch: int | None = None) -> LoadedWorkload:
    """The workload file, its profiles (relative to it) and each model's service table.

    The tables cover ``max_cores`` and batches up to ``max_batch`` (default: the
    file's largest max_batch, else the planner's default largest).
    """
    path = Path(path)
    workload = parse_workload(read_yaml(path, "workload"), str(path))
    top_batch = max_batch or max(workload.max_batch or DEFAULT_MAX_BATCHES)
    demands = []
    services: dict[str, ModelService] = {}
    for i, m in enumerate(workload.models):
        profile_path = Path(m.profile)
        if not profile_path.is_absolute():
            profile_path = path.parent / profile_path
        try:
            profile = load_profile(profile_path)
        except UserError as exc:
            raise UserError(f"{path}: models[{i}].profile: {exc}") from None
        name = m.name or profile.model.name
        if name in services:
            raise UserError(
                f"{path}: models[{i}]: model {name!r} is listed twice (give each a distinct name)"
            )
        services[name] = ModelService.from_profile(
            profile,
            max_cores=max_cores,
            max_batch=top_batch,
            name=name,
            memory_override_bytes=None if m.memory_gib is None else m.memory_gib * 2**30,
        )
        demands.append(Demand(name, m.rate, m.target))
    return LoadedWorkload(workload, tuple(demands), services)


def write_plan(plan: Plan, path: str | Path) -> Path:
    """Write the plan YAML atomically (a reader never sees half a plan)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(plan.to_dict(), sort_keys=False, default_flow_style=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write("# qosbatch plan: nodes to rent, replicas on each, batching settings\n")
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@dataclass(frozen=True)
class PlannedModel:
    """A model's replicas in a plan file (on one node, or on all): what serve and deploy start."""

    model: str
    policy: str  # a policy spec string, the same for every replica
    slo_ms: float
    replica_cores: tuple[int, ...]  # one entry per replica
    replica_memory_mib: tuple[float, ...]  # the planner's estimate per replica (0: none)


ALL_NODES = "*"


def read_plan_models(path: str | Path, node: str | None = ALL_NODES) -> list[PlannedModel]:
    """The models a plan file places, with their replicas on ``node`` (None: the plan's
    first node; ``ALL_NODES``: every node), grouped by model in order of appearance."""
    data = read_yaml(path, "plan")
    if not isinstance(data, dict) or data.get("schema") != "qosbatch.plan":
        raise UserError(f"{path} is not a qosbatch plan (schema: qosbatch.plan)")
    try:
        nodes = {str(n["name"]): n for n in data["nodes"]}
        # The server's share of each SLO: the plan left the rest to the serving path.
        slos = {str(m["name"]): float(m.get("server_slo_ms", m["slo_ms"])) for m in data["models"]}
        if node == ALL_NODES:
            chosen = list(nodes.values())
        else:
            if not nodes:
                raise UserError(f"plan {path} rents no node")
            if node is None:
                node = next(iter(nodes))
            if node not in nodes:
                raise UserError(f"plan {path} has no node {node!r}; it has {', '.join(nodes)}")
            chosen = [nodes[node]]
        groups: dict[str, tuple[str, list[int], list[float]]] = {}
        for n in chosen:
            for r in n["replicas"]:
                name, policy = str(r["model"]), str(r["policy"])
                seen_policy, cores, memory = groups.setdefault(name, (policy, [], []))
                if seen_policy != policy:
                    raise UserError(f"plan {path}: {name} has replicas with two policies")
                cores.append(int(r["cores"]))
                memory.append(float(r.get("memory_mib", 0.0)))
        return [
            PlannedModel(name, policy, slos[name], tuple(cores), tuple(memory))
            for name, (policy, cores, memory) in groups.items()
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"plan {path} is malformed: missing or bad {exc}") from None
