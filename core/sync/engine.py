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
from datetime import UTC, datetime, timedelta

from imapclient import IMAPClient
from tortoise.exceptions import DoesNotExist

from ..credentials import SecretBox
from ..crm.linking import own_addresses
from ..db.models import Folder, MailAccount, SyncState
from ..errors import ErrorCode, SalesInboxError
from ..oauth.oauth_tokens import OAuthReconnectNeeded, OAuthTokens, account_logins
from ..plugin_host.provider_registry import ProviderRegistry
from ..plugin_host.providers import AuthFailureContext, FolderRole
from ..transport.imap import close_quietly, open_imap
from ..transport.server_errors import MailServerError
from ..transport.server_login import ConnectPolicy
from . import imap_fetch as fetch
from .events import EventBus
from .folder_sync import FenceLost, check_fence, incremental_sync, initial_sync, publish
from .pass_log import PassLog
from .store import FolderTarget, restart_for_uidvalidity

log = logging.getLogger(__name__)

# Errors that mean the connection is gone: the whole pass stops and is retried later.
CONNECTION_ERRORS = (OSError, socket.timeout, imaplib.IMAP4.abort, EOFError)
# The folder state a pass writes; ``messages_synced`` is not among them: the store keeps it.
_FOLDER_STATE = (
    "uidvalidity", "uidnext", "highestmodseq", "lowest_synced_uid", "initial_sync_done",
    "messages_total", "last_error", "retry_at", "last_synced_at",
)


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
    #: awaited before each folder and each batch the pass stores; raises when this process
    #: may no longer write the account (a worker whose fence was lost: :mod:`..scale_out`)
    fence: Callable[[], Awaitable[None]] | None = None


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
        publish(services, account, "SYNC_STATE")
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
    publish(services, account, "SYNC_STATE")


async def _record_account_error(account: MailAccount, services: SyncServices, message: str) -> None:
    account.sync_state = SyncState.ERROR if account.initial_sync_completed_at is None else account.sync_state
    account.sync_error = message
    await account.save(update_fields=["sync_state", "sync_error"])
    publish(services, account, "SYNC_STATE")


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
        publish(services, account, "SYNC_STATE")
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
        except (*CONNECTION_ERRORS, FenceLost):
            raise
        except Exception as error:  # one bad folder must not stop the others
            log.warning("Sync of folder %r of account %s failed", folder.name, account.id, exc_info=True)
            folder_report.error = folder.last_error = f"{type(error).__name__}: {error}"[:2000]
            folder.retry_at = datetime.now(UTC) + timedelta(minutes=5)
        folder.last_synced_at = datetime.now(UTC)
        await check_fence(services)
        await folder.save(update_fields=list(_FOLDER_STATE))
        folder_report.messages = folder.messages_synced
    await _finish_pass(account, services, report, folders)
    pass_log.ended(report.state, new=sum(f.new_messages for f in report.folders), folders=len(folders),
                   failed_folders=sum(1 for f in report.folders if f.error is not None))


async def _finish_pass(
    account: MailAccount, services: SyncServices, report: AccountSyncReport, folders: list[Folder]
) -> None:
    await check_fence(services)
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
    publish(services, account, "SYNC_STATE")
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
            publish(services, account, "SYNC_STATE")
        publish(services, account, "MESSAGES_REMOVED")
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
        await initial_sync(client, folder, target, account, services, report, condstore)
    else:
        await incremental_sync(client, folder, target, snapshot, account, services, report, condstore)
    folder.uidnext = snapshot.uidnext
    if snapshot.highestmodseq is not None:
        folder.highestmodseq = snapshot.highestmodseq
