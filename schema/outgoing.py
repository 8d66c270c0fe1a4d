"""Send and reply, from the caller's own account and From address."""

from __future__ import annotations

import base64
import binascii

import strawberry

from salesinbox.core.errors import invalid_input
from salesinbox.core.sending import outgoing
from salesinbox.core.sending.mailer import OutgoingAttachment
from salesinbox.core.sending.sent_copy import SentCopy

from .context import Info
from .ids import parse_id
from .messages import MessageType


@strawberry.input(description="A file to attach, its content in base64.")
class AttachmentInput:
    filename: str
    content_type: str = "application/octet-stream"
    content_base64: str

    def to_core(self) -> OutgoingAttachment:
        try:
            data = base64.b64decode(self.content_base64, validate=True)
        except (binascii.Error, ValueError):
            raise invalid_input(f"The attachment {self.filename!r} is not valid base64.", field="attachments") from None
        name = self.filename.strip().replace("/", "_").replace("\\", "_") or "attachment"
        return OutgoingAttachment(
            filename=name[:255], content_type=self.content_type.strip() or "application/octet-stream", data=data
        )


@strawberry.input(description="A message to send. Addresses may be 'a@b.com' or 'Name <a@b.com>'.")
class EmailInput:
    to: list[str] = strawberry.field(default_factory=list)
    cc: list[str] = strawberry.field(default_factory=list)
    bcc: list[str] = strawberry.field(default_factory=list)
    subject: str = ""
    text: str = ""
    html: str = ""
    from_address: str | None = strawberry.field(default=None, description="Default: your default From address.")
    account_id: strawberry.ID | None = strawberry.field(default=None, description="Default: your first account.")
    attachments: list[AttachmentInput] = strawberry.field(default_factory=list)

    def to_core(self) -> outgoing.Draft:
        return outgoing.Draft(
            to=tuple(self.to), cc=tuple(self.cc), bcc=tuple(self.bcc), subject=self.subject,
            text=self.text, html=self.html, from_address=self.from_address,
            account_id=parse_id(self.account_id, field="accountId") if self.account_id else None,
            attachments=tuple(a.to_core() for a in self.attachments),
        )


@strawberry.type(description="A message the server accepted, as stored in your Sent folder.")
class SentEmail:
    message: MessageType
    saved_to_sent_folder: bool = strawberry.field(
        description="The copy is in the Sent folder on the mail server (or the provider files it itself)."
    )
    warning: str | None

    @classmethod
    def from_copy(cls, copy: SentCopy) -> SentEmail:
        return cls(message=MessageType.from_model(copy.message),
                   saved_to_sent_folder=copy.warning is None, warning=copy.warning)


@strawberry.type
class OutgoingMutations:
    @strawberry.mutation(description="Send a new message through your own account's SMTP server.")
    async def send_email(self, info: Info, input: EmailInput) -> SentEmail:
        copy = await outgoing.send_new(info.context.user, input.to_core(), info.context.services.mail_services())
        return SentEmail.from_copy(copy)

    @strawberry.mutation(
        description="Reply to a message you may see (yours or a colleague's shared one), threaded, "
        "from your own account. `subject` defaults to 'Re: <original subject>'."
    )
    async def reply_to_email(
        self, info: Info, message_id: strawberry.ID, input: EmailInput, reply_all: bool = False
    ) -> SentEmail:
        copy = await outgoing.reply(
            info.context.user, parse_id(message_id, field="messageId", big=True), input.to_core(),
            info.context.services.mail_services(), reply_all=reply_all,
        )
        return SentEmail.from_copy(copy)
