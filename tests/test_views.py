"""core/views.py directly: the checks its GraphQL callers may skip when they already did them."""

from __future__ import annotations

import pytest

from salesinbox.core import views
from salesinbox.core.errors import ErrorCode, SalesInboxError
from salesinbox.core.models import RecordKind, User
from salesinbox.core.records import RecordInput, create_record


async def test_record_views_refuse_an_unknown_record_unless_the_caller_verified_it(rep: User) -> None:
    for call in (lambda **kw: views.related_page(rep, 999_999, **kw),
                 lambda **kw: views.record_threads(rep, 999_999, **kw)):
        with pytest.raises(SalesInboxError) as caught:
            await call()
        assert caught.value.code == ErrorCode.NOT_FOUND
        await call(record_verified=True)  # the caller's check stands: an empty answer, no query for it


async def test_page_size_and_cursor_are_validated(rep: User) -> None:
    record = await create_record(rep, RecordKind.CONTACT, RecordInput(last_name="Doe", primary_email="d@x.example"))
    for kwargs, field in (({"first": 0}, "first"), ({"first": views.MAX_PAGE + 1}, "first"),
                          ({"after": "not a cursor"}, "after")):
        with pytest.raises(SalesInboxError) as caught:
            await views.related_page(rep, record.id, **kwargs)
        assert caught.value.code == ErrorCode.INVALID_INPUT and caught.value.field == field
