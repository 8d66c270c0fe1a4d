"""Send and reply (docs/outgoing-mail.md): from the user's own account and From address,
threaded, with the Sent copy where the user's other devices see it.

A user may reply to any message they may see (docs/sharing.md#the-rule: their own, or a
colleague's shared one); a message they may not see is ``NOT_FOUND``, so its existence is not
revealed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.utils import getaddresses

from ..address_normalisation import normalise_email
from ..credentials import SecretBox
from ..db.models import AddressRole, FromAddress, MailAccount, Message, MessageAddress, MessageBody, User
from ..db.orm_values import column_values
from ..errors import ErrorCode, SalesInboxError, invalid_input, not_found
from ..oauth.oauth_tokens import OAuthTokens
from ..plugin_host.provider_registry import ProviderRegistry
from ..sharing.visibility import can_see
from ..sync.message_flags import mark_answered
from ..transport.server_login import ConnectPolicy
from .mailer import OutgoingAttachment, OutgoingEmail, build_mime, send_email
from .sent_copy import SentCopy, record_sent_copy

MAX_RECIPIENTS = 100
MAX_SUBJECT = 998
# "Re:", "RE:", "Re[2]:", "AW:", "SV:", "Antw:" … already there: do not add another.
_REPLY_PREFIX = re.compile(r"^\s*((re|aw|sv|antw|ref|vs)(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# RFC 6838 type and subtype names.
_MIME_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")


@dataclass(frozen=True)
class Draft:
    """What the user wrote. Addresses are raw input (``Name <a@b>`` or ``a@b``)."""

    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    subject: str = ""
    text: str = ""
    html: str = ""
    from_address: str | None = None  # default: the account's default From address
    account_id: int | None = None  # default: the account owning from_address, else the first
    attachments: tuple[OutgoingAttachment, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class MailServices:
    secrets: SecretBox
    registry: ProviderRegistry
    policy: ConnectPolicy
    max_message_bytes: int = 25 * 1024 * 1024
    #: access tokens of accounts signed in with OAuth (None: stored secrets only)
    tokens: OAuthTokens | None = None


def _check_attachments(attachments: tuple[OutgoingAttachment, ...]) -> None:
    """Refuse what would break the MIME headers: a line break or other control character in
    a filename (also a header-injection attempt), a content type that is not ``type/subtype``."""
    for attachment in attachments:
        shown = attachment.filename if len(attachment.filename) <= 60 else attachment.filename[:60] + "…"
        if _CONTROL.search(attachment.filename):
            raise invalid_input(
                f"The attachment name {shown!r} contains a line break or another control character: rename it.",
                field="attachments",
            )
        if not _MIME_TYPE.fullmatch(attachment.content_type):
            raise invalid_input(
                f"The content type of the attachment {shown!r} is not a MIME type like application/pdf "
                "(give only type/subtype, without parameters).",
                field="attachments",
            )


def _addresses(values: tuple[str, ...], field_name: str) -> tuple[str, ...]:
    found: list[str] = []
    for value in values:
        pairs = getaddresses([value]) if "<" in value or "," in value else [("", value)]
        for _name, address in pairs:
            if address.strip():
                found.append(normalise_email(address, field=field_name))
    return tuple(dict.fromkeys(found))


async def _sender(actor: User, draft: Draft) -> tuple[MailAccount, FromAddress]:
    """The actor's own account and From address to send with (never anyone else's)."""
    accounts = await MailAccount.filter(user_id=actor.id).order_by("id")
    if not accounts:
        raise SalesInboxError(
            ErrorCode.NO_MAIL_ACCOUNT,
            "You have no mail account connected: connect one (connectMailAccount) to send mail.",
        )
    by_id = {a.id: a for a in accounts}
    if draft.account_id is not None and draft.account_id not in by_id:
        raise not_found("mail account")
    candidates = [by_id[draft.account_id]] if draft.account_id is not None else accounts
    froms = await FromAddress.filter(account_id__in=[a.id for a in candidates])
    if draft.from_address:
        wanted = normalise_email(draft.from_address, field="fromAddress")
        chosen = next((f for f in froms if f.address == wanted), None)
        if chosen is None:
            raise invalid_input(
                f"{wanted} is not one of your From addresses: add it to the account first "
                "(addFromAddress), or choose another.",
                field="fromAddress",
            )
    else:
        first = candidates[0]
        chosen = next((f for f in froms if f.account_id == first.id and f.is_default), None) or next(
            f for f in froms if f.account_id == first.id
        )
    return by_id[chosen.account_id], chosen


def _check_size(email: OutgoingEmail, limit: int) -> None:
    size = sum(len(a.data) for a in email.attachments) + len(email.text) + len(email.html)
    if size > limit:
        raise SalesInboxError(
            ErrorCode.MESSAGE_TOO_LARGE,
            f"The message is {size / 1_048_576:.1f} MB; at most {limit / 1_048_576:.0f} MB can be "
            "sent. Remove or shrink attachments, or share a link instead.",
            field="attachments",
        )


async def _deliver(account: MailAccount, email: OutgoingEmail, services: MailServices) -> SentCopy:
    _check_size(email, services.max_message_bytes)
    if not email.recipients:
        raise invalid_input("Add at least one recipient.", field="to")
    if len(email.recipients) > MAX_RECIPIENTS:
        raise invalid_input(f"At most {MAX_RECIPIENTS} recipients per message.", field="to")
    sent = await send_email(account, email, secrets=services.secrets, policy=services.policy,
                            tokens=services.tokens)
    # The copy kept in Sent (and in the CRM) shows Bcc, as mail clients do; the wire copy did not.
    with_bcc = build_mime(email, message_id=sent.message_id, date=sent.sent_at, include_bcc=True)
    return await record_sent_copy(
        account, with_bcc,
        append_to_server=not services.registry.stores_sent_mail(account.provider),
        secrets_box=services.secrets, policy=services.policy, tokens=services.tokens,
    )


async def send_new(actor: User, draft: Draft, services: MailServices) -> SentCopy:
    """Send a new message from the actor's own account; returns the stored Sent copy."""
    _check_attachments(draft.attachments)
    account, sender = await _sender(actor, draft)
    email = OutgoingEmail(
        from_address=sender.address, from_name=sender.name or account.display_name,
        to=_addresses(draft.to, "to"), cc=_addresses(draft.cc, "cc"), bcc=_addresses(draft.bcc, "bcc"),
        subject=" ".join(draft.subject.split())[:MAX_SUBJECT], text=draft.text, html=draft.html,
        attachments=draft.attachments,
    )
    return await _deliver(account, email, services)


