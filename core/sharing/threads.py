"""A lead's or contact's mail grouped by conversation (docs/views.md#threads), in pages.

A thread of a record is the mail of its Emails related list (linked to it, visible to the
viewer, see :func:`~.visibility.visible_messages_for_record`) that shares a thread key (the
conversation in its account, set by the store: see :mod:`..db.thread_keys`); a message without
a key is a thread of its own. Threads come most recently active first, by the (date, id) of
their newest message, which is also what a cursor points after.

A page of threads is found by walking the related list newest first from the cursor, through
the index ``message_link(record_id, date, message_id)``, until ``first + 1`` threads have shown
their newest message; a thread that also has mail at the cursor or newer was on an earlier
page and is skipped. So a page reads the mail from the cursor to its last thread's newest
message (ids, dates and keys), then counts its threads: at any depth, as the related list. The
messages of a thread come in pages of their own, oldest first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise.expressions import Q
from tortoise.functions import Count, Min
from tortoise.queryset import QuerySet

from ..crm.records import get_record
from ..db.models import Message, User
from ..db.orm_values import column_values
from .views import Page, beyond, check_page_size, cursor_at, decode_cursor, encode_cursor, page_of
from .visibility import visible_messages_for_record

_DATE = "links__date"  # the link's copy of the message date: the record's index orders by it
_SCAN_MAX = 1000  # most messages read per step of a thread page's walk (the first reads 2 × first + 2)
_Row = tuple[int, datetime, str | None]  # a message's id, date and thread key


@dataclass(frozen=True)
class ThreadRef:
    """One thread of one record's related list, as the viewer sees it (hashable: a loader key).

    ``lone_id``: the message that is the whole thread, when it has no thread key.
    ``message_count``: its count when listed; a hint (reading small threads together), never
    trusted for the answer.
    """

    record_id: int
    shared_by: int | None
    key: str
    lone_id: int | None
    message_count: int


@dataclass(frozen=True)
class Thread:
    """A thread of a page: the subject of its oldest visible message, the date of its newest."""

    ref: ThreadRef
    subject: str
    latest_date: datetime


@dataclass(frozen=True)
class ThreadPage:
    """One page of threads and the cursor of the next one (``None`` at the end)."""

    items: list[Thread]
    next_cursor: str | None


def thread_key(message: Message) -> str:
    """The key of the message's thread (``message:<id>`` when it has none)."""
    return _key(message.thread_key, message.id)


def _key(key: str | None, message_id: int) -> str:
    return key or f"message:{message_id}"


async def thread_page(
    viewer: User, record_id: int, *, shared_by: int | None = None, first: int = 20,
    after: str | None = None, record_verified: bool = False,
) -> ThreadPage:
    """A page of the record's threads, most recently active first (see the module docstring).

    ``first``: 1 to :data:`~.views.MAX_PAGE`, else ``INVALID_INPUT``; ``after``: the
    ``next_cursor`` of the previous page. ``record_verified``: the caller already loaded the
    record from the viewer's organisation (else ``NOT_FOUND`` for another one's).
    """
    check_page_size(first)
    position = decode_cursor(after) if after else None
    if not record_verified:
        await get_record(viewer, record_id)
    base = visible_messages_for_record(viewer, record_id, shared_by)
    newest: dict[str, _Row] = {}  # thread key -> its newest message, in walk order
    earlier: set[str] = set()  # keys of threads shown on earlier pages
    scan, size = position, min(2 * (first + 1), _SCAN_MAX)
    while len(newest) <= first:
        query = base if scan is None else base.filter(beyond(scan, _DATE))
        # Ids, dates and keys only: a walk may pass over many messages of threads already seen.
        batch: list[_Row] = await query.order_by(f"-{_DATE}", "-id").limit(size).values_list(
            "id", "date", "thread_key")
        if position is not None:
            unseen = {key for _, _, key in batch if key} - newest.keys() - earlier
            if unseen:
                earlier |= await _keys_with_mail_from(base, unseen, position)
        for row in batch:
            key = _key(row[2], row[0])
            if key not in newest and key not in earlier:
                newest[key] = row
                if len(newest) > first:
                    break
        if len(batch) < size:
            break
        scan, size = (batch[-1][1], batch[-1][0]), min(2 * size, _SCAN_MAX)
    shown = list(newest.values())[:first]
    items = await _describe(base, record_id, shared_by, shown)
    last = (shown[-1][1], shown[-1][0]) if shown else None
    return ThreadPage(items=items, next_cursor=cursor_at(last) if last and len(newest) > first else None)


