"""Latency models fitted to a profile: pure numpy/scipy, no torch, no I/O."""

from qosbatch.latency.amdahl import AmdahlModel
from qosbatch.latency.density import DensityModel
from qosbatch.latency.fitting import (
    MODEL_KINDS,
    LatencyModel,
    cross_core_errors,
    error_on,
    fit_profile,
    latency_model,
)

__all__ = [
    "MODEL_KINDS",
    "AmdahlModel",
    "DensityModel",
    "LatencyModel",
    "cross_core_errors",
    "error_on",
    "fit_profile",
    "latency_model",
]
