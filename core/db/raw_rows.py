"""Rows read with plain SQL, decoded as the ORM decodes them.

The busiest reads (a page of messages, its owners and linked records, the record a related
list belongs to) run statements whose text is assembled once and kept, through Tortoise's
connection: the ORM spent more building those statements and turning their rows into models
than the database spent answering them. These helpers give such rows the ORM's Python values.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from tortoise import Model

_Decoder = Callable[[Any], Any] | None


@cache
def decoders(model: type[Model], columns: tuple[str, ...], dialect: str) -> tuple[_Decoder, ...]:
    """Per column of ``model``, the ORM's conversion of the driver's value, or ``None`` where
    the driver's value already is the Python one (ints and strings; asyncpg's booleans)."""
    fields = model._meta.fields_map
    native = (int, str, bool) if dialect == "postgres" else (int, str)
    found: list[_Decoder] = []
    for column in columns:
        field = fields[column]
        found.append(None if field.field_type in native else field.to_python_value)
    return tuple(found)


def decode(value: Any, decoder: _Decoder) -> Any:
    """``value`` as the ORM returns it, by a decoder of :func:`decoders`."""
    return value if decoder is None or value is None else decoder(value)


def numbered(text: str, dialect: str) -> str:
    """``text`` with its ``{}`` placeholders as the driver's: ``$1, $2…`` or ``?``."""
    parts = text.split("{}")
    if dialect != "postgres":
        return "?".join(parts)
    out = parts[0]
    for n, part in enumerate(parts[1:], start=1):
        out += f"${n}" + part
    return out
