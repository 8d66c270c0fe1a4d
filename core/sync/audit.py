"""Completeness audit: does the store hold every message the server has? (and backfill)

The failure this guards against is the silent one: an account that says "synced" while
mail is missing. Per folder the audit compares the server's UIDs (within the account's
"last N days" limit) with the stored ones, and names what is missing by Message-ID,
subject and date. ``backfill`` fetches the missing messages through the normal store.
What it finds feeds back: a folder still missing mail is marked not done (and its account
not COMPLETE), so the next sync pass reconciles it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.parser import BytesHeaderParser

from imapclient import IMAPClient

from ..crm.linking import own_addresses
from ..db.models import Folder, MailAccount
from ..oauth.oauth_tokens import account_logins
from ..plugin_host.providers import FolderRole
from ..transport.imap import close_quietly, open_imap
from . import imap_fetch as fetch
from .engine import SyncServices
from .folder_sync import BATCH_SIZE, check_fence
from .store import FolderTarget, reopen_folder, store_batch, stored_uids

REPORTED_MISSING = 50


@dataclass(frozen=True)
class MissingMessage:
    uid: int
    message_id: str
    subject: str
    date: str


@dataclass
class FolderAudit:
    folder: str
    on_server: int
    stored: int
    missing_count: int
    extra_count: int  # stored but no longer on the server (expunged, not yet synced)
    missing: list[MissingMessage] = field(default_factory=list)
    backfilled: int = 0

    @property
    def coverage(self) -> float:
        """Share of the server's messages that are stored (1.0 when the folder is empty)."""
        return 1.0 if self.on_server == 0 else (self.on_server - self.missing_count) / self.on_server


def _describe(client: IMAPClient, uids: list[int]) -> list[MissingMessage]:
    if not uids:
        return []
    header_item = b"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID SUBJECT DATE)]"
    response = client.fetch(uids, [header_item])
    parser = BytesHeaderParser()
    described = []
    for uid in uids:
        raw = response.get(uid, {}).get(b"BODY[HEADER.FIELDS (MESSAGE-ID SUBJECT DATE)]", b"")
        headers = parser.parsebytes(raw)
        described.append(MissingMessage(
            uid=uid, message_id=str(headers.get("Message-ID", "")).strip(),
            subject=str(headers.get("Subject", "")).strip(), date=str(headers.get("Date", "")).strip(),
        ))
    return described


async def audit_account(account_id: int, services: SyncServices, *, backfill: bool = False) -> list[FolderAudit]:
    """Compare server and store for every folder of the account; with ``backfill``, fetch
    and store what is missing. Raises the connection error if the server is unreachable.
    An account signed in with OAuth logs in as the sync does: with a current access token
    from ``services.tokens`` (refreshed when expired)."""
    account = await MailAccount.get(id=account_id).select_related("user")
    login = (await account_logins(account, services.secrets, services.tokens)).imap
    since = None
    if account.sync_days_limit:
        since = (datetime.now(UTC) - timedelta(days=account.sync_days_limit)).date()
    client = await asyncio.to_thread(open_imap, login, services.policy)
    try:
        condstore = "CONDSTORE" in {c.upper() for c in account.capabilities}
        own = frozenset(await own_addresses(account.id))
        results = []
        for folder in await Folder.filter(account_id=account.id).order_by("id"):
            snapshot = await asyncio.to_thread(fetch.select_folder, client, folder.name)
            on_server = set(await asyncio.to_thread(fetch.list_uids, client, since))
            stored = await stored_uids(folder.id, snapshot.uidvalidity)
            missing = sorted(on_server - stored, reverse=True)
            audit = FolderAudit(
                folder=folder.name, on_server=len(on_server), stored=len(stored & on_server),
                missing_count=len(missing), extra_count=len(stored - on_server),
                missing=await asyncio.to_thread(_describe, client, missing[:REPORTED_MISSING]),
            )
            if backfill and missing:
                target = FolderTarget(
                    account_id=account.id, organisation_id=account.user.organisation_id,
                    folder_id=folder.id, uidvalidity=snapshot.uidvalidity,
                    folder_is_sent=folder.role == FolderRole.SENT, own_addresses=own,
                )
                for start in range(0, len(missing), BATCH_SIZE):
                    batch = missing[start : start + BATCH_SIZE]
                    fetched = await asyncio.to_thread(fetch.fetch_messages, client, batch, condstore=condstore)
                    await check_fence(services)
                    audit.backfilled += len((await store_batch(target, fetched)).inserted_ids)
            if audit.missing_count > audit.backfilled and folder.uidvalidity == snapshot.uidvalidity:
                await reopen_folder(folder.id)
            results.append(audit)
        return results
    finally:
        await asyncio.to_thread(close_quietly, client)
