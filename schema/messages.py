"""Messages as the API shows them, and the two-way flag mutation."""

from __future__ import annotations

from datetime import datetime

import strawberry

from salesinbox.core.message_flags import set_message_flags
from salesinbox.core.models import Direction, Message

from .context import Info
from .ids import parse_id, to_id
from .scalars import BigInt

DirectionEnum = strawberry.enum(Direction, name="Direction", description="Received or sent mail.")


@strawberry.type(name="Message", description="One email in one folder of one account.")
class MessageType:
    id: strawberry.ID
    account_id: strawberry.ID
    uid: BigInt
    message_id: str | None
    subject: str
    from_name: str
    from_address: str
    date: datetime | None
    direction: DirectionEnum  # type: ignore[valid-type]
    seen: bool
    flagged: bool
    answered: bool
    snippet: str
    has_attachments: bool
    size: int
    parse_warnings: list[str]

    @classmethod
    def from_model(cls, row: Message) -> MessageType:
        return cls(
            id=to_id(row.id), account_id=to_id(row.account_id), uid=row.uid, message_id=row.message_id,
            subject=row.subject, from_name=row.from_name, from_address=row.from_address, date=row.date,
            direction=row.direction, seen=row.seen, flagged=row.flagged, answered=row.answered,
            snippet=row.snippet, has_attachments=row.has_attachments, size=row.size,
            parse_warnings=list(row.parse_warnings),
        )


@strawberry.type
class MessageMutations:
    @strawberry.mutation(
        description="Mark one of your own messages read/unread or flagged; the mail server is "
        "changed first, so your other devices see it too."
    )
    async def set_message_flags(
        self, info: Info, id: strawberry.ID, seen: bool | None = None, flagged: bool | None = None
    ) -> MessageType:
        services = info.context.services
        row = await set_message_flags(
            info.context.user, parse_id(id), seen=seen, flagged=flagged,
            secrets=services.secrets, policy=services.connect_policy,
        )
        return MessageType.from_model(row)
