"""core/sync/row_insert.py: the conversions' shortcut gives what ``Field.to_db_value`` gives,
value for value and error for error, on every column of the tables the sync inserts into."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import Any

import pytest

from salesinbox.core.db.models import Attachment, Message, MessageAddress, MessageBody
from salesinbox.core.sync.row_insert import _converter


class _Text(str):
    pass


_VALUES: list[Any] = [None, "", "x", "é" * 20, "y" * 300, "z" * 998, "z" * 999, "w" * 5000,
                      _Text("sub"), 0, 1, -5, 2**40, True, False, 3.0, "17", b"bytes",
                      datetime(2026, 12, 6, tzinfo=UTC), ["a warning"], {"k": 1}]


def _outcome(convert: Any, field: Any, value: Any, model: Any) -> tuple[str, Any]:
    try:
        result = convert(value, model)
    except Exception as exc:  # noqa: BLE001 - the very error is compared
        return "raised", (type(exc), str(exc))
    return "returned", (type(result), result.value if isinstance(result, Enum) else result)


@pytest.mark.parametrize("model", [Message, MessageBody, MessageAddress, Attachment])
def test_shortcut_agrees_with_to_db_value(model: Any) -> None:
    shortcuts = 0
    for name, field in model._meta.fields_map.items():
        if field.has_db_field is False or name == "id":
            continue
        convert = _converter(field)
        shortcuts += convert is not field.to_db_value
        for value in _VALUES:
            assert (_outcome(convert, field, value, model)
                    == _outcome(field.to_db_value, field, value, model)), (name, value)
    assert shortcuts >= 3  # the shortcut is used, not only the fallback


def test_too_long_a_value_still_fails_as_tortoise_says() -> None:
    field = Message._meta.fields_map["from_address"]
    with pytest.raises(Exception, match="Length of"):
        _converter(field)("a" * 1000, Message)
