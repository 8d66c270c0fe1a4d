"""core/sharing/views.py directly: the checks its GraphQL callers may skip when they already did them."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from functools import partial

import pytest
from tortoise import connections

from salesinbox.core.crm.records import RecordInput, create_record
from salesinbox.core.db.models import Message, RecordKind, User
from salesinbox.core.errors import ErrorCode, SalesInboxError
from salesinbox.core.sharing import threads, views

from .test_policy import write_account, write_message


async def test_record_views_refuse_an_unknown_record_unless_the_caller_verified_it(rep: User) -> None:
    for call in (lambda **kw: views.related_page(rep, 999_999, **kw),
                 lambda **kw: threads.thread_page(rep, 999_999, **kw)):
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
        for call in (partial(threads.thread_page, rep, record.id, **kwargs),
                     partial(threads.thread_messages, rep, [], **kwargs)):
            with pytest.raises(SalesInboxError) as caught:
                await call()
            assert caught.value.code == ErrorCode.INVALID_INPUT and caught.value.field == field


async def test_text_search_finds_what_contains_the_text_with_or_without_the_sqlite_index(rep: User) -> None:
    account = await write_account(rep, "PRIVATE", "rep@acme.test")
    rng = random.Random(5)
    alphabet = "abcAB C%_\"'.-@xyz"

    def text(n: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(n))

    messages = []
    for uid in range(60):
        message = await write_message(account, uid, datetime(2026, 1, 1, tzinfo=UTC), [])
        message.subject, message.from_name, message.from_address = text(12), text(6), text(8).lower()
        await message.save()
        messages.append(message)
    # The index follows edits and deletions (the triggers of migration 0005).
    messages[0].subject = "Quarterly offer for Initech"
    await messages[0].save()
    await messages[1].delete()
    kept = messages[:1] + messages[2:]
    indexed = await views._sqlite_search_index_pays("Quarterly")
    assert indexed == (connections.get("default").capabilities.dialect == "sqlite")

    def expected(term: str) -> set[int]:
        needle = term.strip().lower()
        return {m.id for m in kept
                if any(needle in field.lower() for field in (m.subject, m.from_name, m.from_address))}

    terms = ["offer FOR init", "Quarterly", "ab", "zzz", '"a', "%_", "x.y", " c% "]
    for _ in range(120):
        source = rng.choice(kept)
        field = rng.choice((source.subject, source.from_name, source.from_address))
        start = rng.randrange(len(field))
        terms.append(field[start:start + rng.randint(1, 6)])
        terms.append(text(rng.randint(1, 4)))
    for term in terms:
        if not term.strip():
            continue
        want = expected(term)
        for use_index in {False, indexed}:
            got = set(
                await Message.filter(views.text_search(term, sqlite_index=use_index)).values_list("id", flat=True)
            )
            assert got == want, (term, use_index)
    assert {m.id for m in (await views.inbox_page(rep, views.InboxFilter(search="quarterly OFFER"))).items} == {
        messages[0].id
    }


async def test_sqlite_asks_the_index_only_for_text_it_finds_rarely(rep: User, monkeypatch: pytest.MonkeyPatch) -> None:
    account = await write_account(rep, "PRIVATE", "rep@acme.test")
    for uid in range(6):
        message = await write_message(account, uid, datetime(2026, 1, 1 + uid, tzinfo=UTC), [])
        message.subject = "Weekly report" if uid < 5 else "Invoice 42"
        await message.save()
    monkeypatch.setattr(views, "_SELECTIVE_MATCHES", 3)
    sqlite = connections.get("default").capabilities.dialect == "sqlite"
    assert await views._sqlite_search_index_pays("invoice") is sqlite
    assert await views._sqlite_search_index_pays("weekly") is False  # 5 matches: scan instead
    assert await views._sqlite_search_index_pays("in") is False  # under 3 characters
    for term, count in (("invoice", 1), ("weekly", 5), ("e", 6)):
        page = await views.inbox_page(rep, views.InboxFilter(search=term))
        assert len(page.items) == count, term
