"""Messages as the API shows them, and the two-way flag mutation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from strawberry.types.nodes import SelectedField

from salesinbox.core.db.models import AddressRole, DateSource, Direction
from salesinbox.core.parsing.header_fields import header_fields
from salesinbox.core.sharing.views import ListedMessage, ParentQuery, parent_message_id
from salesinbox.core.sync.message_flags import set_message_flags

from . import cost
from .context import Info
from .execution import PREFETCHED
from .ids import parse_id, to_id
from .loaders import folder_name_by_id, owner_by_account, records_by_message
from .scalars import BigInt
from .users import UserType

if TYPE_CHECKING:
    from .records import CrmRecordType

DirectionEnum = strawberry.enum(Direction, name="Direction", description="Received or sent mail.")
DateSourceEnum = strawberry.enum(
    DateSource, name="DateSource",
    description="Where a message's date comes from: its Date header; the server's arrival time (INTERNALDATE) "
    "when the header is missing or unreadable; or, with neither, the time it was stored.")
RecordRef = Annotated["CrmRecordType", strawberry.lazy(".records")]


@strawberry.type(name="EmailAddress", description="A name and address of a message.")
class EmailAddressType:
    name: str
    address: str


@strawberry.type(name="MessageHeader", description="One header field as received: its name as written and its "
                 "value unfolded, not decoded (encoded words stay as sent).")
class MessageHeaderType:
    name: str
    value: str


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
    date_source: DateSourceEnum | None = strawberry.field(  # type: ignore[valid-type]
        description="Where `date` comes from; null for mail stored before this was recorded.")
    in_reply_to: str | None = strawberry.field(description="The Message-ID it replies to (the first of its "
                                               "In-Reply-To header), as sent.")
    references: list[str] = strawberry.field(description="The Message-IDs of its References header, oldest "
                                             "ancestor first, each once.")
    parent_message_id: str | None = strawberry.field(description="Its parent's Message-ID (RFC 5322 §3.6.4): "
                                                     "In-Reply-To, else the last References entry.")
    folder_id: strawberry.Private[int]
    # Read for a whole page by message_items(): the fields below then resolve without awaiting.
    page_folder: strawberry.Private[str | None] = None
    page_owner: strawberry.Private[UserType | None] = None
    page_records: strawberry.Private[list[CrmRecordType] | None] = None

    @classmethod
    def from_model(cls, row: ListedMessage) -> MessageType:
        return cls(
            id=to_id(row.id), account_id=to_id(row.account_id), uid=BigInt(row.uid), message_id=row.message_id,
            subject=row.subject, from_name=row.from_name, from_address=row.from_address, date=row.date,
            direction=row.direction, seen=row.seen, flagged=row.flagged, answered=row.answered,
            snippet=row.snippet, has_attachments=row.has_attachments, size=row.size,
            parse_warnings=list(row.parse_warnings), thread_key=row.thread_key,
            in_reply_to=row.in_reply_to, references=row.references.split(),
            parent_message_id=parent_message_id(row.in_reply_to, row.references), date_source=row.date_source,
            folder_id=row.folder_id,
        )

    # folder, owner and linkedRecords: on a page the executor takes what message_items() read
    # from the page_* attributes without calling these (schema/execution.py, PREFETCHED); they
    # run for a single message, returning a coroutine reading it, which graphql-core awaits.
    @strawberry.field(description="The folder it is in (INBOX, Sent…).", metadata={PREFETCHED: "page_folder"})
    def folder(self, info: Info) -> str:
        if self.page_folder is not None:
            return self.page_folder
        return info.context.loaders.folder_name_by_id.load(self.folder_id)  # type: ignore[return-value]

    @strawberry.field(description="The user whose mailbox it is.", metadata={PREFETCHED: "page_owner"})
    def owner(self, info: Info) -> UserType:
        if self.page_owner is not None:
            return self.page_owner
        return self._load_owner(info)  # type: ignore[return-value]

    async def _load_owner(self, info: Info) -> UserType:
        return UserType.from_values(await info.context.loaders.owner_by_account.load(int(self.account_id)))

    @strawberry.field(description="The leads and contacts it is linked to.", metadata={PREFETCHED: "page_records"})
    def linked_records(self, info: Info) -> list[RecordRef]:
        if self.page_records is not None:
            return self.page_records
        return self._load_records(info)  # type: ignore[return-value]

    async def _load_records(self, info: Info) -> list[CrmRecordType]:
        from .records import CrmRecordType

        rows = await info.context.loaders.records_by_message.load(int(self.id))
        return [CrmRecordType.from_values(r) for r in rows]

    async def _addresses(self, info: Info, role: AddressRole) -> list[EmailAddressType]:
        rows = await info.context.loaders.addresses_by_message.load(int(self.id))
        return [EmailAddressType(name=r.name, address=r.address) for r in rows if r.role == role]

    @strawberry.field(description="Every author in From, in order (RFC 5322 allows several; `fromName` and "
                      "`fromAddress` are the first).")
    async def authors(self, info: Info) -> list[EmailAddressType]:
        return await self._addresses(info, AddressRole.FROM)

    @strawberry.field(description="The addresses in From, To, Cc and Bcc that are not the mailbox owner's own "
                      "(account address and From addresses): whom it links to, each once, From first.")
    async def counterparties(self, info: Info) -> list[EmailAddressType]:
        rows = await info.context.loaders.addresses_by_message.load(int(self.id))
        first: dict[str, EmailAddressType] = {}
        for row in rows:
            if row.is_counterparty and row.address not in first:
                first[row.address] = EmailAddressType(name=row.name, address=row.address)
        return list(first.values())

    @strawberry.field(description="The message it replies to (see `parentMessageId`), when it is stored and you "
                      "may see it; the copy in the same mailbox first. Null otherwise.")
    async def parent(self, info: Info) -> MessageType | None:
        if self.parent_message_id is None:
            return None
        row = await info.context.loaders.parent.load(
            ParentQuery(int(self.id), int(self.account_id), self.parent_message_id))
        return MessageType.from_model(row) if row is not None else None

    @strawberry.field(description="The Sender header (who transmitted it on the authors' behalf), if any.")
    async def sender(self, info: Info) -> EmailAddressType | None:
        found = await self._addresses(info, AddressRole.SENDER)
        return found[0] if found else None

    @strawberry.field(description="The Reply-To addresses, where replies go (replyToEmail uses them instead of "
                      "From). Neither they nor the Sender are counterparties.")
    async def reply_to(self, info: Info) -> list[EmailAddressType]:
        return await self._addresses(info, AddressRole.REPLY_TO)

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

    @strawberry.field(description="Every header of the message as received, in order (kept for mail synced since "
                      "this was added, at most 64 KiB: empty for older mail; the original message has them all). "
                      "Counted like the bodies (see RESPONSE_TOO_LARGE).", metadata=cost.body())
    async def headers(self, info: Info) -> list[MessageHeaderType]:
        block = await info.context.loaders.bodies.headers(int(self.id), _body_chars(info))
        return [MessageHeaderType(name=name, value=value) for name, value in header_fields(block)]

    @strawberry.field(description="The plain-text body. Bodies are large: ask for them for a few messages at a "
                      "time (see RESPONSE_TOO_LARGE).", metadata=cost.body())
    async def body_text(self, info: Info) -> str:
        return await info.context.loaders.bodies.text(int(self.id), _body_chars(info))

    @strawberry.field(description="The HTML body, as received: sanitise before displaying. Bodies are large: ask "
                      "for them for a few messages at a time (see RESPONSE_TOO_LARGE).", metadata=cost.body())
    async def body_html(self, info: Info) -> str:
        return await info.context.loaders.bodies.html(int(self.id), _body_chars(info))


def _body_chars(info: Info) -> int:
    return info.context.services.settings.max_response_body_chars


def _selected_names(info: Info) -> set[str]:
    """Names of every field selected under the current one, at any depth (fragments too)."""
    names: set[str] = set()
    pending = list(info.selected_fields)
    while pending:
        node = pending.pop()
        if isinstance(node, SelectedField):  # fragments have only selections
            names.add(node.name)
        pending.extend(getattr(node, "selections", ()))
    return names


async def message_items(info: Info, rows: Sequence[ListedMessage]) -> list[MessageType]:
    """The API objects of a list of messages (a page, a thread list) that passed the policy.

    Of ``folder``, ``owner`` and ``linkedRecords``, those the query selects are read for all
    the rows at once, one query each, run concurrently, and set on the objects so that they
    resolve synchronously (a field selected only deeper down is read needlessly, never missed).
    """
    from .records import CrmRecordType

    items = [MessageType.from_model(row) for row in rows]
    if not items:
        return items
    wanted = _selected_names(info)
    reads: dict[str, Awaitable[list[Any]]] = {}
    if "folder" in wanted:
        known = [getattr(row, "folder_name", None) for row in rows]  # a SalesInbox page reads them along
        if None not in known:
            for item, name in zip(items, known, strict=True):
                item.page_folder = name
        else:
            folder_ids = sorted({item.folder_id for item in items})
            reads["folder"] = folder_name_by_id(folder_ids)
    if "owner" in wanted:
        account_ids = sorted({row.account_id for row in rows})
        reads["owner"] = owner_by_account(account_ids)
    if "linkedRecords" in wanted:
        reads["linkedRecords"] = records_by_message([row.id for row in rows])
    found = dict(zip(reads, await asyncio.gather(*reads.values()), strict=True))
    if "folder" in found:
        names = dict(zip(folder_ids, found["folder"], strict=True))
        for item in items:
            item.page_folder = names[item.folder_id]
    if "owner" in found:
        owners = {a: UserType.from_values(o) for a, o in zip(account_ids, found["owner"], strict=True)}
        for item, row in zip(items, rows, strict=True):
            item.page_owner = owners[row.account_id]
    if "linkedRecords" in found:
        built: dict[int, CrmRecordType] = {}  # one object per record, however many rows link to it
        for item, records in zip(items, found["linkedRecords"], strict=True):
            item.page_records = [built.get(r["id"]) or built.setdefault(r["id"], CrmRecordType.from_values(r))
                                 for r in records]
    return items


@strawberry.type(description="A page of messages, newest first unless the field says otherwise.")
class MessagePage:
    items: list[MessageType] = strawberry.field(metadata=cost.page_items())
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
            info.context.user, parse_id(id, big=True), seen=seen, flagged=flagged,
            secrets=services.secrets, policy=services.connect_policy, tokens=services.oauth_tokens,
        )
        return MessageType.from_model(row)
