"""The only module that writes mail rows: idempotent, batched upserts from the sync engine.

A message's identity is (folder, UIDVALIDITY, UID). Storing a batch twice stores nothing
the second time, so a sync that crashed mid-batch simply runs the batch again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from tortoise.transactions import in_transaction

from .linking import link_messages
from .models import (
    AddressRole,
    Attachment,
    Direction,
    Message,
    MessageAddress,
    MessageBody,
)
from .parsing import Address, ParsedMessage, direction_for

SEEN = "\\Seen"
FLAGGED = "\\Flagged"
ANSWERED = "\\Answered"


@dataclass(frozen=True, slots=True)
class FetchedMessage:
    """One message as fetched from IMAP and parsed (parsing happens off the event loop)."""

    uid: int
    flags: frozenset[str]
    parsed: ParsedMessage
    modseq: int | None = None
    internal_date: datetime | None = None


@dataclass(frozen=True, slots=True)
class FolderTarget:
    """Where a batch goes: the folder's identity and what decides direction/counterparties."""

    account_id: int
    organisation_id: int
    folder_id: int
    uidvalidity: int
    folder_is_sent: bool
    own_addresses: frozenset[str]


@dataclass(frozen=True, slots=True)
class StoreResult:
    inserted_ids: tuple[int, ...]
    skipped_existing: int
    with_warnings: int


def flag_columns(flags: Iterable[str]) -> dict[str, bool]:
    """The stored flag booleans for a set of IMAP flags."""
    present = {flag.lower() for flag in flags}
    return {
        "seen": SEEN.lower() in present,
        "flagged": FLAGGED.lower() in present,
        "answered": ANSWERED.lower() in present,
    }


async def stored_uids(folder_id: int, uidvalidity: int) -> set[int]:
    """The UIDs of ``folder_id`` stored under ``uidvalidity``."""
    rows = await Message.filter(folder_id=folder_id, uidvalidity=uidvalidity).values_list(
        "uid", flat=True
    )
    return set(rows)


def _message_row(target: FolderTarget, item: FetchedMessage) -> Message:
    parsed = item.parsed
    sender = parsed.from_[0] if parsed.from_ else Address(name="", address="")
    direction = direction_for(parsed, set(target.own_addresses), target.folder_is_sent)
    return Message(
        account_id=target.account_id,
        folder_id=target.folder_id,
        uidvalidity=target.uidvalidity,
        uid=item.uid,
        modseq=item.modseq,
        message_id=(parsed.message_id or None) and parsed.message_id[:998],
        in_reply_to=(parsed.in_reply_to or None) and parsed.in_reply_to[:998],
        references=" ".join(parsed.references),
        thread_key=parsed.thread_key[:998],
        subject=parsed.subject,
        from_name=sender.name[:500],
        from_address=sender.address[:320],
        # Never NULL: the views page by (date, id) on every backend.
        date=parsed.date or item.internal_date or datetime.now(UTC),
        direction=Direction(direction),
        snippet=parsed.snippet[:300],
        size=parsed.size,
        has_attachments=parsed.has_attachments,
        parse_warnings=list(parsed.warnings),
        **flag_columns(item.flags),
    )


def _children(
    message_id: int, item: FetchedMessage, own: frozenset[str]
) -> tuple[MessageBody, list[MessageAddress], list[Attachment]]:
    parsed = item.parsed
    body = MessageBody(message_id=message_id, text=parsed.text, html=parsed.html)
    addresses = [
        MessageAddress(
            message_id=message_id,
            role=role,
            name=address.name[:500],
            address=address.address[:320],
            domain=address.address.rpartition("@")[2][:255],
            is_counterparty=address.address not in own,
        )
        for role, values in (
            (AddressRole.FROM, parsed.from_),
            (AddressRole.TO, parsed.to),
            (AddressRole.CC, parsed.cc),
            (AddressRole.BCC, parsed.bcc),
        )
        for address in values
    ]
    attachments = [
        Attachment(
            message_id=message_id,
            filename=info.filename[:500],
            content_type=info.content_type[:200],
            size=info.size,
            content_id=info.content_id[:500] if info.content_id else None,
            is_inline=info.is_inline,
        )
        for info in parsed.attachments
    ]
    return body, addresses, attachments


