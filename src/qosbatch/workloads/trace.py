"""A workload as a trace: arrival time, model and latency budget per request.

The CSV format (workloads.md) is shared by the simulator and the load
generator, so a workload generated once replays on both::

    time_s,model,slo_ms
    0.000132,resnet18,150

time_s is seconds from the start, non-negative and non-decreasing; slo_ms is
that request's budget (> 0). An optional ``priority`` column carries Triton-style
priority levels (1 highest, 0 default); any other column is ignored. A malformed
row is a UserError naming the file and its line. This module and the spec parser
are the only I/O in the workloads package.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from qosbatch.core.errors import UserError
from qosbatch.core.files import read_user_text

REQUIRED_COLUMNS = ("time_s", "model", "slo_ms")


@dataclass(frozen=True)
class Trace:
    """Requests in arrival order, as columns; ``model`` indexes ``models``."""

    time_s: NDArray[np.float64]
    model: NDArray[np.int64]
    models: tuple[str, ...]
    slo_ms: NDArray[np.float64]
    priority: NDArray[np.int64] | None = None  # None: every request at the default level 0

    def __post_init__(self) -> None:
        n = len(self.time_s)
        if len(self.model) != n or len(self.slo_ms) != n:
            raise ValueError("time_s, model and slo_ms must have the same length")
        if self.priority is not None and len(self.priority) != n:
            raise ValueError("priority must have one entry per request")
        if n and (not np.all(np.isfinite(self.time_s)) or self.time_s[0] < 0):
            raise UserError("arrival times must be finite and non-negative")
        if n > 1 and np.any(np.diff(self.time_s) < 0):
            first = int(np.argmax(np.diff(self.time_s) < 0)) + 1
            raise UserError(f"arrival times must be non-decreasing (request {first} goes back)")
        if n and (not np.all(np.isfinite(self.slo_ms)) or np.any(self.slo_ms <= 0)):
            raise UserError("every slo_ms must be a finite number > 0")
        if n and (self.model.min() < 0 or self.model.max() >= len(self.models)):
            raise ValueError("model codes must index models")

    def __len__(self) -> int:
        return len(self.time_s)

    @property
    def deadline_s(self) -> NDArray[np.float64]:
        return self.time_s + self.slo_ms / 1e3

    @property
    def duration_s(self) -> float:
        return float(self.time_s[-1]) if len(self) else 0.0

    def until(self, seconds: float) -> Trace:
        """The requests arriving before ``seconds``, each with its model, budget and priority."""
        keep = self.time_s < seconds
        priority = None if self.priority is None else self.priority[keep]
        return Trace(self.time_s[keep], self.model[keep], self.models, self.slo_ms[keep], priority)

    def scaled(self, factor: float) -> Trace:
        """The same requests arriving ``factor`` times as fast (times divided by it)."""
        if not factor > 0:
            raise UserError(f"a load factor must be > 0, got {factor}")
        return Trace(self.time_s / factor, self.model, self.models, self.slo_ms, self.priority)

    @classmethod
    def of(
        cls,
        time_s: NDArray[np.float64] | list[float],
        slo_ms: NDArray[np.float64] | list[float] | float,
        model: str = "model",
    ) -> Trace:
        """A one-model trace from arrival times and budgets (a scalar budget for all)."""
        t = np.asarray(time_s, dtype=float)
        slo = np.broadcast_to(np.asarray(slo_ms, dtype=float), t.shape).copy()
        return cls(t, np.zeros(len(t), dtype=np.int64), (model,), slo)


def read_trace(path: str | Path, known_models: Collection[str] | None = None) -> Trace:
    """Read a trace CSV; every malformed row is a UserError naming ``path:line``.

    With ``known_models``, a row for any other model is such an error too.
    """
    path = Path(path)
    if path.suffix == ".jsonl":
        return _read_records(path, known_models)
    try:
        f = path.open(newline="")
    except FileNotFoundError:
        raise UserError(f"trace not found: {path}") from None
    except IsADirectoryError:
        raise UserError(f"trace is a directory, not a file: {path}") from None
    with f:
        try:
            return _parse(csv.reader(f), path, known_models)
        except UnicodeDecodeError:
            raise UserError(f"trace {path} is not a text (UTF-8) CSV file") from None
        except csv.Error as exc:
            raise UserError(f"{path}: not a valid CSV file: {exc}") from None


def _parse(reader: Any, path: Path, known: Collection[str] | None) -> Trace:
    header = next(reader, None)
    if header is None:
        raise UserError(f"trace {path} is empty: expected a header {','.join(REQUIRED_COLUMNS)}")
    names = [h.strip() for h in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise UserError(
            f"{path}:1: header lacks column(s) {', '.join(missing)} "
            f"(want {','.join(REQUIRED_COLUMNS)}, got {','.join(names)})"
        )
    it, im, islo = (names.index(c) for c in REQUIRED_COLUMNS)
    ip = names.index("priority") if "priority" in names else None
    width = max(it, im, islo, ip if ip is not None else 0) + 1
    times: list[float] = []
    slos: list[float] = []
    codes: list[int] = []
    prios: list[int] = []
    index: dict[str, int] = {}
    last = 0.0
    for row in reader:
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        where = f"{path}:{reader.line_num}"
        if len(row) < width:
            raise UserError(f"{where}: expected {width} columns, got {len(row)}")
        t = _number(row[it], "time_s", where)
        if t < 0:
            raise UserError(f"{where}: time_s must be >= 0, got {row[it].strip()}")
        if t < last:
            raise UserError(f"{where}: time_s goes back in time ({t} after {last})")
        slo = _number(row[islo], "slo_ms", where)
        if slo <= 0:
            raise UserError(f"{where}: slo_ms must be > 0, got {row[islo].strip()}")
        model = row[im].strip()
        if not model:
            raise UserError(f"{where}: model is empty")
        if known is not None and model not in known:
            raise UserError(
                f"{where}: unknown model {model!r} (known: {', '.join(sorted(known)) or 'none'})"
            )
        if ip is not None:
            text = row[ip].strip() or "0"
            if not text.isdigit():
                raise UserError(f"{where}: priority must be an integer >= 0, got {text!r}")
            prios.append(int(text))
        last = t
        times.append(t)
        slos.append(slo)
        codes.append(index.setdefault(model, len(index)))
    if not times:
        raise UserError(f"trace {path} has no requests (only a header)")
    return Trace(
        np.array(times),
        np.array(codes, dtype=np.int64),
        tuple(index),
        np.array(slos),
        np.array(prios, dtype=np.int64) if ip is not None else None,
    )


def _read_records(path: Path, known: Collection[str] | None) -> Trace:
    """A server's records (``serve --records FILE.jsonl``) as the trace it met.

    One JSON object per line with at least time_s, model and slo_ms (priority if
    there), in the order answered: sorted here by arrival, ties kept in file order.
    The rows are checked by the CSV reader's rules, so an error names ``path:line``.
    """
    text = read_user_text(path, "trace")
    rows: list[tuple[float, int, list[str]]] = []
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{line_no}: not a JSON object: {exc.msg}") from None
        if not isinstance(record, dict):
            raise UserError(f"{path}:{line_no}: not a JSON object")
        missing = [c for c in REQUIRED_COLUMNS if c not in record]
        if missing:
            raise UserError(f"{path}:{line_no}: record lacks {', '.join(missing)}")
        row = [str(record[c]) for c in (*REQUIRED_COLUMNS, "priority") if c in record]
        t = record["time_s"]
        rows.append((t if isinstance(t, int | float) else math.nan, line_no, row))
    rows.sort(key=lambda r: (r[0], r[1]))  # (nan sorts anywhere: _parse names its line)
    header = [*REQUIRED_COLUMNS, "priority"] if all(len(r[2]) == 4 for r in rows) else None
    table = [header or list(REQUIRED_COLUMNS)] + [
        r[2][: len(header or REQUIRED_COLUMNS)] for r in rows
    ]
    return _parse(_Rows(table, [0] + [r[1] for r in rows]), path, known)


class _Rows:
    """Rows with a csv.reader's ``line_num``, so that _parse's errors name the JSONL line."""

    def __init__(self, rows: list[list[str]], lines: list[int]) -> None:
        self._rows = iter(rows)
        self._lines = iter(lines)
        self.line_num = 0

    def __iter__(self) -> _Rows:
        return self

    def __next__(self) -> list[str]:
        row = next(self._rows)
        self.line_num = next(self._lines)
        return row


def _number(text: str, column: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{where}: {column} {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise UserError(f"{where}: {column} must be finite, got {text.strip()}")
    return value


def write_trace(trace: Trace, path: str | Path) -> Path:
    """Write the CSV (times to the nanosecond, budgets to 12 significant digits)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = np.array(trace.models, dtype=object)[trace.model]
    times, slos = np.char.mod("%.9f", trace.time_s), np.char.mod("%.12g", trace.slo_ms)
    cols = [times, names.astype(str), slos]
    header = "time_s,model,slo_ms"
    if trace.priority is not None:
        cols.append(trace.priority.astype(str))
        header += ",priority"
    lines = np.char.add(cols[0], ",")
    for col in cols[1:-1]:
        lines = np.char.add(np.char.add(lines, col), ",")
    lines = np.char.add(lines, cols[-1])
    with path.open("w", newline="") as f:
        f.write(header + "\n")
        if len(lines):
            f.write("\n".join(lines.tolist()))
            f.write("\n")
    return path
