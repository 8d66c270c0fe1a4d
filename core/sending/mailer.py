"""Outgoing mail through an account's own SMTP server: building MIME and sending it.

Used for the initial-sync confirmation email and for users' send and reply (docs/outgoing-mail.md).
Nothing is reported as sent unless the server accepted every recipient.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, formataddr, make_msgid

from ..credentials import SecretBox
from ..db.models import Folder, MailAccount, Message
from ..oauth.oauth_tokens import OAuthTokens, account_logins
from ..transport.server_login import ConnectPolicy
from ..transport.smtp import send_smtp


@dataclass(frozen=True)
class OutgoingAttachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class OutgoingEmail:
    """A message to send; addresses are already validated and normalised."""

    from_address: str
    to: tuple[str, ...]
    subject: str
    text: str = ""
    html: str = ""
    from_name: str = ""
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    attachments: tuple[OutgoingAttachment, ...] = field(default_factory=tuple)

    @property
    def recipients(self) -> list[str]:
        """Every envelope recipient, each once, in order."""
        return list(dict.fromkeys([*self.to, *self.cc, *self.bcc]))


@dataclass(frozen=True)
class SentEmail:
    message_id: str
    raw: bytes  # as sent, without Bcc
    sent_at: datetime


def build_mime(
    email: OutgoingEmail, *, message_id: str, date: datetime, include_bcc: bool = False
) -> bytes:
    """The RFC 5322 bytes of ``email``. Bcc recipients are left out of the headers of what
    goes on the wire; ``include_bcc`` keeps them, for the sender's own Sent copy."""
    message = EmailMessage()
    message["From"] = formataddr((email.from_name, email.from_address))
    message["To"] = ", ".join(email.to)
    if email.cc:
        message["Cc"] = ", ".join(email.cc)
    if include_bcc and email.bcc:
        message["Bcc"] = ", ".join(email.bcc)
    message["Subject"] = email.subject
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id
    if email.in_reply_to:
        message["In-Reply-To"] = email.in_reply_to
    if email.references:
        message["References"] = " ".join(email.references)
    message["MIME-Version"] = "1.0"
    message.set_content(email.text or "")
    if email.html:
        message.add_alternative(email.html, subtype="html")
    for attachment in email.attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        message.add_attachment(
            attachment.data, maintype=maintype or "application",
            subtype=subtype or "octet-stream", filename=attachment.filename,
        )
    return message.as_bytes(policy=SMTP_POLICY)


async def send_email(
    account: MailAccount, email: OutgoingEmail, *, secrets: SecretBox, policy: ConnectPolicy,
    tokens: OAuthTokens | None = None,
) -> SentEmail:
    """Send ``email`` through ``account``'s SMTP server; raise a typed error if refused.
    An account with an OAuth grant logs in with a current access token from ``tokens``."""
    now = datetime.now(UTC)
    message_id = make_msgid(domain=email.from_address.rpartition("@")[2] or None)
    raw = build_mime(email, message_id=message_id, date=now)
    login = (await account_logins(account, secrets, tokens)).smtp
    await asyncio.to_thread(
        send_smtp, login, policy,
        envelope_from=email.from_address, recipients=email.recipients, message=raw,
    )
    return SentEmail(message_id=message_id, raw=raw, sent_at=now)


def confirmation_email(account: MailAccount, folder_lines: list[tuple[str, int, int, int]]) -> OutgoingEmail:
    """The "your mailbox is synced" notice: one line per folder (name, messages, linked, warnings)."""
    lines = [
        f"Hello {account.display_name},",
        "",
        f"SalesInbox finished synchronising {account.email}. Your mail is now in the CRM,",
        "linked to your leads and contacts. From now on new mail arrives automatically.",
        "",
        "Folder report:",
    ]
    total = 0
    for name, messages, linked, warnings in folder_lines:
        total += messages
        note = f", {warnings} read with warnings" if warnings else ""
        lines.append(f"  {name}: {messages} messages, {linked} linked to leads or contacts{note}")
    lines += ["", f"Total: {total} messages.", "", "— SalesInbox"]
    return OutgoingEmail(
        from_address=account.email,
        from_name="SalesInbox",
        to=(account.email,),
        subject="SalesInbox: your mailbox is synchronised",
        text="\n".join(lines) + "\n",
    )


async def sync_report_lines(account_id: int) -> list[tuple[str, int, int, int]]:
    """Per folder: (name, messages stored, messages linked to a record, read with warnings)."""
    lines = []
    for folder in await Folder.filter(account_id=account_id).order_by("id"):
        messages = await Message.filter(folder_id=folder.id).count()
        linked = await Message.filter(folder_id=folder.id, links__id__not_isnull=True).distinct().count()
        warnings = sum(
            1 for w in await Message.filter(folder_id=folder.id).values_list("parse_warnings", flat=True) if w
        )
        lines.append((folder.name, messages, linked, warnings))
    return lines


async def send_sync_confirmation(
    account: MailAccount, *, secrets: SecretBox, policy: ConnectPolicy, tokens: OAuthTokens | None = None
) -> SentEmail:
    """Email the account owner (at the account's address, through its own SMTP) the report
    of the completed initial sync."""
    email = confirmation_email(account, await sync_report_lines(account.id))
    return await send_email(account, email, secrets=secrets, policy=policy, tokens=tokens)
