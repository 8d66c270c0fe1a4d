"""DataLoaders: one query per kind of related row for a whole page, never one per message.

They are created per request (on the context), so nothing is cached across users. Only
messages that already passed the policy reach them. A page of messages reads its folders,
owners and linked records with the batch functions below directly (see
``schema/messages.py:message_items``); the loaders serve single messages and other paths.
The batch functions return plain rows (dicts), not models, read with SQL kept per shape.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import cache, partial
from typing import Any, TypeVar

from strawberry.dataloader import DataLoader
from tortoise.functions import Length

from salesinbox.core.db.models import (
    Attachment,
    CrmRecord,
    Message,
    MessageAddress,
    MessageBody,
    MessageLink,
    User,
)
from salesinbox.core.db.orm_values import column_values
from salesinbox.core.db.raw_rows import decode, decoders, numbered
from salesinbox.core.errors import ErrorCode, SalesInboxError
from salesinbox.core.sharing.sharing_settings import shared_record_ids
from salesinbox.core.sharing.threads import ThreadRef, thread_messages
from salesinbox.core.sharing.views import Page, ParentQuery, visible_parents

#: The columns the API shows of a lead/contact and of a user (``*Type.from_values``).
RECORD_FIELDS = (
    "id", "kind", "first_name", "last_name", "company", "primary_email", "secondary_email",
    "owner_id", "created_at", "updated_at",
)
USER_FIELDS = ("id", "email", "name", "profile", "is_active", "created_at")


# The batch reads of a page's linked records, owners and folders are plain SQL whose text is
# assembled once per (dialect, number of ids) and run through Tortoise's connection (like the
# page itself, core/sharing/page_rows.py): the ORM spent more building these statements and
# their rows than the database spent answering them.

@cache
def _records_sql(dialect: str, count: int) -> str:
    columns = ", ".join(f"rec.{f}" for f in RECORD_FIELDS)
    return numbered(
        f"SELECT lnk.message_id, {columns} FROM message_link lnk JOIN crm_record rec ON rec.id = lnk.record_id "
        f"WHERE lnk.message_id IN ({_marks(count)}) ORDER BY lnk.record_id", dialect)


@cache
def _owners_sql(dialect: str, count: int) -> str:
    columns = ", ".join(f"usr.{f}" for f in USER_FIELDS)
    return numbered(
        f"SELECT acc.id, {columns} FROM mail_account acc JOIN app_user usr ON usr.id = acc.user_id "
        f"WHERE acc.id IN ({_marks(count)})", dialect)


@cache
def _folders_sql(dialect: str, count: int) -> str:
    return numbered(f"SELECT id, name FROM folder WHERE id IN ({_marks(count)})", dialect)


def _marks(count: int) -> str:
    return ", ".join(["{}"] * count)


async def _fetch(sql: Callable[[str, int], str], ids: list[int]) -> Sequence[Any]:
    client = MessageLink._meta.db
    _, rows = await client.execute_query(sql(client.capabilities.dialect, len(ids)), ids)
    return rows


async def records_by_message(message_ids: Sequence[int]) -> list[list[dict[str, Any]]]:
    """For each message id, the leads/contacts linked to it (``RECORD_FIELDS``), by id. A
    record linked to several of the messages is one dict, shared (a related list's record is
    linked to every message of its page)."""
    ids = list(message_ids)
    found: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if ids:
        rows = await _fetch(_records_sql, ids)
        decoders_ = decoders(CrmRecord, RECORD_FIELDS, MessageLink._meta.db.capabilities.dialect)
        records: dict[int, dict[str, Any]] = {}
        for row in rows:
            values = tuple(row)
            record = records.get(values[1])  # by the record's id, RECORD_FIELDS' first
            if record is None:
                record = records[values[1]] = {
                    f: decode(v, d) for f, v, d in zip(RECORD_FIELDS, values[1:], decoders_, strict=True)}
            found[values[0]].append(record)
    return [found[i] for i in message_ids]


async def owner_by_account(account_ids: Sequence[int]) -> list[dict[str, Any]]:
    """For each mail account id, its owner (``USER_FIELDS``)."""
    ids = list(account_ids)
    owners: dict[int, dict[str, Any]] = {}
    if ids:
        decoders_ = decoders(User, USER_FIELDS, MessageLink._meta.db.capabilities.dialect)
        for row in await _fetch(_owners_sql, ids):
            values = tuple(row)
            owners[values[0]] = {f: decode(v, d) for f, v, d in zip(USER_FIELDS, values[1:], decoders_, strict=True)}
    return [owners[i] for i in account_ids]


async def folder_name_by_id(folder_ids: Sequence[int]) -> list[str]:
    """For each folder id, the folder's name."""
    ids = list(folder_ids)
    names = {row[0]: row[1] for row in await _fetch(_folders_sql, ids)} if ids else {}
    return [names[i] for i in folder_ids]


_Row = TypeVar("_Row", MessageAddress, Attachment)


