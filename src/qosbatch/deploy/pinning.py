"""Cores for a Ray replica: claimed on its node, since Ray hands out CPU counts, not CPU ids.

Ray's ``num_cpus`` is a resource count for scheduling. Unlike GPUs (whose ids
``get_accelerator_ids`` returns), no CPU ids come with it, so every replica on a
node would run on every core and their threads would fight. Each replica claims
ids itself instead: one lock file per CPU id in a directory shared by the node's
replicas, held by ``flock`` for the replica's life. The kernel drops the lock
when the process dies, so a replica that crashes frees its cores with no
clean-up step, and the replica Ray starts in its place can claim them.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)


class CoreClaim:
    """CPU ids this process holds on its node, one locked file each, until ``close``."""

    def __init__(self, cpus: tuple[int, ...], fds: list[int]) -> None:
        self.cpus = cpus
        self._fds = fds

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)  # closing the only descriptor drops its flock
        self._fds = []


def claim_cores(count: int, directory: Path, candidates: Iterable[int]) -> CoreClaim | None:
    """``count`` of ``candidates`` that no other claimer holds, or None (and nothing held).

    A claim is all or nothing: a replica with fewer cores than its plan says would
    run slower than the plan predicted and still look pinned.
    """
    directory.mkdir(parents=True, exist_ok=True)
    held: list[tuple[int, int]] = []
    for cpu in candidates:
        if len(held) == count:
            break
        fd = os.open(directory / f"cpu-{cpu}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another replica's
            os.close(fd)
            continue
        held.append((cpu, fd))
    claim = CoreClaim(tuple(c for c, _ in held), [fd for _, fd in held])
    if len(held) < count:
        claim.close()
        return None
    return claim


def pin_process(cpus: tuple[int, ...]) -> None:
    """Every thread of this process on ``cpus``; threads started later inherit it.

    ``sched_setaffinity(0)`` sets the calling thread only, and Ray's worker already
    runs several (the event loop's among them), hence one call per thread.
    """
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:  # no /proc: this thread, and those it starts
        tids = [0]
    for tid in tids:
        try:
            os.sched_setaffinity(tid, cpus)
        except (ProcessLookupError, PermissionError):  # a thread that just ended
            continue


def claim_dir(session: str) -> Path:
    """The node's claim directory for one Ray session (a new session starts afresh)."""
    return Path(tempfile.gettempdir()) / f"qosbatch-cores-{session}"


def pin_replica(label: str, count: int, session: str) -> CoreClaim | None:
    """Claim ``count`` cores of this node and pin this process to them; None: unpinned.

    Keep the claim for the replica's life (dropping it frees the cores to others).
    """
    candidates = sorted(os.sched_getaffinity(0))
    claim = claim_cores(count, claim_dir(session), candidates)
    if claim is None:
        log.warning(
            "qosbatch: %s: fewer than %d of this node's %d CPU(s) are free of other "
            "replicas' claims; running unpinned",
            label,
            count,
            len(candidates),
        )
        return None
    pin_process(claim.cpus)
    return claim