async def store_batch(target: FolderTarget, batch: Sequence[FetchedMessage]) -> StoreResult:
    """Insert the messages of ``batch`` not yet stored, with bodies, addresses, attachments
    and links, in one transaction. Returns the new message ids."""
    if not batch:
        return StoreResult((), 0, 0)
    uids = [item.uid for item in batch]
    async with in_transaction():
        existing = set(
            await Message.filter(
                folder_id=target.folder_id, uidvalidity=target.uidvalidity, uid__in=uids
            ).values_list("uid", flat=True)
        )
        fresh = {item.uid: item for item in batch if item.uid not in existing}
        if not fresh:
            return StoreResult((), len(batch), 0)
        await Message.bulk_create([_message_row(target, item) for item in fresh.values()])
        # bulk_create does not return keys: read them back by the natural key.
        id_by_uid = dict(
            await Message.filter(
                folder_id=target.folder_id, uidvalidity=target.uidvalidity, uid__in=list(fresh)
            ).values_list("uid", "id")
        )
        bodies, addresses, attachments = [], [], []
        for uid, item in fresh.items():
            body, item_addresses, item_attachments = _children(
                id_by_uid[uid], item, target.own_addresses
            )
            bodies.append(body)
            addresses.extend(item_addresses)
            attachments.extend(item_attachments)
        await MessageBody.bulk_create(bodies)
        if addresses:
            await MessageAddress.bulk_create(addresses)
        if attachments:
            await Attachment.bulk_create(attachments)
        new_ids = tuple(id_by_uid[uid] for uid in fresh)
        await link_messages(target.organisation_id, new_ids)
    warned = sum(1 for item in fresh.values() if item.parsed.warnings)
    return StoreResult(new_ids, len(existing), warned)


async def apply_flags(
    folder_id: int, uidvalidity: int, current: Mapping[int, tuple[frozenset[str], int | None]]
) -> int:
    """Bring the stored flags of the given UIDs in line with ``current`` (the server's flags
    and MODSEQ); only rows that differ are written. Returns how many changed."""
    changed = 0
    uids = list(current)
    async with in_transaction():
        for start in range(0, len(uids), 500):
            rows = await Message.filter(
                folder_id=folder_id, uidvalidity=uidvalidity, uid__in=uids[start : start + 500]
            ).values_list("uid", "seen", "flagged", "answered")
            for uid, seen, flagged, answered in rows:
                flags, modseq = current[uid]
                wanted = flag_columns(flags)
                if (seen, flagged, answered) == (wanted["seen"], wanted["flagged"], wanted["answered"]):
                    continue
                values: dict[str, object] = dict(wanted)
                if modseq is not None:
                    values["modseq"] = modseq
                await Message.filter(folder_id=folder_id, uidvalidity=uidvalidity, uid=uid).update(**values)
                changed += 1
    return changed


async def delete_uids(folder_id: int, uidvalidity: int, uids: Iterable[int]) -> int:
    """Delete messages expunged on the server (their links, bodies… cascade)."""
    wanted = list(uids)
    deleted = 0
    for start in range(0, len(wanted), 500):  # stay under SQLite's variable limit
        deleted += await Message.filter(
            folder_id=folder_id, uidvalidity=uidvalidity, uid__in=wanted[start : start + 500]
        ).delete()
    return deleted


async def delete_stale_uidvalidity(folder_id: int, current_uidvalidity: int) -> int:
    """Delete the folder's messages stored under an older UIDVALIDITY (they are re-fetched)."""
    return await Message.filter(folder_id=folder_id).exclude(uidvalidity=current_uidvalidity).delete()
