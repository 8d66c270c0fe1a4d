"""The only module that writes mail rows: idempotent, batched upserts from the sync engine.

A message's identity is (folder, UIDVALIDITY, UID). Storing a batch twice stores nothing
the second time, so a sync that crashed mid-batch simply runs the batch again.

Every write here runs to its commit even if its caller is cancelled (see
:mod:`..db.uninterrupted`).

``Folder.messages_synced`` is the number of the folder's rows under its current UIDVALIDITY
(placeholders of just-sent mail excluded). Every function here that adds or removes such rows
changes that count in the same transaction, so the count the API shows is the store's, at
every commit and after any crash.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tortoise import timezone
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from ..crm.linking import link_messages
from ..db.models import (
    NON_COUNTERPARTY_ROLES,
    AddressRole,
    Attachment,
    DateSource,
    Direction,
    Folder,
    MailAccount,
    Message,
    MessageAddress,
    MessageBody,
    SyncState,
)
from ..db.orm_values import column_values
from ..db.uninterrupted import uninterrupted
from ..parsing.message_parser import Address, FetchedMessage, direction_for
from .row_insert import insert_rows
from .thread_joining import thread_keys_for

# UIDVALIDITY of rows stored before the server gave them a UID (sent mail, see sent_copy).
PLACEHOLDER_UIDVALIDITY = 0
SEEN = "\\Seen"
FLAGGED = "\\Flagged"
ANSWERED = "\\Answered"


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


async def _account_id(folder_id: int) -> int | None:
    """The folder's account. Message lookups name it: the only index on (folder, UIDVALIDITY,
    UID) is the unique one on (account, folder, UIDVALIDITY, UID); without the account they
    scan the whole table (on PostgreSQL, storing 20,000 messages took 4x as long)."""
    found = await column_values(Folder.filter(id=folder_id).limit(1), "account_id")
    return int(found[0]) if found else None


async def stored_uids(folder_id: int, uidvalidity: int) -> set[int]:
    """The UIDs of ``folder_id`` stored under ``uidvalidity``."""
    rows = await column_values(
        Message.filter(account_id=await _account_id(folder_id), folder_id=folder_id, uidvalidity=uidvalidity), "uid"
    )
    return set(rows)


_insert_rows = insert_rows  # the one name the batch writer calls (tests observe it)


def _date(item: FetchedMessage) -> tuple[datetime, DateSource, list[str]]:
    """The stored date, where it comes from, and the parse warnings with what that says."""
    warnings = list(item.parsed.warnings)
    if item.parsed.date is not None:
        return item.parsed.date, DateSource.HEADER, warnings
    if item.internal_date is not None:
        warnings.append("no readable Date header: the date is the server's INTERNALDATE")
        return item.internal_date, DateSource.INTERNALDATE, warnings
    # Never NULL: the views page by (date, id) on every backend.
    warnings.append("no readable Date header and no INTERNALDATE: the date is when it was stored")
    return datetime.now(UTC), DateSource.NONE, warnings


def _message_row(target: FolderTarget, item: FetchedMessage, thread_key: str, created_at: datetime) -> dict[str, Any]:
    parsed = item.parsed
    sender = parsed.from_[0] if parsed.from_ else Address(name="", address="")
    direction = direction_for(parsed, set(target.own_addresses), target.folder_is_sent)
    date, date_source, warnings = _date(item)
    return {
        "account_id": target.account_id,
        "folder_id": target.folder_id,
        "uidvalidity": target.uidvalidity,
        "uid": item.uid,
        "modseq": item.modseq,
        "message_id": (parsed.message_id or None) and parsed.message_id[:998],
        "in_reply_to": (parsed.in_reply_to or None) and parsed.in_reply_to[:998],
        "references": " ".join(parsed.references),
        "thread_key": thread_key,
        "subject": parsed.subject,
        "from_name": sender.name[:500],
        "from_address": sender.address[:320],
        "date": date,
        "date_source": date_source,
        "direction": Direction(direction),
        "snippet": parsed.snippet[:300],
        "size": parsed.size,
        "has_attachments": parsed.has_attachments,
        "parse_warnings": warnings,
        "created_at": created_at,
        **flag_columns(item.flags),
    }


_ROLES = ((AddressRole.FROM, "from_"), (AddressRole.TO, "to"), (AddressRole.CC, "cc"), (AddressRole.BCC, "bcc"))


def _children(
    message_id: int, item: FetchedMessage, own: frozenset[str],
    bodies: list[dict[str, Any]], addresses: list[dict[str, Any]], attachments: list[dict[str, Any]],
) -> None:
    """Append the body, address and attachment rows of one message to the batch's lists.

    Every From author is kept (and is a counterparty unless it is an own address); the Sender
    and the Reply-To addresses are kept too, never as counterparties
    (docs/records-and-links.md#counterparties)."""
    parsed = item.parsed
    bodies.append({"message_id": message_id, "text": parsed.text, "html": parsed.html,
                   "headers": parsed.header_block})
    roles = [(role, address) for role, attribute in _ROLES for address in getattr(parsed, attribute)]
    if parsed.sender is not None:
        roles.append((AddressRole.SENDER, parsed.sender))
    roles += [(AddressRole.REPLY_TO, address) for address in parsed.reply_to]
    for role, address in roles:
        addresses.append({
            "message_id": message_id,
            "role": role,
            "name": address.name[:500],
            "address": address.address[:320],
            "domain": address.address.rpartition("@")[2][:255],
            "is_counterparty": role not in NON_COUNTERPARTY_ROLES and address.address not in own,
        })
    for info in parsed.attachments:
        attachments.append({
            "message_id": message_id,
            "filename": info.filename[:500],
            "content_type": info.content_type[:200],
            "size": info.size,
            "content_id": info.content_id[:500] if info.content_id else None,
            "is_inline": info.is_inline,
        })


def _uid_condition(uids: Sequence[int]) -> dict[str, Any]:
    """Filter arguments selecting at least ``uids`` (callers keep only those). A batch is
    usually a run of consecutive UIDs: then a range, which is always an index condition,
    whereas PostgreSQL without statistics (a new database, autovacuum off) filters
    ``uid = ANY(...)`` row by row over the whole folder."""
    low, high = min(uids), max(uids)
    if high - low < 2 * len(uids) + 100:
        return {"uid__gte": low, "uid__lte": high}
    return {"uid__in": list(uids)}


async def plan_for_values(connection: BaseDBAsyncClient) -> None:
    """On PostgreSQL, plan the rest of this transaction's statements for their own values.

    asyncpg's cached generic plans, made while the tables were small, made storing 20,000
    messages slow down (UID lookups 5.8 s -> 0.08 s, linking 3.8 s -> 0.31 s with this).
    Only the sync's writes use it: for the API's reads the default plans are cheaper.
    """
    if connection.capabilities.dialect == "postgres":
        await connection.execute_script("SET LOCAL plan_cache_mode = force_custom_plan")


@uninterrupted
async def store_batch(target: FolderTarget, batch: Sequence[FetchedMessage]) -> StoreResult:
    """Insert the messages of ``batch`` not yet stored, with bodies, addresses, attachments
    and links, in one transaction, each in its thread (merging the threads it connects, see
    :mod:`.thread_joining`). Returns the new message ids."""
    if not batch:
        return StoreResult((), 0, 0)
    uids = [item.uid for item in batch]
    async with in_transaction() as connection:
        await plan_for_values(connection)
        existing = set(uids).intersection(
            await Message.filter(
                account_id=target.account_id, folder_id=target.folder_id,
                uidvalidity=target.uidvalidity, **_uid_condition(uids),
            ).values_list("uid", flat=True)
        )
        fresh = {item.uid: item for item in batch if item.uid not in existing}
        if not fresh:
            return StoreResult((), len(batch), 0)
        created_at = timezone.localtime()  # what auto_now_add gives
        keys = await thread_keys_for(connection, target.account_id, [item.parsed for item in fresh.values()])
        await _insert_rows(connection, Message, [
            _message_row(target, item, key, created_at) for item, key in zip(fresh.values(), keys, strict=True)
        ])
        # executemany does not return keys: read them back by the natural key.
        id_by_uid = {
            uid: message_id
            for uid, message_id in await Message.filter(
                account_id=target.account_id, folder_id=target.folder_id,
                uidvalidity=target.uidvalidity, **_uid_condition(list(fresh)),
            ).values_list("uid", "id")
            if uid in fresh
        }
        bodies: list[dict[str, Any]] = []
        addresses: list[dict[str, Any]] = []
        attachments: list[dict[str, Any]] = []
        for uid, item in fresh.items():
            _children(id_by_uid[uid], item, target.own_addresses, bodies, addresses, attachments)
        await _insert_rows(connection, MessageBody, bodies)
        await _insert_rows(connection, MessageAddress, addresses)
        await _insert_rows(connection, Attachment, attachments)
        new_ids = tuple(id_by_uid[uid] for uid in fresh)
        await link_messages(target.organisation_id, new_ids)
        if target.uidvalidity != PLACEHOLDER_UIDVALIDITY:
            await _count_rows(target.folder_id, len(new_ids))
    warned = sum(1 for item in fresh.values() if item.parsed.warnings)
    return StoreResult(new_ids, len(existing), warned)


@uninterrupted
async def apply_flags(
    folder_id: int, uidvalidity: int, current: Mapping[int, tuple[frozenset[str], int | None]]
) -> int:
    """Bring the stored flags of the given UIDs in line with ``current`` (the server's flags
    and MODSEQ); only rows that differ are written. Returns how many changed."""
    changed = 0
    uids = list(current)
    account_id = await _account_id(folder_id)
    async with in_transaction():
        for start in range(0, len(uids), 500):
            rows = await Message.filter(
                account_id=account_id, folder_id=folder_id, uidvalidity=uidvalidity,
                uid__in=uids[start : start + 500],
            ).values_list("id", "uid", "seen", "flagged", "answered")
            for message_id, uid, seen, flagged, answered in rows:
                flags, modseq = current[uid]
                wanted = flag_columns(flags)
                if (seen, flagged, answered) == (wanted["seen"], wanted["flagged"], wanted["answered"]):
                    continue
                values: dict[str, object] = dict(wanted)
                if modseq is not None:
                    values["modseq"] = modseq
                await Message.filter(id=message_id).update(**values)
                changed += 1
    return changed


async def _count_rows(folder_id: int, change: int) -> None:
    """Add ``change`` to the folder's stored count (call inside the transaction that
    inserted or deleted the rows)."""
    if change:
        await Folder.filter(id=folder_id).update(messages_synced=F("messages_synced") + change)


@uninterrupted
async def delete_uids(folder_id: int, uidvalidity: int, uids: Iterable[int]) -> int:
    """Delete messages expunged on the server (their links, bodies… cascade)."""
    wanted = list(uids)
    deleted = 0
    account_id = await _account_id(folder_id)
    async with in_transaction():
        for start in range(0, len(wanted), 500):  # stay under SQLite's variable limit
            chunk = Message.filter(
                account_id=account_id, folder_id=folder_id, uidvalidity=uidvalidity,
                uid__in=wanted[start : start + 500],
            )
            # Counted, not taken from the DELETE: some drivers count the cascaded rows too.
            found = await chunk.count()
            await chunk.delete()
            deleted += found
        if uidvalidity != PLACEHOLDER_UIDVALIDITY:
            await _count_rows(folder_id, -deleted)
    return deleted


@uninterrupted
async def restart_for_uidvalidity(folder_id: int, uidvalidity: int) -> int:
    """The server renumbered the folder: forget it and start its initial sync again.

    In one transaction, deletes the messages stored under any other UIDVALIDITY and resets
    the folder's sync state (``initial_sync_done`` false, no UIDNEXT/HIGHESTMODSEQ, count 0)
    under the new ``uidvalidity``, and a COMPLETE account goes back to SYNCING. A crash before
    the commit finds the old state and sees the change again; a crash after it resumes the full
    re-sync: either way nothing is skipped.
    Placeholders of just-sent mail (see :mod:`salesinbox.core.sending.sent_copy`) are kept: the
    server's copy, when it comes, replaces them by Message-ID. Returns how many messages
    were deleted.
    """
    account_id = await _account_id(folder_id)
    async with in_transaction():
        stale = (
            Message.filter(account_id=account_id, folder_id=folder_id)
            .exclude(uidvalidity=uidvalidity)
            .exclude(uidvalidity=PLACEHOLDER_UIDVALIDITY)
        )
        removed = await stale.count()
        await stale.delete()
        current = await Message.filter(
            account_id=account_id, folder_id=folder_id, uidvalidity=uidvalidity
        ).count()
        await Folder.filter(id=folder_id).update(
            uidvalidity=uidvalidity, uidnext=None, highestmodseq=None, lowest_synced_uid=None,
            initial_sync_done=False, messages_synced=current,
        )
        await _account_not_complete(account_id)
    return removed


async def _account_not_complete(account_id: int | None) -> None:
    """A folder being fetched again is missing mail: its account is SYNCING, not COMPLETE,
    until a sync pass has fetched it."""
    await MailAccount.filter(id=account_id, sync_state=SyncState.COMPLETE).update(
        sync_state=SyncState.SYNCING
    )


async def reopen_folder(folder_id: int) -> None:
    """Mark a folder found missing mail (by the audit) not done, and its account not
    COMPLETE, in one transaction: the next sync pass fetches what is missing."""
    async with in_transaction():
        await Folder.filter(id=folder_id).update(initial_sync_done=False)
        await _account_not_complete(await _account_id(folder_id))
