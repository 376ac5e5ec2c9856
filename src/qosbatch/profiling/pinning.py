"""Running work on exactly c cores: CPU affinity plus the backend's thread count.

Affinity alone is not enough (a library would start one thread per machine core
and make them fight over c cores), and a thread count alone is not enough (the
OS would spread the threads over every core). Both together make a measurement
at c cores use c cores.
"""

from __future__ import annotations

import os

from qosbatch.core.errors import UserError


def available_cores() -> list[int]:
    """The CPUs this process may run on, in order."""
    return sorted(os.sched_getaffinity(0))


def check_core_counts(counts: list[int]) -> None:
    have = len(available_cores())
    for c in counts:
        if c < 1:
            raise UserError(f"core counts must be integers >= 1, got {c}")
        if c > have:
            raise UserError(f"{c} cores asked for, but this machine lets us use {have}")


def pin_to_cores(count: int) -> list[int]:
    """Pin this process to the first ``count`` available CPUs and return them."""
    cpus = available_cores()[:count]
    os.sched_setaffinity(0, cpus)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(count)
    return cpus
