"""Deadlines and budgets as people type them: ``2h``, ``1h30m``, ``90s``; ``5usd``, ``$5``."""

from __future__ import annotations

import math
import re

from qosbatch.core.errors import UserError

_PART = re.compile(r"([0-9]*\.?[0-9]+)\s*(d|h|min|m|s|ms)", re.IGNORECASE)
_SECONDS = {"d": 86400.0, "h": 3600.0, "min": 60.0, "m": 60.0, "s": 1.0, "ms": 1e-3}
_MONEY = re.compile(r"^\s*\$?\s*([0-9]*\.?[0-9]+)\s*([a-z]{3})?\s*$", re.IGNORECASE)


def parse_duration_s(text: str, where: str = "--deadline") -> float:
    """'2h', '90m', '1h30m', '45s', '1.5h' -> seconds (> 0); a bare number is seconds."""
    stripped = text.strip()
    try:
        seconds = float(stripped)
    except ValueError:
        seconds = _units_sum(stripped, where, text)
    if not math.isfinite(seconds) or seconds <= 0:
        raise UserError(f"{where}: expected a duration > 0, got {text!r}")
    return seconds


def _units_sum(stripped: str, where: str, text: str) -> float:
    pos, total = 0, 0.0
    for match in _PART.finditer(stripped):
        if stripped[pos : match.start()].strip():
            break
        total += float(match.group(1)) * _SECONDS[match.group(2).lower()]
        pos = match.end()
    if pos == 0 or stripped[pos:].strip():
        raise UserError(f"{where}: expected a duration like 2h, 90m, 1h30m or 45s, got {text!r}")
    return total


def parse_money(text: str, currency: str, where: str = "--budget") -> float:
    """'5usd', '5 USD', '$5', '5' -> 5.0 in ``currency``; another currency is refused."""
    match = _MONEY.match(text)
    if not match:
        raise UserError(f"{where}: expected an amount like 5usd or $5, got {text!r}")
    unit = (match.group(2) or currency).upper()
    if unit != currency.upper():
        raise UserError(f"{where}: the node catalogue prices in {currency}, not {unit}")
    value = float(match.group(1))
    if value <= 0:
        raise UserError(f"{where}: expected an amount > 0, got {text!r}")
    return value


def format_duration(seconds: float) -> str:
    """A duration for people: 42.0 s, 12m05s, 2h03m."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_money(value: float | None, currency: str) -> str:
    if value is None:
        return "n/a"
    digits = 2 if value >= 100 else 4 if value >= 0.01 else 6
    text = f"{value:,.{digits}f}"
    return f"${text}" if currency == "USD" else f"{text} {currency}"
