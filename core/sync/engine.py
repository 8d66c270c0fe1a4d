"""The sync engine: one pass over an account's folders, initial or incremental (docs/sync.md).

Per folder, a small state machine on (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ):

* UIDVALIDITY changed → the folder's old rows are deleted and its sync state reset, in one
  transaction, and it is synced again from scratch.
* Initial sync → the UIDs on the server minus those stored, newest first, in batches; each
  batch is committed with the folder's stored count, so a crash or a cut connection resumes
  where it stopped with nothing lost and nothing duplicated. Only when every UID is stored
  is the folder marked done.
* Afterwards → nothing to do when UIDNEXT and HIGHESTMODSEQ are unchanged (O(1) with
  CONDSTORE); else the UIDs from the last completed pass's UIDNEXT that are not stored are
  fetched, flag changes read with ``SEARCH MODSEQ`` (or by comparing all flags without
  CONDSTORE), expunges learnt from ``VANISHED (EARLIER)`` where the server has QRESYNC
  (RFC 7162), and when the stored count still differs from the server's, the folder is
  reconciled UID by UID: expunged UIDs deleted, missing ones fetched.

The state that says "done" (``initial_sync_done``, UIDNEXT, HIGHESTMODSEQ) is written only
after the work it vouches for has been committed, and ``messages_synced`` is the store's own
count (kept by :mod:`salesinbox.core.sync.store` in the same transactions as the rows).

IMAP I/O and parsing run in a worker thread; database work runs between network calls.
One failing folder does not stop the others; a refused login stops everything and puts the
account in ``NEEDS_REAUTH`` so that the provider does not lock it for retrying.
"""

from __future__ import annotations

import asyncio
import imaplib
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from imapclient import IMAPClient
from tortoise.exceptions import DoesNotExist

from ..credentials import SecretBox
from ..crm.linking import own_addresses
from ..db.models import Folder, MailAccount, SyncState
from ..errors import ErrorCode, SalesInboxError
from ..oauth.oauth_tokens import OAuthReconnectNeeded, OAuthTokens, account_logins
from ..plugin_host.provider_registry import ProviderRegistry
from ..plugin_host.providers import AuthFailureContext, FolderRole
from ..sending.sent_copy import replace_placeholders
from ..transport.imap import close_quietly, open_imap
from ..transport.server_errors import MailServerError
from ..transport.server_login import ConnectPolicy
from . import imap_fetch as fetch
from .events import EventBus, MailEvent
from .pass_log import PassLog
from .store import (
    FolderTarget,
    apply_flags,
    delete_uids,
    restart_for_uidvalidity,
    store_batch,
    stored_uids,
)

log = logging.getLogger(__name__)

BATCH_SIZE = 200
# Errors that mean the connection is gone: the whole pass stops and is retried later.
CONNECTION_ERRORS = (OSError, socket.timeout, imaplib.IMAP4.abort, EOFError)
# The folder state a pass writes; ``messages_synced`` is not among them: the store keeps it.
_FOLDER_STATE = (
    "uidvalidity", "uidnext", "highestmodseq", "lowest_synced_uid", "initial_sync_done",
    "messages_total", "last_error", "retry_at", "last_synced_at",
)


class FolderIncomplete(Exception):
    """The server lists messages that it did not hand over when fetched."""


@dataclass(frozen=True)
class SyncServices:
    """What a sync pass needs besides the database."""

    secrets: SecretBox
    registry: ProviderRegistry
    policy: ConnectPolicy
    events: EventBus
    #: called once when an account's initial sync completes (sends the confirmation email)
    on_initial_sync_complete: Callable[[MailAccount, AccountSyncReport], Awaitable[None]] | None = None
    #: access tokens of accounts signed in with OAuth (None: stored secrets only)
    tokens: OAuthTokens | None = None


@dataclass
class FolderReport:
    name: str
    role: str | None
    messages: int = 0
    new_messages: int = 0
    linked_messages: int = 0
    warnings: int = 0
    error: str | None = None
    #: the pass's log and metrics (:mod:`.pass_log`), told of each stored batch
    progress: PassLog | None = field(default=None, repr=False, compare=False)


@dataclass
class AccountSyncReport:
    account_id: int
    state: SyncState
    folders: list[FolderReport] = field(default_factory=list)
    initial_sync_completed: bool = False
    error: str | None = None


def _publish(services: SyncServices, account: MailAccount, kind: str, ids: tuple[int, ...] = ()) -> None:
    services.events.publish(MailEvent(kind=kind, account_id=account.id, user_id=account.user_id, message_ids=ids))


async def sync_account(account_id: int, services: SyncServices) -> AccountSyncReport:
    """Run one sync pass of ``account_id``: connect, sync every folder, disconnect.

    Raises :class:`MailServerError` (other than a refused login) or a connection error for
    the caller to retry with backoff; a refused login is recorded, not raised. The pass is
    logged and counted (:mod:`.pass_log`).
    """
    pass_log = PassLog(account_id)
    try:
        return await _sync_account(account_id, services, pass_log)
    except DoesNotExist:
        raise  # the account was disconnected: no pass to count
    except BaseException as error:
        pass_log.failed(error)
        raise


