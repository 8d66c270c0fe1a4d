"""The mail views (docs/views.md): SalesInbox, the Emails related list, message detail (threads:
:mod:`.threads`).

Every query that returns mail goes through :mod:`salesinbox.core.sharing.visibility` (the SalesInbox shows
only the viewer's own mail; the others use ``visible_to``), so nothing is fetched first and
filtered afterwards. Pages are newest first with keyset cursors on (date, id): stable while
new mail arrives, and fast at any depth.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from weakref import WeakKeyDictionary

from tortoise import BaseDBAsyncClient, connections
from tortoise.expressions import Q
from tortoise.queryset import QuerySet

from ..crm.records import get_record
from ..db.models import BIGINT_KEY_MAX, Direction, Folder, MailAccount, Message, RecordKind, User
from ..db.orm_values import column_values
from ..db.sql_fragment import SqlFragment
from ..errors import invalid_input, not_found
from .page_rows import MessageRow, inbox_rows, related_rows
from .visibility import visible_messages

MAX_PAGE = 100
_CURSOR_KEY = re.compile(r"[0-9]{1,19}")
_FOLDER_NAME_MAX: int = Folder._meta.fields_map["name"].max_length  # type: ignore[attr-defined]


#: A message of a page: an ORM model, or (the busiest pages, see :mod:`.page_rows`) a row read
#: straight from SQL with the same attributes.
ListedMessage = Message | MessageRow


@dataclass(frozen=True)
class Page:
    """One page of messages and the cursor of the next one (``None`` at the end)."""

    items: Sequence[ListedMessage]
    next_cursor: str | None


@dataclass(frozen=True)
class InboxFilter:
    """SalesInbox filters; ``None`` means "any"."""

    folder: str | None = None
    direction: Direction | None = None
    seen: bool | None = None
    linked: str | None = None  # "LEADS", "CONTACTS" or "NONE"
    search: str | None = None


def encode_cursor(message: ListedMessage) -> str:
    """An opaque cursor pointing after ``message`` in (date, id) order."""
    return cursor_at((message.date, message.id))  # type: ignore[arg-type]


def cursor_at(position: tuple[datetime, int]) -> str:
    """The opaque cursor pointing after the message at (date, id) ``position``."""
    when, key = position
    raw = f"{when.isoformat()}|{key}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The (date, id) a cursor of :func:`encode_cursor` points after; ``INVALID_INPUT`` (field
    ``after``) when it is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, _, key = raw.partition("|")
        moment = datetime.fromisoformat(when)
        # A moment the drivers can send: with its zone, and within years 1-9999 in UTC.
        # A message key: ASCII digits (int() also reads "١٢") within the bigint column.
        if moment.tzinfo is not None and _CURSOR_KEY.fullmatch(key) and int(key) <= BIGINT_KEY_MAX:
            return moment.astimezone(UTC), int(key)
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError):
        pass
    raise invalid_input("This cursor is not valid: start again from the first page.", field="after")


def beyond(position: tuple[datetime, int], date_field: str, *, ascending: bool = False) -> Q:
    """Messages after ``position`` in (``date_field``, id) order, descending unless ``ascending``."""
    when, key = position
    op = "gt" if ascending else "lt"
    later: dict[str, Any] = {f"{date_field}__{op}": when}  # Any: Q's keywords include join_type: str
    same_date_later_id: dict[str, Any] = {date_field: when, f"id__{op}": key}
    return Q(**later) | Q(**same_date_later_id)


def check_page_size(first: int) -> None:
    """``INVALID_INPUT`` (field ``first``) unless 1 <= ``first`` <= :data:`MAX_PAGE`."""
    if not 1 <= first <= MAX_PAGE:
        raise invalid_input(f"first must be between 1 and {MAX_PAGE}.", field="first")


async def page_of(query: QuerySet[Message], first: int, after: str | None, *, date_field: str = "date",
                  ascending: bool = False) -> Page:
    """One page of ``query`` by (``date_field``, id), newest first unless ``ascending``, starting
    after the cursor ``after``; ``links__date`` for a record's mail (read from its index)."""
    check_page_size(first)
    if after:
        query = query.filter(beyond(decode_cursor(after), date_field, ascending=ascending))
    # The store never leaves a date NULL, so (date, id) orders the same on every backend.
    order = (date_field, "id") if ascending else (f"-{date_field}", "-id")
    rows = await query.order_by(*order).limit(first + 1)
    return _page(rows, first)


