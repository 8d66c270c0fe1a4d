"""Rows read with plain SQL, decoded as the ORM decodes them.

The busiest reads (a page of messages, its owners and linked records, the record a related
list belongs to) run statements whose text is assembled once and kept, through Tortoise's
connection: the ORM spent more building those statements and turning their rows into models
than the database spent answering them. These helpers give such rows the ORM's Python values.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any

from tortoise import Model
from tortoise.fields import DatetimeField
from tortoise.timezone import get_default_timezone, get_timezone, get_use_tz

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
        if field.field_type in native:
            found.append(None)
        elif isinstance(field, DatetimeField):
            found.append(_datetime_decoder(field))
        else:
            found.append(field.to_python_value)
    return tuple(found)


def _datetime_decoder(field: DatetimeField[Any]) -> Callable[[Any], Any]:
    """``field.to_python_value``, with its commonest case done directly: a UTC datetime (what
    asyncpg returns for ``timestamptz``) moved to the configured zone, as the ORM moves it."""
    zone_name, zone, slow = get_timezone(), get_default_timezone(), field.to_python_value

    def decode(value: Any) -> Any:
        if type(value) is datetime and value.tzinfo is UTC and get_use_tz() and get_timezone() == zone_name:
            return value.astimezone(zone)
        return slow(value)

    return decode


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
