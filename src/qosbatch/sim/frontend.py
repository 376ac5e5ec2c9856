"""The server's HTTP front end as CPU work on the model's cores, for the simulator.

Live, one asyncio process answers HTTP: it reads each request's body (600 KB
for an image batch), decodes it, copies it into a worker's shared memory, and
encodes and writes the answer, or answers 429 for a request the policy shed.
It runs on the same cores as the model's workers. Its CPU demand follows the
*offered* rate (a shed request is still read and parsed), so under overload it
takes a growing share of the cores from the batches, and the batches run slower
than the profile (taken on an idle machine) says.

``FrontEnd(request_s, result_s)`` gives that demand: ``request_s`` CPU seconds
for every request that arrives, whatever becomes of it, and ``result_s`` more
for each one answered with a result. The kernel (``simulate(..., frontend=)``)
turns the demand of the last ``window_s`` into a share of the node's cores and
stretches each batch's service time by ``1 / (1 - share)`` when it is
dispatched. The share is capped at ``1 / (cores + 1)``: the front end is one
thread, and with every core busy running the model's threads, Linux's fair
scheduler gives each of the ``cores + 1`` runnable threads ``cores / (cores + 1)``
of a core, so the front end can take at most ``1 / (cores + 1)`` of the cores'
time (a half on one core, a third on two), however many requests it is offered.
docs/simulator.md ("The front end's CPU") has the model's assumptions and how to
measure the two numbers.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from dataclasses import dataclass

from qosbatch.core.errors import UserError
from qosbatch.core.units import duration_ms

_ZERO = re.compile(r"^\s*(0+\.?0*|\.0+)\s*(ms|s|us)?\s*$")
_KEYS = {"request": "request_s", "result": "result_s", "window": "window_s"}


@dataclass(frozen=True)
class FrontEnd:
    """CPU seconds the front end spends per request (``request_s``) and per result.

    ``request_s``: every request that arrives costs this much (HTTP, read, parse,
    queue), a shed one included. ``result_s``: a request answered with a result costs
    this much more (copy, encode, write). ``window_s``: how far back the kernel looks
    to measure the front end's demand.
    """

    request_s: float
    result_s: float = 0.0
    window_s: float = 1.0

    def __post_init__(self) -> None:
        for name in ("request_s", "result_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise UserError(f"front end: {name} must be a finite number >= 0, got {value}")
        if not (math.isfinite(self.window_s) and self.window_s > 0):
            raise UserError(f"front end: window_s must be > 0, got {self.window_s}")

    def share(self, arrived: int, results: int, cores: int) -> float:
        """The fraction of ``cores`` the front end takes, from its work over the window.

        ``arrived`` requests and ``results`` answers in the last ``window_s``: their CPU
        seconds over the cores' seconds in the window, at most ``max_share(cores)``.
        """
        demand = (arrived * self.request_s + results * self.result_s) / (self.window_s * cores)
        cap = max_share(cores)
        return demand if demand < cap else cap

    def stretch(self, arrived: int, results: int, cores: int) -> float:
        """The factor a batch dispatched now takes longer by: ``1 / (1 - share)``."""
        return 1.0 / (1.0 - self.share(arrived, results, cores))

    @property
    def spec(self) -> str:
        """The spec string ``parse_frontend`` reads back as this front end."""
        text = f"request={self.request_s * 1e3:g}ms,result={self.result_s * 1e3:g}ms"
        return text if self.window_s == 1.0 else f"{text},window={self.window_s:g}s"


def max_share(cores: int) -> float:
    """The most of ``cores`` one thread gets when all of them run the model's threads.

    Fair sharing among ``cores + 1`` runnable threads gives each ``cores / (cores + 1)``
    of a core: ``1 / (cores + 1)`` of the cores' time. (One thread never gets more than
    one core, ``1 / cores``, which is larger.)
    """
    if cores < 1:
        raise UserError(f"front end: the node needs a core, got {cores}")
    return 1.0 / (cores + 1)


class FrontEndLoad:
    """The front end's work over the last window of a run: what stretches a batch.

    Its demand over the last ``window_s`` (every arrival of every model times
    ``request_s``, every result times ``result_s``), as a share of the node's cores,
    stretches each batch's service time by ``1 / (1 - share)`` when it is dispatched,
    the share capped at ``1 / (cores + 1)`` (``max_share`` says why). The node is the
    simulation's ``node_cores``, or the sum of the deployments' cores when each model
    owns its own: the front end is one per server, so its demand is summed over the
    models and spread over all their cores. Deliberately simple: one share for every
    batch, however many of the cores are busy (so it over-charges a node with idle
    cores, where the front end would run on one of them, and is right when all are
    busy, which is overload, where it matters), fixed for the batch's whole run. The
    policy is not told: it sees its table's prediction and learns the slowdown from
    ``observe``, as it does live. With no front end given, the simulation never asks.

    Arrivals are read from the sorted trace (``times``); results from the completions
    so far, in time order, with the cumulative count of requests answered
    (``answered_before[k]``: before the k-th completion), so both counts in a window
    are two bisections, never a scan.
    """

    def __init__(self, frontend: FrontEnd, times: list[float], cores: int) -> None:
        self.frontend = frontend
        self.times = times
        self.cores = cores
        self.done_s: list[float] = []
        self.answered_before: list[int] = [0]

    def answered(self, now: float, n: int) -> None:
        """A batch of ``n`` completed at ``now``: the front end answers each with a result."""
        self.done_s.append(now)
        self.answered_before.append(self.answered_before[-1] + n)

    def stretch(self, now: float) -> float:
        """How much slower a batch dispatched at ``now`` runs: the front end's share."""
        since = now - self.frontend.window_s
        times = self.times
        arrived = bisect_right(times, now) - bisect_right(times, since)
        answered = self.answered_before
        results = answered[-1] - answered[bisect_right(self.done_s, since)]
        return self.frontend.stretch(arrived, results, self.cores)


def parse_frontend(text: str, where: str = "--frontend") -> FrontEnd:
    """``request=0.6ms,result=0.4ms[,window=1s]`` -> ``FrontEnd``; durations as in --slo.

    ``request`` is required; ``result`` defaults to 0 and ``window`` to 1 s. Each value
    is a duration (``0.6ms``, ``600us``, ``0.0006s``, or a bare number of ms); 0 is
    allowed for request and result.
    """
    values: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or not key:
            raise UserError(f"{where}: expected key=duration, got {part!r} in {text!r}")
        if key not in _KEYS:
            raise UserError(
                f"{where}: unknown key {key!r}; the keys are request, result and window"
            )
        if key in values:
            raise UserError(f"{where}: key {key!r} given twice")
        if key != "window" and _ZERO.match(value):
            values[key] = 0.0
        else:
            values[key] = duration_ms(value.strip(), f"{where} {key}") / 1e3
    if "request" not in values:
        raise UserError(
            f"{where}: give request=DURATION (CPU per request that arrives), e.g. "
            f"request=0.6ms,result=0.4ms; got {text!r}"
        )
    return FrontEnd(**{_KEYS[k]: v for k, v in values.items()})