def _page(rows: Sequence[ListedMessage], first: int) -> Page:
    """The page of ``first + 1`` rows read: the first ``first``, and a cursor if there are more."""
    items = rows[:first]
    return Page(items=items, next_cursor=encode_cursor(items[-1]) if len(rows) > first else None)


# "linked to a lead/contact" and "linked to nothing" as sub-queries correlated with the outer
# message: an index probe of message_link per candidate. The uncorrelated forms read every link
# of the organisation; PostgreSQL ran `id NOT IN (SELECT message_id FROM message_link)` by
# scanning a materialised copy of all links for each message (over 20 s at 1M messages).
def _linked_to(kind: RecordKind) -> Q:
    return Q(id__in=SqlFragment("""
        (SELECT lnk.message_id FROM message_link lnk JOIN crm_record rec ON rec.id = lnk.record_id
         WHERE lnk.message_id = "message"."id" AND rec.kind = {})
    """, kind.value))


def _linked_to_any() -> Q:
    return Q(id__in=SqlFragment("""
        (SELECT lnk.message_id FROM message_link lnk WHERE lnk.message_id = "message"."id")
    """))


def inbox_query(
    viewer: User, account_ids: list[int], filters: InboxFilter, *, search_index: bool = False
) -> QuerySet[Message]:
    """The viewer's own mail (``account_ids``: every account of theirs) with the filters.

    ``search_index``: the SQLite search index of migration 0005 exists (see :func:`text_search`).
    """
    # By account id, not a join on the owner: PostgreSQL then reads the (account_id, date)
    # index newest first instead of sorting all the user's mail.
    query = Message.filter(account_id__in=account_ids)
    if filters.folder:
        # Tortoise refuses to compare a value longer than the column; no folder is named so.
        if len(filters.folder) > _FOLDER_NAME_MAX:
            raise invalid_input(f"A folder name has at most {_FOLDER_NAME_MAX} characters.", field="folder")
        query = query.filter(folder__name=filters.folder)
    if filters.direction is not None:
        query = query.filter(direction=filters.direction)
    if filters.seen is not None:
        query = query.filter(seen=filters.seen)
    if filters.linked == "LEADS":
        query = query.filter(_linked_to(RecordKind.LEAD))
    elif filters.linked == "CONTACTS":
        query = query.filter(_linked_to(RecordKind.CONTACT))
    elif filters.linked == "NONE":
        query = query.filter(~_linked_to_any())
    elif filters.linked is not None:
        raise invalid_input("linked must be LEADS, CONTACTS or NONE.", field="linked")
    if filters.search and filters.search.strip():
        query = query.filter(text_search(filters.search, sqlite_index=search_index))
    return query


def text_search(text: str, *, sqlite_index: bool = False) -> Q:
    """Messages whose subject, sender name or sender address contains ``text`` (any case).

    On PostgreSQL the trigram index of migration 0004 serves exactly these expressions. On
    SQLite, with ``sqlite_index`` (the FTS5 trigram table of migration 0005 exists) and 3
    characters or more, the same question goes to that index as a phrase; shorter text, or no
    index, is a scan with LIKE.
    """
    term = _search_term(text)
    if sqlite_index and len(term) >= 3:
        return Q(id__in=SqlFragment(
            "(SELECT rowid FROM message_search WHERE message_search MATCH {})", _fts_phrase(term)
        ))
    return Q(subject__icontains=term) | Q(from_name__icontains=term) | Q(from_address__icontains=term.lower())


def _search_term(text: str) -> str:
    # No stored text holds NUL, and FTS5 would read one as the end of its query.
    return text.replace("\0", "").strip()[:200]


def _fts_phrase(term: str) -> str:
    """``term`` as one FTS5 phrase: with the trigram tokenizer, "contains this text"."""
    return '"' + term.replace('"', '""') + '"'


# Whether each SQLite connection's database has the search index (asked once per connection).
_search_index: WeakKeyDictionary[BaseDBAsyncClient, bool] = WeakKeyDictionary()
# SQLite keeps no statistics on the index, so the SalesInbox asks it how common the text is:
# below this many matches in the whole database the index answers (a rare term: 356 -> 1.3 ms
# at 1M messages); above, scanning the user's mail newest first finds a page sooner (the
# index would hand over every match: 174 ms for a term in 30 % of the mail, 6 ms scanning).
_SELECTIVE_MATCHES = 2000