async def _rows_by_message(model: type[_Row], message_ids: Sequence[int]) -> list[list[_Row]]:
    """For each message id, its rows of ``model`` (a table keyed by ``message_id``), by id."""
    found: dict[int, list[_Row]] = defaultdict(list)
    for row in await model.filter(message_id__in=list(message_ids)).order_by("id"):
        found[row.message_id].append(row)
    return [found[i] for i in message_ids]


async def _addresses_by_message(message_ids: Sequence[int]) -> list[list[MessageAddress]]:
    return await _rows_by_message(MessageAddress, message_ids)


async def _attachments_by_message(message_ids: Sequence[int]) -> list[list[Attachment]]:
    return await _rows_by_message(Attachment, message_ids)


class BodyReader:
    """The message bodies of one response, read in batches within a budget of characters.

    A batch first asks the database how long the bodies are and refuses them all with
    ``RESPONSE_TOO_LARGE`` when they would take the response's bodies over the budget;
    only then are they read. So a response returns, and the server holds, at most the budget
    in bodies, whatever the query cost estimated (a body may be 2 MB where most are a few
    kB). The text and HTML columns are read apart: a query for one never loads the other.
    """

    def __init__(self) -> None:
        self._spent = 0
        self._limit = 0
        self._text = DataLoader(load_fn=partial(self._read, "text"))
        self._html = DataLoader(load_fn=partial(self._read, "html"))
        self._headers = DataLoader(load_fn=partial(self._read, "headers"))

    async def text(self, message_id: int, limit: int) -> str:
        """The plain-text body ("" when none), counted against ``limit`` characters per response."""
        self._limit = limit
        return await self._text.load(message_id)

    async def html(self, message_id: int, limit: int) -> str:
        """The HTML body ("" when none), counted against ``limit`` characters per response."""
        self._limit = limit
        return await self._html.load(message_id)

    async def headers(self, message_id: int, limit: int) -> str:
        """The complete header block ("" when not kept), counted like the bodies."""
        self._limit = limit
        return await self._headers.load(message_id)

    async def _read(self, column: str, message_ids: Sequence[int]) -> list[str]:
        ids = list(message_ids)
        sizes = await column_values(MessageBody.filter(message_id__in=ids).annotate(n=Length(column)), "n")
        wanted = sum(n or 0 for n in sizes)
        if self._spent + wanted > self._limit:
            raise SalesInboxError(
                ErrorCode.RESPONSE_TOO_LARGE,
                f"The message bodies asked for would take this response over {self._limit} characters "
                f"(SALESINBOX_MAX_RESPONSE_BODY_CHARS; these {len(ids)} are {wanted}). Ask for bodies of fewer "
                "messages at a time: one message with message(id:), or a lower `first`.",
            )
        self._spent += wanted
        bodies = dict(await MessageBody.filter(message_id__in=ids).values_list("message_id", column))
        return [bodies.get(i, "") for i in ids]


class Loaders:
    """The request's loaders; ``viewer_id`` scopes the Share Email flags."""

    def __init__(self, viewer: User | None = None) -> None:
        self.records_by_message = DataLoader(load_fn=records_by_message)
        self.owner_by_account = DataLoader(load_fn=owner_by_account)
        self.folder_name_by_id = DataLoader(load_fn=folder_name_by_id)
        self.addresses_by_message = DataLoader(load_fn=_addresses_by_message)
        self.attachments_by_message = DataLoader(load_fn=_attachments_by_message)
        self.bodies = BodyReader()
        self._viewer = viewer
        self.share_email = DataLoader(load_fn=self._share_email)
        self.thread_messages = DataLoader(load_fn=self._thread_messages)
        self.parent = DataLoader(load_fn=self._parents)

    async def _share_email(self, record_ids: Sequence[int]) -> list[bool]:
        if self._viewer is None:
            return [False for _ in record_ids]
        ticked = await shared_record_ids(self._viewer, list(record_ids))
        return [i in ticked for i in record_ids]

    async def _parents(self, children: Sequence[ParentQuery]) -> list[Message | None]:
        """The parents the viewer may see of a page's messages, in one query."""
        assert self._viewer is not None  # loaders are created after authentication
        return await visible_parents(self._viewer, list(children))

    async def _thread_messages(self, keys: Sequence[tuple[ThreadRef, int, str | None]]) -> list[Page]:
        """Pages of threads' messages, by (thread, first, after): the threads of a page of
        threads asking for the same page are read together (see ``threads.thread_messages``)."""
        assert self._viewer is not None  # loaders are created after authentication
        by_request: dict[tuple[int, str | None], list[ThreadRef]] = defaultdict(list)
        for ref, first, after in keys:
            by_request[(first, after)].append(ref)
        found: dict[tuple[ThreadRef, int, str | None], Page] = {}
        for (first, after), refs in by_request.items():
            pages = await thread_messages(self._viewer, refs, first=first, after=after)
            found.update(((ref, first, after), page) for ref, page in zip(refs, pages, strict=True))
        return [found[key] for key in keys]
