"""What the server and its workers exchange: specs, tensor layouts, outcomes, errors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from qosbatch.models.loading import ModelRef

CALIBRATION_BATCHES = (1, 2, 4, 8, 16, 32)


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process needs to build its model: picklable, no weights."""

    ref: ModelRef
    backend: str = "torch"
    device: str = "cpu"


@dataclass(frozen=True)
class ModelIO:
    """What the worker learnt from a first batch: dtypes and one sample's shapes."""

    input_dtype: str
    input_shape: tuple[int, ...]
    output_dtype: str
    output_shape: tuple[int, ...]


class WorkerDied(Exception):
    """The worker process ended while it held a batch (or before it became ready)."""


class WorkerFailed(Exception):
    """The model raised on a batch; the worker itself lives on."""


@dataclass(frozen=True)
class BatchOutput:
    """A finished batch: its outputs (a copy, the segment is reused) and the model's time."""

    output: np.ndarray
    service_s: float