async def _sync_account(account_id: int, services: SyncServices, pass_log: PassLog) -> AccountSyncReport:
    account = await MailAccount.get(id=account_id).select_related("user")
    report = AccountSyncReport(account_id=account.id, state=account.sync_state)
    if account.sync_state == SyncState.NEEDS_REAUTH:
        report.error = account.sync_error
        return report  # never retry a refused password: providers lock such accounts
    try:
        logins = await account_logins(account, services.secrets, services.tokens)
    except OAuthReconnectNeeded:  # the grant was refused: the account is in NEEDS_REAUTH
        pass_log.refused("the provider refused the OAuth grant")
        await account.refresh_from_db(fields=["sync_state", "sync_error"])
        _publish(services, account, "SYNC_STATE")
        report.state, report.error = account.sync_state, account.sync_error
        return report
    except SalesInboxError as error:  # token endpoint down, client not set up: retried
        await _record_account_error(account, services, error.message)
        raise
    opening = asyncio.ensure_future(asyncio.to_thread(open_imap, logins.imap, services.policy))
    try:
        # shield: cancelled while logging in, the client the thread opens is still closed.
        client = await asyncio.shield(opening)
    except asyncio.CancelledError:
        await _close_when_open(opening)
        raise
    except MailServerError as error:
        if error.code in (ErrorCode.AUTHENTICATION_FAILED, ErrorCode.IMAP_DISABLED):
            await _needs_reauth(account, services, error)
            pass_log.refused()
            report.state, report.error = SyncState.NEEDS_REAUTH, account.sync_error
            return report
        await _record_account_error(account, services, error.message)
        raise
    try:
        await _sync_folders(client, account, services, report, pass_log)
    except CONNECTION_ERRORS as error:
        await _record_account_error(account, services, f"Connection lost during sync: {error}")
        raise
    finally:
        await asyncio.to_thread(close_quietly, client)
    return report


async def _close_when_open(opening: asyncio.Future[IMAPClient]) -> None:
    """Wait for a login whose caller was cancelled (bounded by the mail timeout), then log
    out: a connection left to a callback outlived a stopped scheduler and its event loop."""
    try:
        client = await asyncio.shield(opening)
    except BaseException:  # noqa: BLE001 - the login failed, or we are cancelled again
        return
    await asyncio.to_thread(close_quietly, client)


async def _needs_reauth(account: MailAccount, services: SyncServices, error: MailServerError) -> None:
    hint = ""
    if error.code == ErrorCode.AUTHENTICATION_FAILED:
        hint = services.registry.auth_failure_hint(
            AuthFailureContext(
                provider=account.provider,
                auth_kind=account.imap_auth_kind,
                protocol="imap",
                server_message=error.server_message,
            )
        )
    account.sync_state = SyncState.NEEDS_REAUTH
    account.sync_error = f"{error.message} {hint}".strip()
    await account.save(update_fields=["sync_state", "sync_error"])
    _publish(services, account, "SYNC_STATE")


async def _record_account_error(account: MailAccount, services: SyncServices, message: str) -> None:
    account.sync_state = SyncState.ERROR if account.initial_sync_completed_at is None else account.sync_state
    account.sync_error = message
    await account.save(update_fields=["sync_state", "sync_error"])
    _publish(services, account, "SYNC_STATE")


async def _sync_folders(
    client: IMAPClient, account: MailAccount, services: SyncServices, report: AccountSyncReport,
    pass_log: PassLog,
) -> None:
    await _ensure_sent_folder(client, account, services)
    folders = await Folder.filter(account_id=account.id).order_by("id")
    initial = account.initial_sync_completed_at is None
    pass_log.began(initial=initial, folders=len(folders))
    if initial and account.sync_state != SyncState.SYNCING:
        account.sync_state = SyncState.SYNCING
        await account.save(update_fields=["sync_state"])
        _publish(services, account, "SYNC_STATE")
    own = frozenset(await own_addresses(account.id))
    announced = {c.upper() for c in account.capabilities}
    condstore = "CONDSTORE" in announced
    qresync = False
    if condstore:
        # QRESYNC (RFC 7162) implies CONDSTORE; trust what ENABLE answers, not the listing
        enabled = await asyncio.to_thread(client.enable, *(["CONDSTORE", "QRESYNC"] if "QRESYNC" in announced
                                                             else ["CONDSTORE"]))
        qresync = b"QRESYNC" in {e.upper() if isinstance(e, bytes) else str(e).upper().encode() for e in enabled}
    for folder in folders:
        folder_report = FolderReport(name=folder.name, role=folder.role, progress=pass_log)
        report.folders.append(folder_report)
        target_base = (account, own, condstore)
        try:
            await _sync_folder(client, folder, target_base, services, folder_report, qresync=qresync)
            folder.last_error, folder.retry_at = None, None
        except CONNECTION_ERRORS:
            raise
        except Exception as error:  # one bad folder must not stop the others
            log.warning("Sync of folder %r of account %s failed", folder.name, account.id, exc_info=True)
            folder_report.error = folder.last_error = f"{type(error).__name__}: {error}"[:2000]
            folder.retry_at = datetime.now(UTC) + timedelta(minutes=5)
        folder.last_synced_at = datetime.now(UTC)
        await folder.save(update_fields=list(_FOLDER_STATE))
        folder_report.messages = folder.messages_synced
    await _finish_pass(account, services, report, folders)
    pass_log.ended(report.state, new=sum(f.new_messages for f in report.folders), folders=len(folders),
                   failed_folders=sum(1 for f in report.folders if f.error is not None))


