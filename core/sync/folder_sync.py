"""One folder's messages in a sync pass: fetched, parsed and stored in batches (initial or
incremental), flag changes read back, expunges applied (QRESYNC's VANISHED, else UID by UID),
and the store reconciled with the server. :mod:`.engine` runs these per folder, after it has
selected the folder and checked its UIDVALIDITY (docs/sync.md).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from imapclient import IMAPClient

from ..db.models import Folder, MailAccount
from ..sending.sent_copy import replace_placeholders
from . import imap_fetch as fetch
from .events import MailEvent
from .store import FolderTarget, apply_flags, delete_uids, store_batch, stored_uids

if TYPE_CHECKING:  # the engine imports this module
    from .engine import FolderReport, SyncServices

__all__ = ["BATCH_SIZE", "FenceLost", "FolderIncomplete", "check_fence", "incremental_sync", "initial_sync", "publish"]

log = logging.getLogger("salesinbox.core.sync.engine")  # one logger for the whole pass

BATCH_SIZE = 200


class FolderIncomplete(Exception):
    """The server lists messages that it did not hand over when fetched."""


def publish(services: SyncServices, account: MailAccount, kind: str, ids: tuple[int, ...] = ()) -> None:
    """Tell the account's subscribers what changed (:class:`~.events.MailEvent`)."""
    services.events.publish(MailEvent(kind=kind, account_id=account.id, user_id=account.user_id, message_ids=ids))


class FenceLost(Exception):
    """This process may no longer write the account: another has taken its sync over (raised
    by ``SyncServices.fence``; the pass stops without writing more)."""


async def check_fence(services: SyncServices) -> None:
    """Raise :class:`FenceLost` (through ``services.fence``) if this process may no longer
    write the account."""
    if services.fence is not None:
        await services.fence()


async def _store_uids(
    client: IMAPClient, uids: list[int], folder: Folder, target: FolderTarget,
    account: MailAccount, services: SyncServices, report: FolderReport, condstore: bool,
) -> set[int]:
    """Fetch, parse and store ``uids`` in batches, each committed with the folder's count.

    The next batch is fetched (in its thread) while this one is stored, so the network and
    the database work at the same time. Returns the UIDs the server did not hand over
    (expunged meanwhile, or unreadable on its side).
    """
    unfetched: set[int] = set()
    batches = [uids[start : start + BATCH_SIZE] for start in range(0, len(uids), BATCH_SIZE)]

    def fetch_later(batch: list[int]) -> asyncio.Future[list[Any]]:  # of FetchedMessage
        return asyncio.ensure_future(
            asyncio.to_thread(fetch.fetch_messages, client, batch, condstore=condstore)
        )

    pending = fetch_later(batches[0]) if batches else None
    try:
        for index, batch in enumerate(batches):
            # shield: if the sync is cancelled, the thread still finishes with the connection
            # before anyone closes it (see the finally below).
            assert pending is not None  # fetch_later(batches[index]), started before this turn
            fetched = await asyncio.shield(pending)
            pending = fetch_later(batches[index + 1]) if index + 1 < len(batches) else None
            unfetched.update(set(batch).difference(item.uid for item in fetched))
            await check_fence(services)
            result = await store_batch(target, fetched)
            if target.folder_is_sent:
                await replace_placeholders(folder.id, result.inserted_ids)
            report.new_messages += len(result.inserted_ids)
            report.warnings += result.with_warnings
            folder.messages_synced += len(result.inserted_ids)
            lowest = min(batch)
            folder.lowest_synced_uid = (
                lowest if folder.lowest_synced_uid is None else min(folder.lowest_synced_uid, lowest)
            )
            await folder.save(update_fields=["lowest_synced_uid"])
            if report.progress is not None:
                report.progress.stored(folder.name, len(result.inserted_ids), folder.messages_synced,
                                       None if folder.initial_sync_done else folder.messages_total)
            if result.inserted_ids:
                publish(services, account, "NEW_MESSAGES", result.inserted_ids)
    finally:
        if pending is not None:  # never leave a fetch thread using the connection behind
            await asyncio.wait({pending})
            if not pending.cancelled():
                pending.exception()  # retrieved: a failed prefetch is not "never retrieved"
    return unfetched


def _sync_window(account: MailAccount) -> date | None:
    """The first day of mail to keep, for an account that syncs only the last N days."""
    if not account.sync_days_limit:
        return None
    return (datetime.now(UTC) - timedelta(days=account.sync_days_limit)).date()


