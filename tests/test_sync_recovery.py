"""A sync killed at the worst moment loses nothing, and its counts never claim otherwise.

Each test kills a pass the way SIGKILL would: an exception no ``except Exception`` catches,
raised right after a batch was committed, so nothing the pass still meant to write is
written. Then a normal pass must bring the store back to exactly the server's UIDs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from salesinbox.core.db.models import Folder, MailAccount, Message, SyncState, User
from salesinbox.core.sync import engine as sync_module
from salesinbox.core.sync import folder_sync
from salesinbox.core.sync.audit import audit_account
from salesinbox.core.sync.engine import SyncServices, sync_account

from .faults import Killed, dying_after_batches
from .servers.messages import generate_messages
from .test_sync import connect, server_uids, stored

if TYPE_CHECKING:
    from .servers.fixtures import MailAccount as TestMailbox

pytestmark = pytest.mark.dovecot


async def assert_counts_are_the_stores(account: MailAccount) -> None:
    for folder in await Folder.filter(account_id=account.id):
        rows = await Message.filter(folder_id=folder.id, uidvalidity=folder.uidvalidity).count()
        assert folder.messages_synced == rows, folder.name


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(folder_sync, "BATCH_SIZE", 10)


async def test_uidvalidity_resync_killed_midway_resumes_in_full(
    rep: User, mail_account: TestMailbox, services: SyncServices,
    small_batches: None,
) -> None:
    box = mail_account
    box.dovecot.append_many(box.user, "INBOX", generate_messages(60, seed=11, rep=("Rex", box.address)))
    account = await connect(rep, box, services)
    await sync_account(account.id, services)
    before = await Folder.get(account_id=account.id, name="INBOX")
    box.dovecot.doveadm("mailbox", "update", "-u", box.user.username, "--uid-validity",
                        str(before.uidvalidity + 500), "INBOX")

    with dying_after_batches(2), pytest.raises(Killed):
        await sync_account(account.id, services)

    folder = await Folder.get(id=before.id)
    assert folder.uidvalidity == before.uidvalidity + 500
    assert not folder.initial_sync_done  # persisted with the new UIDVALIDITY, not only in memory
    await assert_counts_are_the_stores(account)
    assert folder.messages_synced == 20

    report = await sync_account(account.id, services)
    assert report.state == SyncState.COMPLETE
    assert await stored(account, "INBOX") == sorted(server_uids(box, "INBOX"))
    folder = await Folder.get(id=before.id)
    assert (folder.messages_synced, folder.messages_total, folder.initial_sync_done) == (60, 60, True)


async def test_new_mail_pass_killed_after_its_newest_batch_resumes_the_older_ones(
    rep: User, mail_account: TestMailbox, services: SyncServices,
    small_batches: None,
) -> None:
    """New mail is stored newest first: after a cut, the highest UID is stored and older new
    ones are not, so resuming "above the highest stored UID" would skip them for good."""
    box = mail_account
    box.dovecot.append_many(box.user, "INBOX", generate_messages(5, seed=12, rep=("Rex", box.address)))
    account = await connect(rep, box, services)
    await sync_account(account.id, services)
    box.dovecot.append_many(box.user, "INBOX", generate_messages(45, seed=13, rep=("Rex", box.address)))

    with dying_after_batches(1), pytest.raises(Killed):
        await sync_account(account.id, services)
    await assert_counts_are_the_stores(account)

    await sync_account(account.id, services)
    assert await stored(account, "INBOX") == sorted(server_uids(box, "INBOX"))
    folder = await Folder.get(account_id=account.id, name="INBOX")
    assert (folder.messages_synced, folder.messages_total) == (50, 50)


async def test_counts_come_from_the_store_not_from_the_server(
    rep: User, mail_account: TestMailbox, services: SyncServices,
) -> None:
    """Rows missing from the store (lost by any path) are not hidden by the folder's counts:
    a quiet server does not excuse them, the next pass fetches them."""
    box = mail_account
    box.dovecot.append_many(box.user, "INBOX", generate_messages(12, seed=14, rep=("Rex", box.address)))
    account = await connect(rep, box, services)
    await sync_account(account.id, services)
    folder = await Folder.get(account_id=account.id, name="INBOX")
    lost = sorted(server_uids(box, "INBOX"))[:4]
    # Lose rows the way a bug or a restored backup would, and recount like migration 0006.
    await Message.filter(folder_id=folder.id, uid__in=lost).delete()
    await Folder.filter(id=folder.id).update(messages_synced=8)

    await sync_account(account.id, services)

    assert await stored(account, "INBOX") == sorted(server_uids(box, "INBOX"))
    await assert_counts_are_the_stores(account)


async def test_the_audits_finding_reopens_the_folder_and_the_next_pass_backfills(
    rep: User, mail_account: TestMailbox, services: SyncServices,
) -> None:
    box = mail_account
    box.dovecot.append_many(box.user, "INBOX", generate_messages(9, seed=15, rep=("Rex", box.address)))
    account = await connect(rep, box, services)
    await sync_account(account.id, services)
    folder = await Folder.get(account_id=account.id, name="INBOX")
    # Rows gone behind the store's back: its count still says 9, only the audit can tell.
    await Message.filter(folder_id=folder.id, uid__in=sorted(server_uids(box, "INBOX"))[:3]).delete()

    (inbox, *_) = [a for a in await audit_account(account.id, services) if a.folder == "INBOX"]
    assert inbox.missing_count == 3
    folder = await Folder.get(id=folder.id)
    account = await MailAccount.get(id=account.id)
    assert not folder.initial_sync_done
    assert account.sync_state == SyncState.SYNCING  # not COMPLETE while mail is missing

    report = await sync_account(account.id, services)
    assert report.state == SyncState.COMPLETE
    assert await stored(account, "INBOX") == sorted(server_uids(box, "INBOX"))
    (inbox, *_) = [a for a in await audit_account(account.id, services) if a.folder == "INBOX"]
    assert inbox.missing_count == 0


async def test_uidvalidity_log_line_counts_the_messages_deleted(
    rep: User, mail_account: TestMailbox, services: SyncServices, caplog: pytest.LogCaptureFixture,
) -> None:
    box = mail_account
    box.dovecot.append_many(box.user, "INBOX", generate_messages(7, seed=16, rep=("Rex", box.address)))
    account = await connect(rep, box, services)
    await sync_account(account.id, services)
    before = await Folder.get(account_id=account.id, name="INBOX")
    box.dovecot.doveadm("mailbox", "update", "-u", box.user.username, "--uid-validity",
                        str(before.uidvalidity + 9), "INBOX")
    with caplog.at_level("INFO", logger="salesinbox.core.sync.engine"):
        await sync_account(account.id, services)
    (line,) = [r.getMessage() for r in caplog.records if "UIDVALIDITY changed" in r.getMessage()]
    assert ", 7 stored messages deleted" in line


async def test_a_sync_cancelled_while_logging_in_closes_its_connection_before_it_ends(
    rep: User, mail_account: TestMailbox, services: SyncServices, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stopping scheduler cancels syncs anywhere, a login included: the connection that
    login opens is closed before the cancelled sync returns, not left to a callback of an
    event loop that may be gone by then (it then leaked, unclosed, at interpreter exit)."""
    import asyncio
    import threading

    account = await connect(rep, mail_account, services)
    logging_in, opened = threading.Event(), []
    real_open = sync_module.open_imap  # type: ignore[attr-defined]  # patched where sync uses it

    def slow_open(*args, **kwargs):
        logging_in.set()
        client = real_open(*args, **kwargs)
        opened.append(client)
        return client

    monkeypatch.setattr(sync_module, "open_imap", slow_open)
    task = asyncio.ensure_future(sync_account(account.id, services))
    while not logging_in.is_set():
        await asyncio.sleep(0.001)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (client,) = opened
    assert client._imap.state == "LOGOUT"