async def _finish_pass(
    account: MailAccount, services: SyncServices, report: AccountSyncReport, folders: list[Folder]
) -> None:
    now = datetime.now(UTC)
    account.last_synced_at = now
    account.sync_error = None
    all_done = all(f.initial_sync_done for f in folders)
    if all_done and account.initial_sync_completed_at is None:
        account.initial_sync_completed_at = now
        report.initial_sync_completed = True
    account.sync_state = SyncState.COMPLETE if all_done else SyncState.SYNCING
    report.state = account.sync_state
    await account.save(
        update_fields=["last_synced_at", "sync_error", "sync_state", "initial_sync_completed_at"]
    )
    _publish(services, account, "SYNC_STATE")
    if report.initial_sync_completed and services.on_initial_sync_complete is not None:
        try:
            await services.on_initial_sync_complete(account, report)
        except Exception:  # the mail is synced; a failed notice is only logged
            log.exception("Could not send the sync confirmation of account %s", account.id)


async def _ensure_sent_folder(client: IMAPClient, account: MailAccount, services: SyncServices) -> None:
    if await Folder.exists(account_id=account.id, role=FolderRole.SENT):
        return
    name = await asyncio.to_thread(client.find_special_folder, b"\\Sent")
    if name is None:
        existing = {n for _flags, _d, n in await asyncio.to_thread(client.list_folders)}
        name = next(
            (c for c in services.registry.folder_names(account.provider, FolderRole.SENT) if c in existing), None
        )
    if name is not None:
        await Folder.get_or_create(account_id=account.id, name=name, defaults={"role": FolderRole.SENT})


async def _sync_folder(
    client: IMAPClient,
    folder: Folder,
    target_base: tuple[MailAccount, frozenset[str], bool],
    services: SyncServices,
    report: FolderReport,
    *,
    qresync: bool = False,
) -> None:
    account, own, condstore = target_base
    since = None  # with QRESYNC: what the last completed pass saw, to learn what vanished since
    if qresync and folder.initial_sync_done and folder.uidvalidity and folder.highestmodseq:
        since = (folder.uidvalidity, folder.highestmodseq)
    snapshot = await asyncio.to_thread(fetch.select_folder, client, folder.name, qresync=since)
    if folder.uidvalidity is not None and folder.uidvalidity != snapshot.uidvalidity:
        removed = await restart_for_uidvalidity(folder.id, snapshot.uidvalidity)
        log.info("Folder %r: UIDVALIDITY changed, %d stored messages deleted to be fetched again",
                 folder.name, removed)
        await folder.refresh_from_db()
        if account.sync_state == SyncState.COMPLETE:
            account.sync_state = SyncState.SYNCING  # as stored by the reset
            _publish(services, account, "SYNC_STATE")
        _publish(services, account, "MESSAGES_REMOVED")
    elif folder.uidvalidity is None:
        folder.uidvalidity = snapshot.uidvalidity
        await folder.save(update_fields=["uidvalidity"])
    target = FolderTarget(
        account_id=account.id,
        organisation_id=account.user.organisation_id,
        folder_id=folder.id,
        uidvalidity=snapshot.uidvalidity,
        folder_is_sent=folder.role == FolderRole.SENT,
        own_addresses=own,
    )
    if not folder.initial_sync_done:
        await _initial_sync(client, folder, target, account, services, report, condstore)
    else:
        await _incremental_sync(client, folder, target, snapshot, account, services, report, condstore)
    folder.uidnext = snapshot.uidnext
    if snapshot.highestmodseq is not None:
        folder.highestmodseq = snapshot.highestmodseq


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
                _publish(services, account, "NEW_MESSAGES", result.inserted_ids)
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


async def _initial_sync(
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


async def _incremental_sync(
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
            folder.messages_synced -= await delete_uids(folder.id, target.uidvalidity, gone)
            stored -= gone
            _publish(services, account, "MESSAGES_REMOVED")
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
    on_server = set(await asyncio.to_thread(fetch.list_uids, client))
    gone = stored - on_server
    if gone:
        folder.messages_synced -= await delete_uids(folder.id, target.uidvalidity, gone)
        _publish(services, account, "MESSAGES_REMOVED")
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
        _publish(services, account, "FLAGS_CHANGED")