async def _keys_with_mail_from(base: QuerySet[Message], keys: set[str], position: tuple[datetime, int]) -> set[str]:
    """Which of ``keys`` have a message at ``position`` or newer (their page came before)."""
    when, key = position
    later: dict[str, Any] = {f"{_DATE}__gt": when}  # Any: Q's keywords include join_type: str
    same_date_later_id: dict[str, Any] = {_DATE: when, "id__gte": key}
    newer = Q(**later) | Q(**same_date_later_id)
    return set(await column_values(base.filter(newer, thread_key__in=sorted(keys)).distinct(), "thread_key"))


async def _describe(base: QuerySet[Message], record_id: int, shared_by: int | None,
                    newest: list[_Row]) -> list[Thread]:
    """The threads whose newest messages are ``newest``: counts and subjects, two queries."""
    keys = sorted({key for _, _, key in newest if key})
    lone = [message_id for message_id, _, key in newest if not key]
    counts: dict[str, int] = {}
    oldest = [Q(id__in=lone)] if lone else []
    if keys:
        rows = await base.filter(thread_key__in=keys).annotate(n=Count("id"), oldest=Min("date")).group_by(
            "thread_key").values_list("thread_key", "n", "oldest")
        counts = {key: n for key, n, _ in rows}
        # The oldest messages: the earliest date of each thread, the lowest id among equals.
        oldest += [Q(thread_key=key, date=when) for key, _, when in rows]
    subjects: dict[str, str] = {}
    if oldest:
        found = await base.filter(Q(*oldest, join_type=Q.OR)).values_list("id", "thread_key", "subject")
        for message_id, key, subject in sorted(found):  # by id: the lowest first
            subjects.setdefault(_key(key, message_id), subject)
    threads = []
    for message_id, date, key in newest:
        ref = ThreadRef(record_id, shared_by, _key(key, message_id), None if key else message_id,
                        counts.get(key, 1) if key else 1)
        threads.append(Thread(ref, subjects.get(ref.key, ""), date))
    return threads


async def thread_messages(viewer: User, refs: Sequence[ThreadRef], *, first: int = 50,
                          after: str | None = None) -> list[Page]:
    """For each thread, a page of its messages the viewer may see, oldest first.

    ``first``/``after`` as for :func:`thread_page` (``after``: a ``next_cursor`` of the same
    thread). The first pages of threads that fit whole in them are read in one query per
    record; other pages, one query each.
    """
    check_page_size(first)
    if after:
        decode_cursor(after)
    pages: dict[ThreadRef, Page] = {}
    together: dict[tuple[int, int | None], list[ThreadRef]] = defaultdict(list)
    for ref in refs:
        if after is None and ref.message_count <= first:
            together[(ref.record_id, ref.shared_by)].append(ref)
    for (record_id, shared_by), group in together.items():
        pages.update(await _whole_threads(viewer, record_id, shared_by, group, first))
    for ref in refs:
        if ref not in pages:
            pages[ref] = await page_of(_of_thread(viewer, ref), first, after, date_field=_DATE, ascending=True)
    return [pages[ref] for ref in refs]


def _of_thread(viewer: User, ref: ThreadRef) -> QuerySet[Message]:
    base = visible_messages_for_record(viewer, ref.record_id, ref.shared_by)
    return base.filter(id=ref.lone_id) if ref.lone_id is not None else base.filter(thread_key=ref.key)


async def _whole_threads(viewer: User, record_id: int, shared_by: int | None, refs: list[ThreadRef],
                         first: int) -> dict[ThreadRef, Page]:
    """First pages of threads expected to fit in them, in one query (checked: a thread that
    grew since it was counted still gets a right page, and a full read falls back to one
    query per thread)."""
    keys = [r.key for r in refs if r.lone_id is None]
    lone = [r.lone_id for r in refs if r.lone_id is not None]
    limit = len(refs) * (first + 1)
    base = visible_messages_for_record(viewer, record_id, shared_by)
    rows = await base.filter(Q(thread_key__in=keys) | Q(id__in=lone)).order_by(_DATE, "id").limit(limit)
    if len(rows) == limit:
        return {}  # perhaps cut short: the caller reads each thread alone
    by_key: dict[str, list[Message]] = defaultdict(list)
    for row in rows:
        by_key[thread_key(row)].append(row)
    pages = {}
    for ref in refs:
        found = by_key.get(ref.key, [])
        items = found[:first]
        pages[ref] = Page(items=items, next_cursor=encode_cursor(items[-1]) if len(found) > first else None)
    return pages
