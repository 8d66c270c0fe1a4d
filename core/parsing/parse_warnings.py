"""The warnings of one parsed message: every guess the decoders make (an unknown charset,
bytes that are not what the charset says, raw 8-bit header bytes) is reported here in a short
sentence, and the text is still produced."""

from __future__ import annotations

import re

__all__ = ["MAX_WARNINGS", "Warnings"]

MAX_WARNINGS = 50


class Warnings:
    """Collects a message's warnings: each once, in order, at most :data:`MAX_WARNINGS`."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: dict[str, None] = {}

    def __call__(self, text: str) -> None:
        if len(self._items) < MAX_WARNINGS:  # storable even if a part name slipped in a NUL
            self._items[_SURROGATE.sub("\ufffd", text[:300].replace("\x00", ""))] = None
        else:
            self._items.setdefault("more warnings not shown", None)

    def as_tuple(self) -> tuple[str, ...]:
        return tuple(self._items)


_SURROGATE = re.compile("[\ud800-\udfff]")
