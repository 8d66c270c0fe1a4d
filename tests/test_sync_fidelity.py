"""Through a real Dovecot: threads whole whatever order the sync brings their messages in,
dates from INTERNALDATE when the Date header fails, every author and the Sender kept."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from salesinbox.core.crm.records import RecordInput, create_record
from salesinbox.core.db.models import AddressRole, DateSource, Message, MessageAddress, RecordKind, User
from salesinbox.core.sharing import threads
from salesinbox.core.sync import folder_sync
from salesinbox.core.sync.engine import SyncServices, sync_account

from .test_sync import connect

if TYPE_CHECKING:
    from .servers.fixtures import MailAccount as TestMailbox

pytestmark = pytest.mark.dovecot

ARRIVED = datetime(2024, 3, 5, 8, 30, tzinfo=UTC)


def _raw(box: TestMailbox, *headers: str, sender: str = "Jane Doe <jane@globex.com>", subject: str = "Deal") -> bytes:
    return ("\r\n".join([f"From: {sender}", f"To: {box.address}", f"Subject: {subject}", *headers])
            + "\r\n\r\nHello\r\n").encode()


async def test_a_thread_synced_replies_first_and_across_folders_is_whole(
    rep: User, mail_account: TestMailbox, services: SyncServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = mail_account
    monkeypatch.setattr(folder_sync, "BATCH_SIZE", 1)  # one message per batch, newest first
    def date(minute: int) -> str:
        return f"Date: Tue, 5 Mar 2024 09:{minute:02}:00 +0000"

    box.dovecot.append_many(box.user, "INBOX", [
        _raw(box, date(0), "Message-ID: <a@deal.example>"),
        # Replies to the rep's answer B, which is in Sent: until B is stored, C and D have no known parent.
        _raw(box, date(20), "Message-ID: <c@deal.example>", "In-Reply-To: <b@deal.example>",
             "References: <b@deal.example>", subject="Re: Deal"),
        # Its client kept only an id this mailbox never had, then its parent.
        _raw(box, date(30), "Message-ID: <d@deal.example>", "References: <lost@elsewhere.example> <c@deal.example>",
             subject="Re: Deal"),
        _raw(box, date(40), "Message-ID: <e@other.example>", subject="Another matter"),
    ])
    box.dovecot.append(box.user, "Sent", (
        f"From: {box.address}\r\nTo: Jane Doe <jane@globex.com>\r\nSubject: Re: Deal\r\n{date(10)}\r\n"
        "Message-ID: <b@deal.example>\r\nIn-Reply-To: <a@deal.example>\r\nReferences: <a@deal.example>\r\n\r\nYes\r\n"
    ).encode())
    jane = await create_record(rep, RecordKind.CONTACT, RecordInput(last_name="Doe", primary_email="jane@globex.com"))
    account = await connect(rep, box, services)
    await sync_account(account.id, services)

    keys = dict(await Message.filter(account_id=account.id).values_list("message_id", "thread_key"))
    assert len(keys) == 5
    assert len({keys[f"<{x}@deal.example>"] for x in "abcd"}) == 1
    assert keys["<e@other.example>"] != keys["<a@deal.example>"]
    page = await threads.thread_page(rep, jane.id)
    assert sorted((t.subject, t.ref.message_count) for t in page.items) == [("Another matter", 1), ("Deal", 4)]


async def test_dates_authors_and_sender_as_dovecot_delivers_them(
    rep: User, mail_account: TestMailbox, services: SyncServices
) -> None:
    box = mail_account
    no_date = box.dovecot.append(box.user, "INBOX", _raw(box, "Message-ID: <n@x.example>"), date=ARRIVED)
    bad_date = box.dovecot.append(box.user, "INBOX", _raw(box, "Date: 31 Foo 2024 99:99"), date=ARRIVED)
    authors = box.dovecot.append(box.user, "INBOX", _raw(
        box, "Date: Tue, 5 Mar 2024 09:00:00 +0000", "Sender: Assistant <assistant@globex.com>",
        sender="Jane Doe <jane@globex.com>, Rick Roe <rick@initech.example>"))
    rick = await create_record(rep, RecordKind.CONTACT,
                               RecordInput(last_name="Roe", primary_email="rick@initech.example"))
    account = await connect(rep, box, services)
    await sync_account(account.id, services)

    rows = {m.uid: m for m in await Message.filter(account_id=account.id)}
    for uid in (no_date, bad_date):
        assert (rows[uid].date, rows[uid].date_source) == (ARRIVED, DateSource.INTERNALDATE)
        assert "no readable Date header: the date is the server's INTERNALDATE" in rows[uid].parse_warnings
    assert rows[authors].date_source == DateSource.HEADER
    addresses = await MessageAddress.filter(message_id=rows[authors].id).order_by("id").values_list(
        "role", "address", "is_counterparty")
    assert addresses == [(AddressRole.FROM, "jane@globex.com", True), (AddressRole.FROM, "rick@initech.example", True),
                         (AddressRole.TO, box.address, False),
                         (AddressRole.SENDER, "assistant@globex.com", False)]
    linked = await threads.thread_page(rep, rick.id)
    assert [t.ref.message_count for t in linked.items] == [1]  # the second author's record has the message
