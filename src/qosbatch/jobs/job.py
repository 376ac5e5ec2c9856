"""A job on this machine, put together: what identifies it, its part layout, its (b, k).

The pieces between the command line and the runner: the manifest identity that
makes a rerun resume (and a different job refuse the folder), the part size,
and the batch size and cores to start with (given, planned from a profile, or
defaults when there is no profile).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from qosbatch.core.errors import UserError
from qosbatch.core.profile import Profile
from qosbatch.jobs.inputs import JobInput
from qosbatch.jobs.plan import JobConfig, JobSettings, plan_local, predict_one
from qosbatch.models.loading import ModelRef
from qosbatch.planner.service import ModelService

PART_SECONDS = 10.0  # a part holds about this much compute: what a kill -9 can cost
DEFAULT_BATCH = 16  # without a profile
# A local run's time beside its batches: imports, model load, first-batch warm-up,
# assembling outputs.npy. Measured 1.1-2.3 s for alexnet jobs here (docs/jobs.md).
LOCAL_STARTUP_S = 2.0
MAX_PART_BYTES = 256 * 2**20  # of input per part, so a part's buffers stay small


def identity(ref: ModelRef, backend: str, job_input: JobInput) -> dict[str, Any]:
    """What must match for a rerun to resume into an output folder."""
    return {
        "model": {
            "name": ref.name,
            "source": ref.source,
            "target": ref.target,
            "input_shape": list(ref.input_shape),
            "seed": ref.seed,
        },
        "backend": backend,
        "n": job_input.n,
        "input": job_input.fingerprint(),
    }


def part_size(batch: int, batch_s: float | None, job_input: JobInput) -> int:
    """Samples per part: about PART_SECONDS of work, a multiple of the batch."""
    batches = 16 if batch_s is None else max(1, round(PART_SECONDS / batch_s))
    sample_bytes = math.prod(job_input.sample_shape) * np.dtype(job_input.dtype).itemsize
    batches = max(1, min(batches, MAX_PART_BYTES // max(1, sample_bytes * batch)))
    return max(1, min(batch * batches, job_input.n))


def available_cores() -> int:
    return len(os.sched_getaffinity(0))


@dataclass(frozen=True)
class LocalChoice:
    """The (b, k) a local run starts with, and what is predicted of it."""

    batch: int
    cores: int
    config: JobConfig | None  # None: no profile, nothing predicted
    meets_deadline: bool
    adapt: bool  # planned (re-plan on drift) or given (keep)


def choose_local(
    samples: int,
    profile: Profile | None,
    batch: int | None,
    cores: int | None,
    deadline_s: float | None,
    settings: JobSettings,
) -> tuple[LocalChoice, ModelService | None]:
    """Given values where given, the plan for the rest; defaults without a profile."""
    top = available_cores()
    if cores is not None and cores > top:
        raise UserError(f"--cores {cores}: this process may use only {top} cores")
    if profile is None:
        choice = LocalChoice(batch or DEFAULT_BATCH, cores or top, None, True, False)
        return choice, None
    largest = max(m.batch for m in profile.measurements)
    service = ModelService.from_profile(profile, max_cores=top, max_batch=max(largest, batch or 1))
    if batch is not None and cores is not None:
        config = predict_one(samples, service, batch, cores, settings)
        meets = deadline_s is None or config.guarded_s <= deadline_s
        return LocalChoice(batch, cores, config, meets, False), service
    config, meets = plan_local(
        samples, service, cores or top, deadline_s, settings, min_cores=cores or 1
    )
    if batch is not None:  # the given batch on the planned cores
        config = predict_one(samples, service, batch, config.cores, settings)
        meets = deadline_s is None or config.guarded_s <= deadline_s
    adapt = batch is None and cores is None
    return LocalChoice(config.batch, config.cores, config, meets, adapt), service
