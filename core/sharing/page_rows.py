"""The busiest pages read without the ORM: statements assembled once, rows as :class:`MessageRow`.

A record's Emails related list and the SalesInbox (unfiltered) are what frontends ask most.
Through the ORM each page cost ≈ 0.6 ms building its SQL and ≈ 1.2 ms turning 51 rows into
models (bench/bench_views.py). Here each statement's text is assembled once per *shape* —
dialect, with or without a cursor, with or without ``sharedBy``, number of accounts — from
the sharing rule's own SQL (:func:`.visibility.visible_sql`, the one place that decides who
sees what) and kept; a request only binds its values and runs it through Tortoise's
connection (same pool, same transaction as the ORM), and each row becomes a
:class:`MessageRow`: the message's columns the API shows, decoded as the ORM decodes them.

The statements are the ORM's (same joins, conditions, order and limit: same plans); the
reference-model tests (tests/test_policy.py, tests/test_schema_policy.py) check this path.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from tortoise import BaseDBAsyncClient

from ..db.models import DateSource, Direction, Message, MessageLink, User
from ..db.raw_rows import decoders, numbered
from .visibility import ACCOUNTS_OF_USER, visible_sql, visible_sql_values

#: The columns of ``message`` a listed message carries (every one the API shows).
COLUMNS = (
    "id", "account_id", "folder_id", "uid", "message_id", "in_reply_to", "references", "thread_key",
    "subject", "from_name", "from_address", "date", "date_source", "direction", "seen", "flagged",
    "answered", "snippet", "size", "has_attachments", "parse_warnings",
)
_SELECT = ", ".join(f'"message"."{c}"' for c in COLUMNS)


class MessageRow:
    """A message of a page, read straight from SQL: the attributes of
    :class:`~..db.models.Message` that the API shows, with the same Python types, and, on
    a SalesInbox page, the name of its folder (``None`` where it was not read)."""

    __slots__ = (*COLUMNS, "folder_name")
    id: int
    account_id: int
    folder_id: int
    uid: int
    message_id: str | None
    in_reply_to: str | None
    references: str
    thread_key: str | None
    subject: str
    from_name: str
    from_address: str
    date: datetime | None
    date_source: DateSource | None
    direction: Direction
    seen: bool
    flagged: bool
    answered: bool
    snippet: str
    size: int
    has_attachments: bool
    parse_warnings: list[str]
    folder_name: str | None


def _rows(client: BaseDBAsyncClient, records: Sequence[Any], *, with_folder: bool = False) -> list[MessageRow]:
    """The records as rows; ``with_folder``: each record ends with its folder's name."""
    decoders_ = decoders(Message, COLUMNS, client.capabilities.dialect)
    pairs = tuple(zip(COLUMNS, decoders_, strict=True))
    rows = []
    for record in records:
        row = MessageRow()
        values = tuple(record)
        for (column, decode), value in zip(pairs, values, strict=with_folder is False):
            setattr(row, column, value if decode is None or value is None else decode(value))
        row.folder_name = values[-1] if with_folder else None
        rows.append(row)
    return rows


def _link_date(when: datetime) -> Any:
    """A cursor's date as the driver takes it for ``message_link.date`` (the ORM's conversion)."""
    return MessageLink._meta.fields_map["date"].to_db_value(when, MessageLink)


def _message_date(when: datetime) -> Any:
    return Message._meta.fields_map["date"].to_db_value(when, Message)


@cache
def _related_statement(dialect: str, shared_by: bool, after: bool) -> str:
    policy = visible_sql(known_linked=True)
    text = (
        f'SELECT {_SELECT} FROM "message" LEFT OUTER JOIN "message_link" '
        '''ON "message"."id" = "message_link"."message_id" WHERE "message_link"."record_id" = {} '''
        f"AND {policy}"
    )
    if shared_by:
        text += f' AND "message"."account_id" IN {ACCOUNTS_OF_USER}'
    if after:
        text += ''' AND ("message_link"."date" < {} OR ("message_link"."date" = {} AND "message"."id" < {}))'''
    text += ' ORDER BY "message_link"."date" DESC, "message"."id" DESC LIMIT {}'
    return numbered(text, dialect)


async def related_rows(
    client: BaseDBAsyncClient, viewer: User, record_id: int, *, shared_by: int | None, limit: int,
    after: tuple[datetime, int] | None,
) -> list[MessageRow]:
    """Up to ``limit`` messages linked to the record that ``viewer`` may see, newest first by
    the link's date, after the (date, id) position ``after``; only ``shared_by``'s mail when given."""
    values: list[Any] = [record_id, *visible_sql_values(viewer, known_linked=True)]
    if shared_by is not None:
        values.append(shared_by)
    if after is not None:
        when, key = after
        values += [_link_date(when), _link_date(when), key]
    values.append(limit)
    sql = _related_statement(client.capabilities.dialect, shared_by is not None, after is not None)
    _, records = await client.execute_query(sql, values)
    return _rows(client, records)


@cache
def _accounts_statement(dialect: str) -> str:
    return numbered("SELECT id FROM mail_account WHERE user_id = {}", dialect)


@cache
def _inbox_statement(dialect: str, accounts: int, after: bool) -> str:
    # By account id, not a join on the owner: the databases then read the (account_id, date)
    # index newest first instead of sorting all the user's mail (see views.inbox_query). The
    # folder's name comes along (the SalesInbox shows it): one lookup by key per row.
    text = (f'SELECT {_SELECT}, "folder"."name" FROM "message" JOIN "folder" ON "folder"."id" = "message"."folder_id" '
            f'WHERE "message"."account_id" IN ({", ".join(["{}"] * accounts)})')
    if after:
        text += ''' AND ("message"."date" < {} OR ("message"."date" = {} AND "message"."id" < {}))'''
    text += ' ORDER BY "message"."date" DESC, "message"."id" DESC LIMIT {}'
    return numbered(text, dialect)


async def inbox_rows(
    client: BaseDBAsyncClient, viewer: User, *, limit: int, after: tuple[datetime, int] | None
) -> list[MessageRow]:
    """Up to ``limit`` of the viewer's own messages (every account of theirs), newest first,
    after the (date, id) position ``after``: the unfiltered SalesInbox."""
    dialect = client.capabilities.dialect
    _, accounts = await client.execute_query(_accounts_statement(dialect), [viewer.id])
    if not accounts:
        return []
    values: list[Any] = [account[0] for account in accounts]
    if after is not None:
        when, key = after
        values += [_message_date(when), _message_date(when), key]
    values.append(limit)
    _, records = await client.execute_query(_inbox_statement(dialect, len(accounts), after is not None), values)
    return _rows(client, records, with_folder=True)
