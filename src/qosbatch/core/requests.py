"""Requests and the one record per request that every metric is computed from.

The simulator and the live server both end a request in exactly one of three
outcomes (on time, late, rejected with a reason) and write one ``Record`` for it.
Metrics read records only, so a simulated run and a live run are judged by the
same code. ``RecordTable`` holds many records as columns (numpy arrays): the
simulator produces a million of them and per-row Python objects would cost more
than the simulation itself. Pure data: numpy only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

Outcome = Literal["on_time", "late", "rejected"]
OUTCOMES: tuple[Outcome, ...] = ("on_time", "late", "rejected")
ON_TIME, LATE, REJECTED = 0, 1, 2  # outcome codes in RecordTable.outcome


@dataclass(frozen=True, slots=True)
class Request:
    """One inference request as a policy sees it (the payload never reaches a policy)."""

    id: int  # unique per driver run: the trace row in simulation, a counter live
    model: str
    arrival_s: float  # when it entered the queue, on the driver's clock
    deadline_s: float  # arrival_s + its latency budget (its own SLO)
    priority: int = 0  # Triton's convention: 1 is the highest level; 0 (default) the lowest

    @property
    def budget_s(self) -> float:
        return self.deadline_s - self.arrival_s


@dataclass(frozen=True, slots=True)
class Record:
    """How one request ended. Exactly one per accepted request, in every driver."""

    request_id: int
    model: str
    arrival_s: float
    deadline_s: float
    dispatch_s: float  # when its batch started; nan if rejected
    completion_s: float  # when it was answered: result, or the rejection
    outcome: Outcome
    reason: str = ""  # why it was rejected; empty otherwise
    batch_size: int = 0  # size of the batch it ran in; 0 if rejected
    cores: int = 0  # cores that batch ran on; 0 if rejected
    worker: int = -1  # worker that ran it; -1 if rejected

    @property
    def latency_s(self) -> float:
        return self.completion_s - self.arrival_s


_FLOAT_COLS = ("arrival_s", "deadline_s", "dispatch_s", "completion_s")
_INT_COLS = ("request_id", "outcome", "batch_size", "cores", "worker", "model")


@dataclass(frozen=True)
class RecordTable:
    """Many records as columns; row i of every array is one request.

    ``model`` holds indices into ``models``; ``outcome`` holds ON_TIME, LATE or
    REJECTED. Build one from records with ``from_records``; iterate to get them back.
    """

    models: tuple[str, ...]
    request_id: NDArray[np.int64]
    model: NDArray[np.int64]
    arrival_s: NDArray[np.float64]
    deadline_s: NDArray[np.float64]
    dispatch_s: NDArray[np.float64]
    completion_s: NDArray[np.float64]
    outcome: NDArray[np.int64]
    batch_size: NDArray[np.int64]
    cores: NDArray[np.int64]
    worker: NDArray[np.int64]
    reason: NDArray[np.object_]  # str per row, "" unless rejected

    def __post_init__(self) -> None:
        n = len(self.request_id)
        for f in fields(self):
            if f.name != "models" and len(getattr(self, f.name)) != n:
                raise ValueError(f"column {f.name} has {len(getattr(self, f.name))} rows, not {n}")

    def __len__(self) -> int:
        return len(self.request_id)

    def __iter__(self) -> Iterator[Record]:
        return (self.row(i) for i in range(len(self)))

    def row(self, i: int) -> Record:
        return Record(
            request_id=int(self.request_id[i]),
            model=self.models[int(self.model[i])],
            arrival_s=float(self.arrival_s[i]),
            deadline_s=float(self.deadline_s[i]),
            dispatch_s=float(self.dispatch_s[i]),
            completion_s=float(self.completion_s[i]),
            outcome=OUTCOMES[int(self.outcome[i])],
            reason=str(self.reason[i]),
            batch_size=int(self.batch_size[i]),
            cores=int(self.cores[i]),
            worker=int(self.worker[i]),
        )

    def where(self, mask: NDArray[np.bool_]) -> RecordTable:
        """The rows where ``mask`` is true (e.g. one model's: ``t.model == t.models.index(m)``)."""
        cols = {f.name: getattr(self, f.name)[mask] for f in fields(self) if f.name != "models"}
        return RecordTable(models=self.models, **cols)

    @classmethod
    def from_records(cls, records: Iterable[Record]) -> RecordTable:
        rows = list(records)
        models = tuple(dict.fromkeys(r.model for r in rows))
        index = {m: i for i, m in enumerate(models)}
        cols: dict[str, Any] = {
            name: np.array([getattr(r, name) for r in rows], dtype=float) for name in _FLOAT_COLS
        }
        for name in _INT_COLS:
            if name == "model":
                values: Sequence[int] = [index[r.model] for r in rows]
            elif name == "outcome":
                values = [OUTCOMES.index(r.outcome) for r in rows]
            else:
                values = [getattr(r, name) for r in rows]
            cols[name] = np.array(values, dtype=np.int64)
        cols["reason"] = np.array([r.reason for r in rows], dtype=object)
        return cls(models=models, **cols)

    @classmethod
    def empty(cls) -> RecordTable:
        return cls.from_records([])
