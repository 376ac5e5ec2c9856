"""The profile: one model's batch latency on one node, the file every later part reads.

A profile is written by ``qosbatch profile`` and read by the latency models, the
simulator, the queueing model and the planner. It is plain JSON with a schema tag
and a version, so a reader can refuse a file it does not understand instead of
misreading it. Everything here is pure data: no torch, no measurement.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from qosbatch.core.errors import UserError

PROFILE_SCHEMA = "qosbatch.profile"
PROFILE_VERSION = 1
NODE_SCHEMA = "qosbatch.node"
NODE_VERSION = 1


@dataclass(frozen=True)
class Measurement:
    """Service time of one batch of ``batch`` samples on ``cores`` cores."""

    batch: int
    cores: int
    median_ms: float  # median over the timed repeats
    p95_ms: float
    cv: float  # coefficient of variation (std / mean) of the repeats
    peak_memory_bytes: int  # peak RSS above the loaded model (CPU) or peak allocated (CUDA)
    repeats: int  # timed runs behind the figures (warm-up excluded)
    holdout: bool = False  # measured only to validate the fit, never fitted on


@dataclass(frozen=True)
class NodeInfo:
    """The machine a profile was taken on, and its compute power per core count."""

    cpu_model: str
    logical_cores: int
    # Float32 GEMM throughput in GFLOP/s with this many cores: the ``c`` of flops*p/c.
    compute_gflops: dict[int, float]
    platform: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    device: str = "cpu"

    def gflops(self, cores: int) -> float:
        """Compute power at ``cores``; unmeasured counts scale linearly from the nearest."""
        if cores < 1:
            raise ValueError(f"cores must be an integer >= 1, got {cores}")
        if not self.compute_gflops:
            raise UserError("the node has no measured compute power (run `qosbatch node`)")
        if cores in self.compute_gflops:
            return self.compute_gflops[cores]
        nearest = min(self.compute_gflops, key=lambda c: (abs(c - cores), c))
        return self.compute_gflops[nearest] * cores / nearest

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["compute_gflops"] = {str(k): v for k, v in sorted(self.compute_gflops.items())}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NodeInfo:
        return cls(
            cpu_model=str(data["cpu_model"]),
            logical_cores=int(data["logical_cores"]),
            compute_gflops={int(k): float(v) for k, v in data["compute_gflops"].items()},
            platform=str(data.get("platform", "")),
            versions={str(k): str(v) for k, v in data.get("versions", {}).items()},
            device=str(data.get("device", "cpu")),
        )


@dataclass(frozen=True)
class ModelInfo:
    """What was profiled: enough to recognise the model and to scale it by FLOPs."""

    name: str
    source: str  # "zoo", "onnx", "torch-export", "torchscript" or "factory"
    input_shape: tuple[int, ...]  # one sample, without the batch dimension
    # FLOPs of one sample's forward pass, counted by torch's FlopCounterMode
    # (2 per multiply-accumulate); None where they could not be counted.
    flops_per_sample: float | None
    params: int | None
    backend: str  # "torch" or "onnx"
    device: str = "cpu"
    dtype: str = "float32"


@dataclass
class Profile:
    """A model's measured batch latency over (batch, cores) on one node."""

    model: ModelInfo
    node: NodeInfo
    measurements: list[Measurement]
    settings: dict[str, Any] = field(default_factory=dict)
    partial: bool = False  # True when profiling was interrupted before every point ran
    created_utc: str = ""
    fit: dict[str, Any] | None = None  # the fitted latency models and their held-out errors

    @property
    def batch_sizes(self) -> list[int]:
        return sorted({m.batch for m in self.measurements})

    @property
    def core_counts(self) -> list[int]:
        return sorted({m.cores for m in self.measurements})

    def to_json(self) -> dict[str, Any]:
        model = asdict(self.model)
        model["input_shape"] = list(self.model.input_shape)
        return {
            "schema": PROFILE_SCHEMA,
            "version": PROFILE_VERSION,
            "partial": self.partial,
            "created_utc": self.created_utc,
            "model": model,
            "node": self.node.to_json(),
            "settings": self.settings,
            "measurements": [asdict(m) for m in self.measurements],
            "fit": self.fit,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Profile:
        check_schema(data, PROFILE_SCHEMA, PROFILE_VERSION)
        model = dict(data["model"])
        model["input_shape"] = tuple(int(d) for d in model["input_shape"])
        measurements = [Measurement(**m) for m in data["measurements"]]
        for m in measurements:
            if m.batch < 1 or m.cores < 1 or not math.isfinite(m.median_ms) or m.median_ms <= 0:
                raise ValueError(f"invalid measurement {m}")
        return cls(
            model=ModelInfo(**model),
            node=NodeInfo.from_json(data["node"]),
            measurements=measurements,
            settings=dict(data.get("settings", {})),
            partial=bool(data.get("partial", False)),
            created_utc=str(data.get("created_utc", "")),
            fit=data.get("fit"),
        )


def check_schema(data: Any, schema: str, version: int) -> None:
    """Refuse a file of another kind or a newer version rather than misread it."""
    if not isinstance(data, dict) or data.get("schema") != schema:
        raise ValueError(f"not a {schema} file (its 'schema' field is missing or different)")
    if data.get("version") != version:
        raise ValueError(
            f"{schema} version {data.get('version')!r} is not supported (want {version})"
        )


def read_json(path: str | Path, what: str) -> Any:
    """Read a JSON file, turning every way it can fail into one line naming the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise UserError(f"{what} is a directory, not a file: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{what} {path} is not valid JSON: {exc}") from None


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write to a temporary file and rename, so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_profile(path: str | Path) -> Profile:
    data = read_json(path, "profile")
    try:
        return Profile.from_json(data)
    except (KeyError, TypeError, ValueError) as exc:
        detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise UserError(f"profile {path} is corrupt: {detail}") from None


def save_profile(profile: Profile, path: str | Path) -> None:
    write_json_atomic(path, profile.to_json())


def load_node(path: str | Path) -> NodeInfo:
    """Read a node file from ``qosbatch node``, or take the node out of a profile."""
    data = read_json(path, "node file")
    try:
        if isinstance(data, dict) and data.get("schema") == PROFILE_SCHEMA:
            return Profile.from_json(data).node
        check_schema(data, NODE_SCHEMA, NODE_VERSION)
        return NodeInfo.from_json(data["node"])
    except (KeyError, TypeError, ValueError) as exc:
        detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise UserError(f"node file {path} is corrupt: {detail}") from None


def save_node(node: NodeInfo, path: str | Path) -> None:
    write_json_atomic(
        path, {"schema": NODE_SCHEMA, "version": NODE_VERSION, "node": node.to_json()}
    )
