"""GraphQL IDs: our IDs are the database's integer keys, sent as strings."""

from __future__ import annotations

import strawberry

from salesinbox.core.errors import invalid_input


def parse_id(value: strawberry.ID | str, *, field: str = "id") -> int:
    """Turn a client-supplied ID into a database key, or raise ``INVALID_INPUT``."""
    text = str(value).strip()
    if not text.isdigit() or len(text) > 18:
        raise invalid_input(f"{value!r} is not a valid id.", field=field)
    return int(text)


def to_id(value: int) -> strawberry.ID:
    """Turn a database key into a GraphQL ID."""
    return strawberry.ID(str(value))
