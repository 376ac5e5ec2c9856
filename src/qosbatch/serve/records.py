"""Server-side records: one JSON line per request the batcher answered.

Recorded in production, replayed offline: ``qosbatch simulate --trace FILE.jsonl``
reads the arrival time, model, budget and priority of every line and runs any
policy on exactly the load the server met. The other fields say what the server
did (outcome, when it dispatched and answered, on how many cores, which worker),
with the names and meaning of the simulator's records (``core.requests``), so that
a live run and its simulation can be compared request by request.

Times are seconds since the server started (its loop's clock), rounded to the
microsecond. Lines are buffered and flushed about once a second and at shutdown:
a crash loses at most the last second, never a line half written.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import IO

import orjson

from qosbatch.core.errors import UserError

FLUSH_EVERY_S = 1.0


class RecordWriter:
    """Appends records to ``path`` (truncated on open); ``close`` flushes the rest."""

    def __init__(self, path: str | Path, origin_s: float) -> None:
        self.path = Path(path)
        try:
            self._file: IO[bytes] | None = self.path.open("wb")
        except OSError as exc:
            raise UserError(f"cannot write records to {self.path}: {exc.strerror}") from None
        self.origin_s = origin_s
        self._lines: list[bytes] = []
        self._flushed = time.monotonic()
        self.written = 0

    def write(
        self,
        model: str,
        arrival_s: float,
        budget_s: float,
        priority: int,
        outcome: str,
        status: int,
        completion_s: float,
        reason: str = "",
        dispatch_s: float = math.nan,
        batch_size: int = 0,
        cores: int = 0,
        worker: int = -1,
    ) -> None:
        o = self.origin_s
        record = {
            "time_s": round(arrival_s - o, 6),
            "model": model,
            "slo_ms": round(budget_s * 1e3, 6),  # (a deadline minus an arrival: noise past µs)
            "priority": priority,
            "outcome": outcome,
            "status": status,
            "dispatch_s": None if math.isnan(dispatch_s) else round(dispatch_s - o, 6),
            "completion_s": round(completion_s - o, 6),
            "batch_size": batch_size,
            "cores": cores,
            "worker": worker,
            "reason": reason,
        }
        self._lines.append(orjson.dumps(record) + b"\n")
        if time.monotonic() - self._flushed >= FLUSH_EVERY_S:
            self.flush()

    def flush(self) -> None:
        if self._file is None or not self._lines:
            return
        self._file.write(b"".join(self._lines))
        self._file.flush()
        self.written += len(self._lines)
        self._lines.clear()
        self._flushed = time.monotonic()

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None