async def _addresses_of(message_id: int, role: AddressRole) -> list[str]:
    return await column_values(MessageAddress.filter(message_id=message_id, role=role).order_by("id"), "address")


def reply_subject(subject: str) -> str:
    """``Re: <subject>`` without piling up prefixes (``Re: Re: AW:`` → ``Re:``)."""
    return "Re: " + _REPLY_PREFIX.sub("", subject).strip()


def _quote(original: Message, text: str) -> str:
    when = original.date.strftime("%a, %d %b %Y %H:%M") if original.date else "an earlier date"
    who = original.from_name or original.from_address or "someone"
    quoted = "\n".join("> " + line if line else ">" for line in text.splitlines())
    return f"On {when}, {who} wrote:\n{quoted}\n"


async def reply(
    actor: User, message_id: int, draft: Draft, services: MailServices, *, reply_all: bool = False
) -> SentCopy:
    """Reply (or reply to all) to a message the actor may see, from the actor's own account.

    Recipients: the original's Reply-To when it has one, else its From (RFC 5322 §3.6.2); for
    the actor's own sent mail, its To. Reply-all adds the original To and Cc.
    The actor's own addresses are always removed.
    Extra To/Cc/Bcc of ``draft`` are added.

    Once sent, the original gets \\Answered on the server and in the store when it is the
    actor's own mail (:func:`~..sync.message_flags.mark_answered`; a failure there is logged
    and does not fail the reply).
    """
    _check_attachments(draft.attachments)
    if not await can_see(actor, message_id):
        raise not_found("message")
    original = await Message.get(id=message_id)
    account, sender = await _sender(actor, draft)
    mine = set(await column_values(FromAddress.filter(account__user_id=actor.id), "address"))
    mine |= set(await column_values(MailAccount.filter(user_id=actor.id), "email"))
    senders = await _addresses_of(original.id, AddressRole.FROM)
    original_to = await _addresses_of(original.id, AddressRole.TO)
    reply_to = await _addresses_of(original.id, AddressRole.REPLY_TO)
    primary = original_to if set(senders) & mine else (reply_to or senders)  # my own sent mail: its To
    to = [a for a in [*primary, *_addresses(draft.to, "to")] if a not in mine]
    cc = list(_addresses(draft.cc, "cc"))
    if reply_all:
        others = [*original_to, *await _addresses_of(original.id, AddressRole.CC)]
        cc = [a for a in [*others, *cc] if a not in mine and a not in to]
    body = await MessageBody.get_or_none(message_id=original.id)
    original_text = body.text if body else original.snippet
    references = tuple(original.references.split()) + ((original.message_id,) if original.message_id else ())
    email = OutgoingEmail(
        from_address=sender.address, from_name=sender.name or account.display_name,
        to=tuple(dict.fromkeys(to)), cc=tuple(dict.fromkeys(cc)), bcc=_addresses(draft.bcc, "bcc"),
        subject=reply_subject(" ".join((draft.subject or original.subject).split()))[:MAX_SUBJECT],
        text=(draft.text.rstrip() + "\n\n" + _quote(original, original_text)) if original_text else draft.text,
        html=draft.html, in_reply_to=original.message_id,
        references=tuple(dict.fromkeys(references))[-20:], attachments=draft.attachments,
    )
    copy = await _deliver(account, email, services)
    await mark_answered(actor, original.id, secrets=services.secrets, policy=services.policy,
                        tokens=services.tokens)
    return copy
