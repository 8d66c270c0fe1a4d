"""The sync engine against a real Dovecot: complete, exactly once, resumable, kept current."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from salesinbox.core.credentials import Secret
from salesinbox.core.crm.records import RecordInput, create_record
from salesinbox.core.db.models import (
    Direction,
    Folder,
    MailAccount,
    Message,
    MessageLink,
    RecordKind,
    SyncState,
    User,
)
from salesinbox.core.db.orm_values import column_values
from salesinbox.core.mail_accounts.accounts import ConnectAccountInput, ServerInput, connect_account
from salesinbox.core.plugin_host.providers import Security
from salesinbox.core.sync import engine as sync_module
from salesinbox.core.sync import folder_sync
from salesinbox.core.sync.engine import AccountSyncReport, SyncServices, sync_account

from .servers.messages import build_message, generate_messages

if TYPE_CHECKING:
    from .servers.fixtures import MailAccount as TestMailbox
    from .servers.proxy import CuttingProxy

pytestmark = pytest.mark.dovecot


async def connect(rep: User, box: TestMailbox, services: SyncServices, *, imap_port: int | None = None) -> MailAccount:
    data = ConnectAccountInput(
        provider="custom_imap", email=box.address, secret=Secret(box.password),
        incoming=ServerInput("localhost", imap_port or box.dovecot.port, Security.STARTTLS),
        outgoing=ServerInput("localhost", box.smtp.ssl_port, Security.SSL),
    )
    return await connect_account(rep, data, registry=services.registry, secrets=services.secrets,
                                 policy=services.policy)


def server_uids(box: TestMailbox, folder: str) -> set[int]:
    with box.dovecot.imap_client(box.user) as client:
        client.select_folder(folder, readonly=True)
        return set(client.search(["ALL"]))


async def stored(account: MailAccount, folder: str) -> list[int]:
    return sorted(await column_values(Message.filter(account_id=account.id, folder__name=folder), "uid"))


async def test_initial_sync_stores_every_message_exactly_once(rep: User, mail_account: TestMailbox,
                                                              services: SyncServices) -> None:
    box = mail_account
    box.dovecot.append_many(box.user, "INBOX", generate_messages(40, seed=1, rep=("Rex", box.address)))
    box.dovecot.append_many(box.user, "Sent", generate_messages(7, seed=2, rep=("Rex", box.address)))
    account = await connect(rep, box, services)

    report = await sync_account(account.id, services)

    assert report.state == SyncState.COMPLETE and report.initial_sync_completed
    assert await stored(account, "INBOX") == sorted(server_uids(box, "INBOX"))
    assert await stored(account, "Sent") == sorted(server_uids(box, "Sent"))
    assert await Message.filter(account_id=account.id).count() == 47
    sent = await Message.filter(account_id=account.id, folder__name="Sent")
    assert {m.direction for m in sent} == {Direction.SENT}
    folder = await Folder.get(account_id=account.id, name="INBOX")
    assert (folder.messages_total, folder.messages_synced, folder.initial_sync_done) == (40, 40, True)
    account = await MailAccount.get(id=account.id)
    assert account.sync_state == SyncState.COMPLETE and account.initial_sync_completed_at is not None


async def test_confirmation_email_after_initial_sync(
    rep: User, mail_account: TestMailbox, services: SyncServices
) -> None:
    from salesinbox.core.sending.mailer import send_sync_confirmation

    box = mail_account
    box.dovecot.append(box.user, "INBOX", build_message(from_="jane@globex.example", to=box.address))
    await create_record(rep, RecordKind.CONTACT, RecordInput(last_name="Doe", primary_email="jane@globex.example"))
    confirmed: list[AccountSyncReport] = []

    async def confirm(account: MailAccount, report: AccountSyncReport) -> None:
        confirmed.append(report)
        await send_sync_confirmation(account, secrets=services.secrets, policy=services.policy)

    services = replace(services, on_initial_sync_complete=confirm)
    account = await connect(rep, box, services)
    await sync_account(account.id, services)
    await sync_account(account.id, services)  # a later pass sends nothing more
    assert len(confirmed) == 1
    (received,) = box.smtp.wait_for_messages(1)
    assert list(received.rcpt_tos) == [box.address]
    body = received.data.decode()
    assert "INBOX: 1 messages, 1 linked to leads or contacts" in body
    assert "Subject: SalesInbox: your mailbox is synchronised" in body


async def test_tricky_messages_are_stored_with_what_could_be_read(rep: User, mail_account: TestMailbox,
                                                                  services: SyncServices) -> None:
    box = mail_account
    duplicate_id = "<same@id.example>"
    tricky = [
        build_message(subject="Café Ünïcode – offre spéciale", from_=("Zoë Ärger", "zoe@kunde.example")),
        build_message(text="plain part", html="<p>html <b>part</b></p>", subject="alternative"),
        build_message(subject="no id", headers=[], message_id=None),
        build_message(subject="dup 1", message_id=duplicate_id),
        build_message(subject="dup 2", message_id=duplicate_id),
        b"From: a@b.example\r\nTo: x@y.example\r\nSubject: bad charset\r\n"
        b"Content-Type: text/plain; charset=x-bogus\r\n\r\nhello \xe9\xe8\r\n",
        b"Subject: missing everything\r\n\r\nbody only\r\n",
    ]
    uids = box.dovecot.append_many(box.user, "INBOX", tricky)
    account = await connect(rep, box, services)
    await sync_account(account.id, services)
    rows = {m.uid: m for m in await Message.filter(account_id=account.id, folder__name="INBOX")}
    assert sorted(rows) == sorted(uids)
    assert rows[uids[0]].subject == "Café Ünïcode – offre spéciale" and rows[uids[0]].from_name == "Zoë Ärger"
    assert rows[uids[1]].snippet.startswith("plain part")
    assert [rows[uids[3]].message_id, rows[uids[4]].message_id] == [duplicate_id, duplicate_id]
    assert rows[uids[5]].parse_warnings and "hello" in rows[uids[5]].snippet
    assert rows[uids[6]].subject == "missing everything" and rows[uids[6]].from_address == ""


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(folder_sync, "BATCH_SIZE", 5)


async def test_cut_connections_resume_without_loss_or_duplicates(rep: User, mail_account: TestMailbox,
                                                                 services: SyncServices, proxy: CuttingProxy,
                                                                 small_batches: None) -> None:
    box = mail_account
    body = "Lorem ipsum dolor sit amet. " * 70  # ~2 KB: every batch of 5 fits before a cut
    messages = [build_message(to=box.address, subject=f"message {i}", text=body) for i in range(60)]
    box.dovecot.append_many(box.user, "INBOX", messages)
    account = await connect(rep, box, services, imap_port=proxy.port)
    proxy.cut_after_bytes = 30_000  # about three batches per connection, then the line drops
    failures = 0
    for _attempt in range(40):
        try:
            report = await sync_account(account.id, services)
        except sync_module.CONNECTION_ERRORS + (Exception,):  # any failure: try again
            failures += 1
            done = await Message.filter(account_id=account.id).count()
            assert done == len(set(await stored(account, "INBOX")))  # never a duplicate
            continue
        if report.state == SyncState.COMPLETE:
            break
    assert failures >= 2, "the proxy should have cut the sync several times"
    assert await stored(account, "INBOX") == sorted(server_uids(box, "INBOX"))


async def test_cancelled_task_resumes(rep: User, mail_account: TestMailbox, services: SyncServices,
                                      small_batches: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    box = mail_account
    box.dovecot.append_many(box.user, "INBOX", generate_messages(23, seed=4, rep=("Rex", box.address)))
    account = await connect(rep, box, services)
    real_store = folder_sync.store_batch  # type: ignore[attr-defined]  # patched where the sync uses it
    calls = 0

    async def store_then_cancel(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        result = await real_store(*args, **kwargs)  # type: ignore[arg-type]
        if calls == 2:
            raise asyncio.CancelledError  # as if the server shut down after the second batch
        return result

    monkeypatch.setattr(folder_sync, "store_batch", store_then_cancel)
    with pytest.raises(asyncio.CancelledError):
        await sync_account(account.id, services)
    assert await Message.filter(account_id=account.id).count() == 10
    monkeypatch.setattr(folder_sync, "store_batch", real_store)
    await sync_account(account.id, services)
    assert await stored(account, "INBOX") == sorted(server_uids(box, "INBOX"))


async def test_incremental_changes_are_followed(rep: User, mail_account: TestMailbox, services: SyncServices) -> None:
    box = mail_account
    uids = box.dovecot.append_many(box.user, "INBOX", generate_messages(5, seed=5, rep=("Rex", box.address)))
    account = await connect(rep, box, services)
    await sync_account(account.id, services)
    # New mail, a flag set and one expunged by another client.
    new_uid = box.dovecot.append(box.user, "INBOX", build_message(to=box.address, subject="fresh"))
    with box.dovecot.imap_client(box.user) as other:
        other.select_folder("INBOX")
        other.add_flags([uids[0]], [b"\\Seen", b"\\Flagged"])
        other.delete_messages([uids[1]])
        other.expunge()
    await sync_account(account.id, services)
    rows = {m.uid: m for m in await Message.filter(account_id=account.id, folder__name="INBOX")}
    assert set(rows) == (set(uids) - {uids[1]}) | {new_uid}
    assert rows[uids[0]].seen and rows[uids[0]].flagged and not rows[uids[2]].seen
    assert rows[new_uid].subject == "fresh"


async def test_unchanged_mailbox_is_confirmed_without_fetching(
    rep: User, mail_account: TestMailbox, services: SyncServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = mail_account
    box.dovecot.append_many(box.user, "INBOX", generate_messages(5, seed=6, rep=("Rex", box.address)))
    account = await connect(rep, box, services)
    await sync_account(account.id, services)
    touched: list[str] = []
    for name in ("list_uids", "uids_from", "fetch_messages", "fetch_flags", "changed_since"):
        real = getattr(sync_module.fetch, name)  # type: ignore[attr-defined]  # imap_fetch, as sync uses it

        def spy(*a: Any, _n: str = name, _r: Any = real, **k: Any) -> Any:
            touched.append(_n)
            return _r(*a, **k)
        monkeypatch.setattr(sync_module.fetch, name, spy)  # type: ignore[attr-defined]
    await sync_account(account.id, services)
    assert touched == []  # SELECT alone proved nothing changed (CONDSTORE)


async def test_uidvalidity_change_resyncs_without_duplicates(rep: User, mail_account: TestMailbox,
                                                             services: SyncServices) -> None:
    box = mail_account
    box.dovecot.append_many(box.user, "INBOX", generate_messages(4, seed=7, rep=("Rex", box.address)))
    account = await connect(rep, box, services)
    await sync_account(account.id, services)
    before = await Folder.get(account_id=account.id, name="INBOX")
    box.dovecot.doveadm("mailbox", "update", "-u", box.user.username, "--uid-validity",
                        str(before.uidvalidity + 1000), "INBOX")
    await sync_account(account.id, services)
    after = await Folder.get(account_id=account.id, name="INBOX")
    assert after.uidvalidity == before.uidvalidity + 1000
    rows = await Message.filter(account_id=account.id, folder__name="INBOX")
    assert len(rows) == 4 and {r.uidvalidity for r in rows} == {after.uidvalidity}


async def test_refused_login_needs_reauth_and_stops_trying(
    rep: User, mail_account: TestMailbox, services: SyncServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = mail_account
    account = await connect(rep, box, services)
    await sync_account(account.id, services)
    # The password changed elsewhere: the stored one is now refused.
    await MailAccount.filter(id=account.id).update(imap_secret=services.secrets.encrypt("old-password"))
    report = await sync_account(account.id, services)
    assert report.state == SyncState.NEEDS_REAUTH
    row = await MailAccount.get(id=account.id)
    assert row.sync_state == SyncState.NEEDS_REAUTH and "refused" in (row.sync_error or "")
    attempts: list[object] = []
    monkeypatch.setattr(sync_module, "open_imap", lambda *a, **k: attempts.append(a))
    await sync_account(account.id, services)
    assert attempts == []  # no login attempt with the refused password


async def test_record_created_after_sync_links_history(
    rep: User, mail_account: TestMailbox, services: SyncServices
) -> None:
    box = mail_account
    box.dovecot.append(box.user, "INBOX", build_message(from_="newlead@prospect.example", to=box.address))
    account = await connect(rep, box, services)
    await sync_account(account.id, services)
    lead = await create_record(
        rep, RecordKind.LEAD, RecordInput(last_name="New", primary_email="NewLead@prospect.example")
    )
    assert await MessageLink.filter(record_id=lead.id).count() == 1


async def test_days_limit_skips_old_mail(rep: User, mail_account: TestMailbox, services: SyncServices) -> None:
    box = mail_account
    old = datetime.now(UTC) - timedelta(days=400)
    box.dovecot.append(box.user, "INBOX", build_message(subject="old", date=old), date=old)
    box.dovecot.append(box.user, "INBOX", build_message(subject="recent"))
    account = await connect(rep, box, services)
    await MailAccount.filter(id=account.id).update(sync_days_limit=30)
    await sync_account(account.id, services)
    assert [m.subject for m in await Message.filter(account_id=account.id)] == ["recent"]
