"""Reading fields of a parsed YAML mapping, with errors that name the field.

A catalogue or workload file is a user's hand-written YAML; a mistake in it must
come back as one line that says where (``models[1].rate``), what was expected and
what was found, never a KeyError traceback. ``Fields`` wraps one mapping and its
location; every getter raises ``UserError`` with that location. Pure: it reads
dicts that a caller has already parsed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from qosbatch.core.errors import UserError


class Fields:
    """One mapping of a YAML document and where it sits (``file: models[0]``)."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, Mapping):
            raise UserError(f"{where}: expected a mapping of fields, got {_kind(data)}")
        self.data = data
        self.where = where

    def at(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def check_known(self, known: Iterable[str]) -> None:
        """Refuse a misspelt field rather than silently ignore it."""
        names = list(known)
        for key in self.data:
            if key not in names:
                raise UserError(
                    f"{self.at(str(key))}: unknown field (known fields: {', '.join(names)})"
                )

    def has(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def required(self, key: str) -> Any:
        if not self.has(key):
            raise UserError(f"{self.at(key)}: missing (required)")
        return self.data[key]

    def text(self, key: str, default: str | None = None) -> str | None:
        if not self.has(key):
            return default
        value = self.data[key]
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise UserError(f"{self.at(key)}: expected text, got {_kind(value)}")
        return str(value)

    def number(
        self,
        key: str,
        default: float | None = None,
        *,
        positive: bool = False,
        minimum: float | None = None,
        maximum: float | None = None,
        required: bool = False,
    ) -> float | None:
        """A finite number; ``positive`` means > 0, ``minimum``/``maximum`` are inclusive."""
        if not self.has(key):
            if required:
                raise UserError(f"{self.at(key)}: missing (required)")
            return default
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UserError(f"{self.at(key)}: expected a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise UserError(f"{self.at(key)}: expected a finite number, got {value!r}")
        if positive and value <= 0:
            raise UserError(f"{self.at(key)}: expected a number > 0, got {value:g}")
        if minimum is not None and value < minimum:
            raise UserError(f"{self.at(key)}: expected a number >= {minimum:g}, got {value:g}")
        if maximum is not None and value > maximum:
            raise UserError(f"{self.at(key)}: expected a number <= {maximum:g}, got {value:g}")
        return value

    def integer(
        self, key: str, default: int | None = None, *, minimum: int = 1, required: bool = False
    ) -> int | None:
        if not self.has(key):
            if required:
                raise UserError(f"{self.at(key)}: missing (required)")
            return default
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{self.at(key)}: expected an integer, got {value!r}")
        if value < minimum:
            raise UserError(f"{self.at(key)}: expected an integer >= {minimum}, got {value}")
        return int(value)

    def integers(self, key: str, default: tuple[int, ...] | None = None) -> tuple[int, ...] | None:
        """A list of integers >= 1, sorted and without repeats."""
        if not self.has(key):
            return default
        value = self.data[key]
        if not isinstance(value, list) or not value:
            raise UserError(f"{self.at(key)}: expected a non-empty list of integers, got {value!r}")
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, int) or item < 1:
                raise UserError(f"{self.at(key)}[{i}]: expected an integer >= 1, got {item!r}")
        return tuple(sorted(set(value)))

    def items(self, key: str) -> list[Fields]:
        """A required non-empty list of mappings, each wrapped with its index."""
        value = self.required(key)
        if not isinstance(value, list) or not value:
            raise UserError(f"{self.at(key)}: expected a non-empty list, got {_kind(value)}")
        return [Fields(item, f"{self.at(key)}[{i}]") for i, item in enumerate(value)]


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return repr(value)
