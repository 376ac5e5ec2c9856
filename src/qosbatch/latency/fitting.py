"""Fit every latency model to a profile and say, on points left out of the fit, how good each is.

The profiler measures some batch sizes only for validation (``holdout`` points);
models are fitted without them and scored on them, then refitted on everything
for use. The score a user sees is therefore an honest out-of-sample error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from qosbatch.core.errors import UserError
from qosbatch.core.profile import Measurement, Profile
from qosbatch.latency.amdahl import AmdahlModel
from qosbatch.latency.density import DensityModel

ModelKind = Literal["auto", "amdahl", "density"]
MODEL_KINDS: tuple[str, ...] = ("auto", "amdahl", "density")


class LatencyModel(Protocol):
    """Anything that predicts a batch's service time in seconds."""

    name: str

    def predict_s(self, batch: ArrayLike, cores: ArrayLike) -> NDArray[np.float64]: ...

    def to_json(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Error:
    """Absolute percentage error of predictions against measured medians."""

    mape_pct: float
    max_ape_pct: float
    points: int

    def to_json(self) -> dict[str, Any]:
        return {"mape_pct": self.mape_pct, "max_ape_pct": self.max_ape_pct, "points": self.points}


def _arrays(points: Sequence[Measurement]) -> tuple[NDArray, NDArray, NDArray]:
    b = np.array([m.batch for m in points], dtype=float)
    c = np.array([m.cores for m in points], dtype=float)
    s = np.array([m.median_ms for m in points], dtype=float) / 1e3
    return b, c, s


def error_on(model: LatencyModel, points: Sequence[Measurement]) -> Error | None:
    if not points:
        return None
    b, c, s = _arrays(points)
    ape = np.abs(model.predict_s(b, c) - s) / s * 100
    return Error(float(ape.mean()), float(ape.max()), len(points))


def fit_amdahl(points: Sequence[Measurement]) -> AmdahlModel:
    return AmdahlModel.fit(*_arrays(points))


def fit_density(profile: Profile, points: Sequence[Measurement]) -> DensityModel:
    flops = profile.model.flops_per_sample
    if not flops:
        raise UserError(
            f"flops*p/c is not available for {profile.model.name}: its FLOPs were not counted"
        )
    return DensityModel.fit(flops, profile.node.compute_gflops, *_arrays(points))


def _fitters(profile: Profile) -> dict[str, Any]:
    fitters: dict[str, Any] = {"amdahl": fit_amdahl}
    if profile.model.flops_per_sample:
        fitters["density"] = lambda pts: fit_density(profile, pts)
    return fitters


def fit_profile(profile: Profile) -> dict[str, Any]:
    """The ``fit`` section of a profile: each model's parameters and held-out error."""
    train = [m for m in profile.measurements if not m.holdout]
    test = [m for m in profile.measurements if m.holdout]
    if not train:
        raise UserError("the profile has no measurements to fit")
    out: dict[str, Any] = {"models": {}, "cross_core": []}
    for kind, fit in _fitters(profile).items():
        held = error_on(fit(train), test)
        model = fit(profile.measurements)
        out["models"][kind] = {
            "params": model.to_json(),
            "heldout": held.to_json() if held else None,
            "in_sample": error_on(model, profile.measurements).to_json(),  # type: ignore[union-attr]
        }
    if "density" in out["models"]:
        out["cross_core"] = [e.to_json() for e in cross_core_errors(profile)]
    out["best"] = best_kind(out["models"])
    return out


def best_kind(models: dict[str, Any]) -> str:
    """The model with the lowest held-out error (in-sample where nothing was held out)."""

    def score(kind: str) -> float:
        entry = models[kind]
        return (entry["heldout"] or entry["in_sample"])["mape_pct"]

    return min(models, key=score)


@dataclass(frozen=True)
class CrossCoreError:
    """flops*p/c fitted at ``from_cores`` only, predicting every batch at ``to_cores``."""

    from_cores: int
    to_cores: int
    error: Error

    def to_json(self) -> dict[str, Any]:
        return {"from_cores": self.from_cores, "to_cores": self.to_cores, **self.error.to_json()}


def cross_core_errors(profile: Profile) -> list[CrossCoreError]:
    """Predict each other core count from the smallest one: the test of the representation."""
    cores = profile.core_counts
    if len(cores) < 2 or not profile.model.flops_per_sample:
        return []
    base = cores[0]
    model = fit_density(profile, [m for m in profile.measurements if m.cores == base])
    out = []
    for target in cores[1:]:
        err = error_on(model, [m for m in profile.measurements if m.cores == target])
        assert err is not None  # target came from the measurements, so it has points
        out.append(CrossCoreError(base, target, err))
    return out


def latency_model(profile: Profile, kind: ModelKind = "auto") -> LatencyModel:
    """The fitted model of ``kind`` for this profile, refitted on all its points."""
    if kind not in MODEL_KINDS:
        raise UserError(f"unknown latency model {kind!r}; choose one of {', '.join(MODEL_KINDS)}")
    if kind == "auto":
        kind = (profile.fit or fit_profile(profile))["best"]
    if kind == "density":
        return fit_density(profile, profile.measurements)
    return fit_amdahl(profile.measurements)
