"""GraphQL IDs: our IDs are the database's integer keys, sent as strings."""

from __future__ import annotations

import re

import strawberry

from salesinbox.core.db.models import BIGINT_KEY_MAX, INT_KEY_MAX
from salesinbox.core.errors import invalid_input

# ASCII digits only: str.isdigit() also accepts "²" and "١٢", which int() refuses or reads.
_KEY = re.compile(r"[0-9]{1,19}")


def parse_id(value: strawberry.ID | str, *, field: str = "id", big: bool = False) -> int:
    """Turn a client-supplied ID into a database key, or raise ``INVALID_INPUT`` naming ``field``.

    An ID is a decimal key from 0 to :data:`INT_KEY_MAX`, or to :data:`BIGINT_KEY_MAX` with
    ``big`` (the key of a ``BigIntField`` table): a larger one cannot exist, and PostgreSQL
    would refuse to even compare it with the column.
    """
    text = str(value).strip()
    if _KEY.fullmatch(text) is None or int(text) > (BIGINT_KEY_MAX if big else INT_KEY_MAX):
        shown = repr(value) if len(str(value)) <= 40 else repr(str(value)[:40]) + "…"
        raise invalid_input(f"{shown} is not a valid id: use an id as the API returned it.", field=field)
    return int(text)


def to_id(value: int) -> strawberry.ID:
    """Turn a database key into a GraphQL ID."""
    return strawberry.ID(str(value))
