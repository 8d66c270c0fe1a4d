"""Messages as the API shows them, and the two-way flag mutation."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from salesinbox.core.message_flags import set_message_flags
from salesinbox.core.models import AddressRole, Direction, Message

from .context import Info
from .ids import parse_id, to_id
from .scalars import BigInt
from .users import UserType

if TYPE_CHECKING:
    from .records import CrmRecordType

DirectionEnum = strawberry.enum(Direction, name="Direction", description="Received or sent mail.")
RecordRef = Annotated["CrmRecordType", strawberry.lazy(".records")]


@strawberry.type(name="EmailAddress", description="A name and address of a message.")
class EmailAddressType:
    name: str
    address: str


@strawberry.type(name="Attachment", description="Metadata of an attachment (content stays on the server).")
class AttachmentType:
    filename: str
    content_type: str
    size: int
    content_id: str | None
    is_inline: bool


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
    thread_key: str | None
    in_reply_to: str | None
    folder_id: strawberry.Private[int]

    @classmethod
    def from_model(cls, row: Message) -> MessageType:
        return cls(
            id=to_id(row.id), account_id=to_id(row.account_id), uid=row.uid, message_id=row.message_id,
            subject=row.subject, from_name=row.from_name, from_address=row.from_address, date=row.date,
            direction=row.direction, seen=row.seen, flagged=row.flagged, answered=row.answered,
            snippet=row.snippet, has_attachments=row.has_attachments, size=row.size,
            parse_warnings=list(row.parse_warnings), thread_key=row.thread_key,
            in_reply_to=row.in_reply_to, folder_id=row.folder_id,
        )

    @strawberry.field(description="The folder it is in (INBOX, Sent…).")
    async def folder(self, info: Info) -> str:
        return (await info.context.loaders.folder_by_id.load(self.folder_id)).name

    @strawberry.field(description="The user whose mailbox it is.")
    async def owner(self, info: Info) -> UserType:
        return UserType.from_model(await info.context.loaders.owner_by_account.load(int(self.account_id)))

    @strawberry.field(description="The leads and contacts it is linked to.")
    async def linked_records(self, info: Info) -> list[RecordRef]:
        from .records import CrmRecordType

        rows = await info.context.loaders.records_by_message.load(int(self.id))
        return [CrmRecordType.from_model(r) for r in rows]

    async def _addresses(self, info: Info, role: AddressRole) -> list[EmailAddressType]:
        rows = await info.context.loaders.addresses_by_message.load(int(self.id))
        return [EmailAddressType(name=r.name, address=r.address) for r in rows if r.role == role]

    @strawberry.field(description="To recipients.")
    async def to(self, info: Info) -> list[EmailAddressType]:
        return await self._addresses(info, AddressRole.TO)

    @strawberry.field(description="Cc recipients.")
    async def cc(self, info: Info) -> list[EmailAddressType]:
        return await self._addresses(info, AddressRole.CC)

    @strawberry.field(description="Bcc recipients (known for sent mail only).")
    async def bcc(self, info: Info) -> list[EmailAddressType]:
        return await self._addresses(info, AddressRole.BCC)

    @strawberry.field(description="Attachment metadata.")
    async def attachments(self, info: Info) -> list[AttachmentType]:
        rows = await info.context.loaders.attachments_by_message.load(int(self.id))
        return [AttachmentType(filename=a.filename, content_type=a.content_type, size=a.size,
                               content_id=a.content_id, is_inline=a.is_inline) for a in rows]

    @strawberry.field(description="The plain-text body (for one message at a time).")
    async def body_text(self, info: Info) -> str:
        body = await info.context.loaders.body_by_message.load(int(self.id))
        return body.text if body else ""

    @strawberry.field(description="The HTML body, as received: sanitise before displaying.")
    async def body_html(self, info: Info) -> str:
        body = await info.context.loaders.body_by_message.load(int(self.id))
        return body.html if body else ""


@strawberry.type(description="A page of messages, newest first.")
class MessagePage:
    items: list[MessageType]
    next_cursor: str | None = strawberry.field(description="Pass as `after` for the next page; null at the end.")


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


@strawberry.type(name="Thread", description="One conversation, oldest message first.")
class ThreadType:
    key: str
    subject: str
    message_count: int
    latest_date: datetime | None
    messages: list[MessageType]
