"""core/db/raw_rows.py: rows read with plain SQL get the ORM's Python values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from salesinbox.core.db.models import CrmRecord, Message
from salesinbox.core.db.raw_rows import decode, decoders, numbered

DRIVER_VALUES = [
    datetime(2026, 12, 6, 21, 0, 7, 123456, tzinfo=UTC),       # asyncpg's timestamptz: the shortcut
    datetime(2026, 12, 6, 23, 0, tzinfo=timezone(timedelta(hours=2))),
    datetime(2026, 12, 6, 21, 0),                              # naive
    "2026-12-06 21:00:07.123456+00:00",                        # SQLite's text
    None,
]


@pytest.mark.parametrize("dialect", ["postgres", "sqlite"])
@pytest.mark.parametrize("value", DRIVER_VALUES)
def test_datetimes_decode_as_the_orm_decodes_them(dialect: str, value: object) -> None:
    for model, column in ((Message, "date"), (CrmRecord, "created_at")):
        (decoder,) = decoders(model, (column,), dialect)
        expected = None if value is None else model._meta.fields_map[column].to_python_value(value)
        got = decode(value, decoder)
        assert got == expected
        assert getattr(got, "tzinfo", None) == getattr(expected, "tzinfo", None)


def test_native_columns_are_not_converted_and_placeholders_follow_the_driver() -> None:
    assert decoders(Message, ("id", "subject"), "sqlite") == (None, None)
    assert numbered("a = {} AND b = {}", "postgres") == "a = $1 AND b = $2"
    assert numbered("a = {} AND b = {}", "sqlite") == "a = ? AND b = ?"
