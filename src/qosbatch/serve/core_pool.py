"""The CPUs batches run on, lent per batch: one pool per model, or one for all models.

Each batch holds the CPUs its policy asked for (``Dispatch.cores``) from dispatch
to completion; the worker re-pins itself to them (in-place vertical scaling). A
model that owns its CPUs has a pool of its own. With ``serve --share-cores``, all
models draw from one pool of the node's CPUs: a busy model's policy finds the
cores an idle model is not using and takes them for its next batch, and gives
them back when it completes, so the division of the node follows the load batch
by batch instead of a split fixed at start. Every batcher drawing from a pool is
woken when CPUs come back, since another model may be waiting for them.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable


class CorePool:
    """Which CPUs are held by which running batch; the rest are free."""

    def __init__(self, cpus: tuple[int, ...]) -> None:
        if not cpus or len(set(cpus)) != len(cpus):
            raise ValueError(f"a core pool needs distinct CPUs, got {cpus}")
        self.cpus = cpus
        self._held: dict[Hashable, tuple[int, ...]] = {}
        self._free = list(cpus)
        self._listeners: list[Callable[[], None]] = []

    @property
    def free(self) -> int:
        return len(self._free)

    def listen(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` whenever CPUs are given back."""
        self._listeners.append(wake)

    def take(self, holder: Hashable, n: int) -> tuple[int, ...]:
        """``n`` free CPUs for ``holder`` (a running batch), lowest first."""
        if holder in self._held:
            raise ValueError(f"{holder!r} already holds CPUs {self._held[holder]}")
        if not 1 <= n <= len(self._free):
            raise ValueError(f"{n} CPUs asked for, {len(self._free)} free")
        self._free.sort()
        got, self._free = tuple(self._free[:n]), self._free[n:]
        self._held[holder] = got
        return got

    def give(self, holder: Hashable) -> int:
        """Return what ``holder`` held (nothing if it held none); how many CPUs came back."""
        cpus = self._held.pop(holder, ())
        self._free.extend(cpus)
        if cpus:
            for wake in self._listeners:
                wake()
        return len(cpus)

    def holds(self, holder: Hashable) -> bool:
        return holder in self._held