async def _store_all(
    client: IMAPClient, uids: list[int], folder: Folder, target: FolderTarget,
    account: MailAccount, services: SyncServices, report: FolderReport, condstore: bool,
) -> None:
    """:func:`_store_uids`, then make sure nothing the server still lists was left out:
    raises :class:`FolderIncomplete` (the folder is then not done, and retried) if so."""
    unfetched = await _store_uids(client, uids, folder, target, account, services, report, condstore)
    if unfetched:
        still_listed = unfetched.intersection(await asyncio.to_thread(fetch.list_uids, client))
        if still_listed:
            raise FolderIncomplete(
                f"The server lists {len(still_listed)} message(s) it did not return when fetched "
                f"(e.g. UID {min(still_listed)}); they will be tried again."
            )


async def initial_sync(
    client: IMAPClient, folder: Folder, target: FolderTarget, account: MailAccount,
    services: SyncServices, report: FolderReport, condstore: bool,
) -> None:
    on_server = await asyncio.to_thread(fetch.list_uids, client, _sync_window(account))
    stored = await stored_uids(folder.id, target.uidvalidity)
    missing = sorted(set(on_server) - stored, reverse=True)  # newest first
    folder.messages_total = len(on_server)
    await folder.save(update_fields=["messages_total"])
    await _store_all(client, missing, folder, target, account, services, report, condstore)
    folder.initial_sync_done = True


async def incremental_sync(
    client: IMAPClient, folder: Folder, target: FolderTarget, snapshot: fetch.FolderSnapshot,
    account: MailAccount, services: SyncServices, report: FolderReport, condstore: bool,
) -> None:
    # The store's count must also still match: a folder whose rows went missing (found by
    # the audit, or restored from an old backup) is reconciled even if the server is quiet.
    expected = folder.messages_total if account.sync_days_limit else snapshot.exists
    unchanged = (
        condstore
        and snapshot.highestmodseq is not None
        and snapshot.uidnext == folder.uidnext
        and snapshot.highestmodseq == folder.highestmodseq
        and folder.messages_synced == expected
    )
    if unchanged:
        return
    stored = await stored_uids(folder.id, target.uidvalidity)
    if snapshot.vanished:  # QRESYNC named the expunged UIDs: no need to list the whole folder
        gone = fetch.uids_in_set(snapshot.vanished, stored)
        if gone:
            await check_fence(services)
            folder.messages_synced -= await delete_uids(folder.id, target.uidvalidity, gone)
            stored -= gone
            publish(services, account, "MESSAGES_REMOVED")
    # From the UIDNEXT of the last completed pass, not from the highest stored UID: new mail
    # is stored newest first, so after a cut pass the highest UID is stored, older ones not.
    since_last_pass = await asyncio.to_thread(fetch.uids_from, client, folder.uidnext or 1)
    new_uids = sorted(set(since_last_pass) - stored, reverse=True)
    await _store_all(client, new_uids, folder, target, account, services, report, condstore)
    await _sync_flags(client, folder, target, stored, account, services, condstore)
    stored.update(new_uids)
    if len(stored) == snapshot.exists and not account.sync_days_limit:
        folder.messages_total = snapshot.exists
    else:
        await _reconcile(client, folder, target, stored, account, services, report, condstore)


async def _reconcile(
    client: IMAPClient, folder: Folder, target: FolderTarget, stored: set[int],
    account: MailAccount, services: SyncServices, report: FolderReport, condstore: bool,
) -> None:
    """Make the store hold exactly the server's UIDs (within the account's window): delete
    the expunged ones and fetch any that are missing, whatever left them out."""
    await check_fence(services)
    on_server = set(await asyncio.to_thread(fetch.list_uids, client))
    gone = stored - on_server
    if gone:
        folder.messages_synced -= await delete_uids(folder.id, target.uidvalidity, gone)
        publish(services, account, "MESSAGES_REMOVED")
    window = _sync_window(account)
    wanted = set(await asyncio.to_thread(fetch.list_uids, client, window)) if window else on_server
    missing = sorted(wanted - stored, reverse=True)
    if missing:
        log.warning("Folder %r of account %s: %d messages on the server were not stored; fetching them",
                    folder.name, account.id, len(missing))
        await _store_all(client, missing, folder, target, account, services, report, condstore)
    folder.messages_total = len(wanted)


async def _sync_flags(
    client: IMAPClient, folder: Folder, target: FolderTarget, stored: set[int],
    account: MailAccount, services: SyncServices, condstore: bool,
) -> None:
    if not stored:
        return
    if condstore and folder.highestmodseq is not None:
        changed_uids = await asyncio.to_thread(fetch.changed_since, client, folder.highestmodseq)
        uids = [uid for uid in changed_uids if uid in stored]
    else:
        uids = sorted(stored)  # no CONDSTORE: compare every flag
    if not uids:
        return
    flags = await asyncio.to_thread(fetch.fetch_flags, client, uids, condstore=condstore)
    if await apply_flags(folder.id, target.uidvalidity, flags):
        publish(services, account, "FLAGS_CHANGED")
