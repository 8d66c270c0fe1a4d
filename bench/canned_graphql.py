"""A GraphQL endpoint serving bench_views' two pages from memory: the floor of strawberry + HTTP.

Same query texts, same result shapes and values as the real server's (copied from its own
answers), but no authentication, no database, no policy: plain strawberry types with
synchronous resolvers, run by the server's own executor (``LeanExecutionContext``) with
parsing and validation cached as in the server. What this costs over HTTP is what any
strawberry server pays to return those 50 rows, before it reads anything: a server that
must also run the SQL cannot answer in less than ``canned`` + ``raw``.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry
from strawberry.asgi import GraphQL
from strawberry.extensions import ParserCache, ValidationCache

from salesinbox.schema.execution import LeanExecutionContext


@strawberry.enum
class Direction(Enum):
    RECEIVED = "RECEIVED"
    SENT = "SENT"


@strawberry.type
class User:
    name: str


@strawberry.type
class Record:
    id: strawberry.ID


@strawberry.type
class Message:
    id: strawberry.ID
    subject: str
    date: datetime
    from_address: str
    direction: Direction | None
    folder: str | None
    owner: User | None
    linked_records: list[Record]


@strawberry.type
class MessagePage:
    items: list[Message]
    next_cursor: str | None


@strawberry.type
class Contact:
    page: strawberry.Private[MessagePage]

    @strawberry.field
    def emails(self, first: int = 50) -> MessagePage:
        return self.page


def _page(answer: dict) -> MessagePage:
    """A page from the real server's JSON answer (``{items, nextCursor}``)."""
    return MessagePage(
        items=[
            Message(
                id=m["id"], subject=m["subject"], date=datetime.fromisoformat(m["date"]),
                from_address=m["fromAddress"],
                direction=Direction(m["direction"]) if "direction" in m else None,
                folder=m.get("folder"),
                owner=User(name=m["owner"]["name"]) if "owner" in m else None,
                linked_records=[Record(id=r["id"]) for r in m["linkedRecords"]],
            )
            for m in answer["items"]
        ],
        next_cursor=answer["nextCursor"],
    )


def canned_app(related: dict, inbox: dict) -> GraphQL:
    """An ASGI GraphQL app answering ``contact``/``lead(id).emails`` with ``related`` and
    ``salesInbox`` with ``inbox`` (both: the real server's ``{items, nextCursor}``)."""
    contact = Contact(page=_page(related))
    inbox_page = _page(inbox)

    @strawberry.type
    class Query:
        @strawberry.field
        def contact(self, id: strawberry.ID) -> Contact:
            return contact

        @strawberry.field
        def lead(self, id: strawberry.ID) -> Contact:
            return contact

        @strawberry.field
        def sales_inbox(self, first: int = 50) -> MessagePage:
            return inbox_page

    # The server's caches too: parsing and validation once per query text, not per request.
    schema = strawberry.Schema(Query, execution_context_class=LeanExecutionContext,
                               extensions=[ParserCache, ValidationCache])
    return GraphQL(schema, graphql_ide=None)
