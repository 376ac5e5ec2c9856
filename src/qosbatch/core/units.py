"""Durations as people write them (``200ms``, ``0.2s``, ``1500us``), for the CLI and YAML alike."""

from __future__ import annotations

import re
from typing import Any

from qosbatch.core.errors import UserError

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|us)?\s*$")
_SCALE_MS = {"ms": 1.0, "s": 1e3, "us": 1e-3, None: 1.0}


def duration_ms(value: Any, where: str) -> float:
    """200ms, 0.2s, 1500us, or a bare number of milliseconds -> milliseconds (> 0).

    ``where`` names the option or field in the error (``--slo``, ``models[0].slo``).
    """
    text = str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
    match = _DURATION.match(text) if isinstance(text, str) else None
    if not match:
        raise UserError(f"{where}: expected a duration like 200ms or 0.2s, got {value!r}")
    ms = float(match.group(1)) * _SCALE_MS[match.group(2)]
    if ms <= 0:
        raise UserError(f"{where}: expected a duration > 0, got {value!r}")
    return ms
