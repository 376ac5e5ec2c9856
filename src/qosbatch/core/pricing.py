"""What a configuration costs per million on-time requests: the figure pay-per-use users compare.

Dollars per node-hour say what a machine costs, not what serving costs: a node that
sheds half its load, or idles, costs the same per hour and twice as much per
useful answer. So every comparison prints price x what was billed / on-time
requests, in one of two billings:

* ``core-second`` (pay-per-use, as serverless CPU offers bill): the core-seconds
  the batches actually ran (``Metrics.core_seconds``);
* ``node-hour`` (a rented node): the whole span the node was held, busy or not.

Prices are written ``AMOUNT/UNIT``: ``0.04/core-hour``, ``0.0000112/core-second``,
``0.085/node-hour``. Pure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from qosbatch.core.errors import UserError

_UNITS = {  # unit -> (billing, seconds the amount covers)
    "core-second": ("core-second", 1.0),
    "core-hour": ("core-second", 3600.0),
    "node-hour": ("node-hour", 3600.0),
}


@dataclass(frozen=True)
class Price:
    per_second: float  # dollars per core-second (core-second billing) or per node-second
    billing: str  # "core-second" or "node-hour"
    text: str

    def cost(self, core_seconds: float, span_s: float, nodes: int = 1) -> float:
        if self.billing == "core-second":
            return self.per_second * core_seconds
        return self.per_second * span_s * nodes

    def per_million_on_time(
        self, on_time: int, core_seconds: float, span_s: float, nodes: int = 1
    ) -> float:
        """Dollars per million on-time answers (NaN when none was on time)."""
        if on_time <= 0:
            return math.nan
        return self.cost(core_seconds, span_s, nodes) / on_time * 1e6


def per_million(cost_per_hour: float, per_second: float) -> float:
    """Cost per million of what is delivered ``per_second`` at ``cost_per_hour`` (NaN: none)."""
    if not per_second > 0:
        return math.nan
    return cost_per_hour / (per_second * 3600.0) * 1e6


def parse_price(text: str, where: str = "--price") -> Price:
    """``AMOUNT/UNIT``; a mistake is one line naming ``where`` (the flag, or a file's field)."""
    amount, sep, unit = text.partition("/")
    try:
        value = float(amount.strip().lstrip("$"))
    except ValueError:
        value = math.nan
    if not sep or unit.strip() not in _UNITS or not value >= 0:
        raise UserError(
            f"{where} takes AMOUNT/UNIT with UNIT one of {', '.join(_UNITS)} "
            f"(e.g. 0.04/core-hour), got {text!r}"
        )
    billing, seconds = _UNITS[unit.strip()]
    return Price(value / seconds, billing, text)