async def _sqlite_search_index_pays(text: str) -> bool:
    """On SQLite with the index of migration 0005: whether it should answer this search."""
    term = _search_term(text)
    client = connections.get("default")
    if len(term) < 3 or client.capabilities.dialect != "sqlite":
        return False
    known = _search_index.get(client)
    if known is None:
        _, rows = await client.execute_query(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'message_search'"
        )
        known = _search_index[client] = bool(rows)
    if not known:
        return False
    _, rows = await client.execute_query(
        "SELECT count(*) FROM (SELECT rowid FROM message_search WHERE message_search MATCH ? LIMIT ?)",
        [_fts_phrase(term), _SELECTIVE_MATCHES],
    )
    return bool(rows[0][0] < _SELECTIVE_MATCHES)


async def inbox_page(viewer: User, filters: InboxFilter, *, first: int = 50, after: str | None = None) -> Page:
    """A page of the viewer's SalesInbox, newest first.

    Without filters (the commonest page) the rows are read straight from SQL
    (:mod:`.page_rows`); with filters, through the ORM (:func:`inbox_query`).
    """
    if filters == InboxFilter():
        check_page_size(first)
        position = decode_cursor(after) if after else None
        rows = await inbox_rows(Message._meta.db, viewer, limit=first + 1, after=position)
        return _page(rows, first)
    account_ids = await column_values(MailAccount.filter(user_id=viewer.id), "id")
    search_index = bool(filters.search) and await _sqlite_search_index_pays(filters.search or "")
    return await page_of(inbox_query(viewer, account_ids, filters, search_index=search_index), first, after)


async def related_page(
    viewer: User, record_id: int, *, shared_by: int | None = None, first: int = 50,
    after: str | None = None, record_verified: bool = False,
) -> Page:
    """The Emails related list of a lead/contact: linked mail the viewer may see, newest
    first, optionally only mail of the user ``shared_by``. ``record_verified``: the caller
    already loaded the record from the viewer's organisation (saves a query per request)."""
    if not record_verified:
        await get_record(viewer, record_id)
    check_page_size(first)
    position = decode_cursor(after) if after else None
    # The rows of visible_messages_for_record(viewer, record_id, shared_by) by (links__date, id),
    # read straight from SQL: see page_rows.
    rows = await related_rows(Message._meta.db, viewer, record_id, shared_by=shared_by, limit=first + 1,
                              after=position)
    return _page(rows, first)


async def get_message(viewer: User, message_id: int) -> Message:
    """One message the viewer may see, else ``NOT_FOUND`` (which does not reveal that it exists)."""
    message = await visible_messages(viewer).filter(id=message_id).first()
    if message is None:
        raise not_found("message")
    return message


def parent_message_id(in_reply_to: str | None, references: str) -> str | None:
    """The Message-ID of a message's parent (RFC 5322 §3.6.4): its In-Reply-To, else the last
    entry of its References (as stored: space-separated), else ``None``."""
    if in_reply_to:
        return in_reply_to
    entries = references.split()
    return entries[-1] if entries else None


@dataclass(frozen=True)
class ParentQuery:
    """A message whose parent is sought: its id, its account, its parent's Message-ID."""

    message_id: int
    account_id: int
    parent_id: str


async def visible_parents(viewer: User, children: list[ParentQuery]) -> list[Message | None]:
    """For each child, its parent in the store that ``viewer`` may see, else ``None``; one
    query for all. Of several stored copies of the parent's Message-ID (INBOX and Sent, or
    colleagues' mailboxes), the one in the child's account comes first, then the lowest id;
    a message is never its own parent."""
    wanted = sorted({child.parent_id for child in children})
    if not wanted:
        return []
    by_message_id: dict[str, list[Message]] = {}
    for row in await visible_messages(viewer).filter(message_id__in=wanted).order_by("id"):
        by_message_id.setdefault(row.message_id or "", []).append(row)
    found: list[Message | None] = []
    for child in children:
        copies = [r for r in by_message_id.get(child.parent_id, []) if r.id != child.message_id]
        same_account = [r for r in copies if r.account_id == child.account_id]
        best = same_account or copies
        found.append(best[0] if best else None)
    return found
