"""How a request ends (``Answer``) and how the batcher holds it until then (``Waiting``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Answer:
    """How one request ended; the HTTP layer turns it into a response."""

    status: int  # 200 result, 429 shed, 503 not accepted now, 500 failed
    outcome: str  # on_time, late, rejected, error
    output: np.ndarray | None = None
    reason: str = ""
    queued_s: float = 0.0  # arrival to dispatch
    latency_s: float = 0.0  # arrival to answer
    batch_size: int = 0


@dataclass
class Waiting:
    """A request the batcher holds: its tensor, its answer to come, its deadline."""

    tensor: np.ndarray
    future: asyncio.Future[Answer]
    arrival_s: float
    deadline_s: float
    priority: int = 0
