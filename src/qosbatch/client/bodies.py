"""Request bodies that share their tensor bytes, so that a backlog costs no memory.

An open-loop client facing an overloaded server holds every request in flight
until it is answered: thousands of them. Each carries the same sample; only its
``parameters`` (the budget) differ. Built whole, a request of alexnet's sample is
3 MB of JSON, and a few thousand in flight held gigabytes (issue 18); encoding the
150,528 floats again for every request also cost the client's core a millisecond
each. Here a body is a tuple of parts: the sample's bytes, encoded once and shared
by every request, and the few bytes that are the request's own. aiohttp writes the
parts one after the other under one Content-Length, so a server sees exactly the
bytes a whole body would have been.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload


class Parts(Payload):
    """A body sent as its parts, without joining them."""

    def __init__(self, parts: tuple[bytes, ...], content_type: str) -> None:
        super().__init__(parts, content_type=content_type)
        self._size = sum(len(p) for p in parts)

    def joined(self) -> bytes:
        return b"".join(self._value)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return self.joined().decode(encoding, errors)

    async def as_bytes(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self.joined()

    async def write(self, writer: AbstractStreamWriter) -> None:
        for part in self._value:
            await writer.write(part)

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        left = self._size if content_length is None else content_length
        for part in self._value:
            if left <= 0:
                return
            await writer.write(part if len(part) <= left else memoryview(part)[:left])
            left -= len(part)


def json_parts(inputs: list[dict[str, Any]]) -> tuple[bytes, Any]:
    """A v2 JSON request's shared head, and a function giving a request's own tail.

    ``tail(parameters)`` closes the object: ``,"parameters":{...}}``, or ``}``
    without parameters, so that head + tail is exactly ``orjson.dumps(request)``.
    """
    whole = orjson.dumps({"inputs": inputs})
    head = whole[:-1]  # without the closing brace

    def tail(parameters: dict[str, Any]) -> bytes:
        if not parameters:
            return b"}"
        return b',"parameters":' + orjson.dumps(parameters) + b"}"

    return head, tail
