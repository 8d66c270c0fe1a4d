"""What the store keeps of a message's date (with its source) and of its authors and Sender."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from salesinbox.core.crm.linking import refresh_counterparties
from salesinbox.core.crm.records import RecordInput, create_record
from salesinbox.core.db.models import (
    AddressRole,
    DateSource,
    Folder,
    FromAddress,
    Message,
    MessageAddress,
    MessageLink,
    RecordKind,
    User,
)
from salesinbox.core.db.orm_values import column_values
from salesinbox.core.parsing.message_parser import FetchedMessage, parse_message
from salesinbox.core.sync.store import FolderTarget, store_batch

from .conftest import GraphQLClient
from .test_policy import write_account

ARRIVED = datetime(2024, 3, 5, 8, 30, tzinfo=UTC)


async def _target(rep: User) -> FolderTarget:
    account = await write_account(rep, "PRIVATE", "rep@acme.test")
    folder = await Folder.create(account=account, name="INBOX", uidvalidity=1)
    return FolderTarget(account_id=account.id, organisation_id=rep.organisation_id, folder_id=folder.id,
                        uidvalidity=1, folder_is_sent=False, own_addresses=frozenset({"rep@acme.test"}))


def _raw(*headers: str) -> bytes:
    return ("\r\n".join(["From: jane@globex.com", "To: rep@acme.test", "Subject: s", *headers])
            + "\r\n\r\nbody\r\n").encode()


async def test_the_date_falls_back_to_internaldate_and_says_so(rep: User) -> None:
    target = await _target(rep)
    cases = {
        1: (_raw("Date: Tue, 5 Mar 2024 09:00:00 +0100"), ARRIVED),
        2: (_raw(), ARRIVED),  # no Date header
        3: (_raw("Date: the day after tomorrow"), ARRIVED),  # unreadable
        4: (_raw(), None),  # nor an INTERNALDATE (a message stored by the CRM itself)
    }
    before = datetime.now(UTC)
    await store_batch(target, [FetchedMessage(uid=uid, flags=frozenset(), parsed=parse_message(raw),
                                              internal_date=internal) for uid, (raw, internal) in cases.items()])
    rows = {m.uid: m for m in await Message.filter(folder_id=target.folder_id)}
    assert (rows[1].date, rows[1].date_source) == (datetime(2024, 3, 5, 8, 0, tzinfo=UTC), DateSource.HEADER)
    assert not any("Date" in w for w in rows[1].parse_warnings)
    for uid in (2, 3):
        assert (rows[uid].date, rows[uid].date_source) == (ARRIVED, DateSource.INTERNALDATE)
        assert "no readable Date header: the date is the server's INTERNALDATE" in rows[uid].parse_warnings
    assert any("invalid Date" in w for w in rows[3].parse_warnings)  # the parser's own word stays
    assert rows[4].date_source == DateSource.NONE and rows[4].date is not None
    assert before - timedelta(seconds=1) <= rows[4].date <= datetime.now(UTC) + timedelta(seconds=1)
    assert any("no INTERNALDATE" in w for w in rows[4].parse_warnings)


async def test_every_author_and_the_sender_are_kept_and_every_author_links(rep: User) -> None:
    target = await _target(rep)
    second_author = await create_record(rep, RecordKind.CONTACT, RecordInput(
        last_name="Roe", primary_email="rick@initech.example"))
    only_sender = await create_record(rep, RecordKind.CONTACT, RecordInput(
        last_name="Assistant", primary_email="assistant@globex.com"))
    raw = (b"From: Jane Doe <jane@globex.com>, Rick Roe <rick@initech.example>, rep@acme.test\r\n"
           b"Sender: Assistant <assistant@globex.com>\r\nTo: bob@customer.example\r\nSubject: joint offer\r\n"
           b"Date: Tue, 5 Mar 2024 09:00:00 +0100\r\n\r\nbody\r\n")
    result = await store_batch(target, [FetchedMessage(uid=1, flags=frozenset(), parsed=parse_message(raw))])
    (message_id,) = result.inserted_ids
    rows = await MessageAddress.filter(message_id=message_id).order_by("id").values_list(
        "role", "name", "address", "is_counterparty")
    assert rows == [
        (AddressRole.FROM, "Jane Doe", "jane@globex.com", True),
        (AddressRole.FROM, "Rick Roe", "rick@initech.example", True),
        (AddressRole.FROM, "", "rep@acme.test", False),  # an own address is never a counterparty
        (AddressRole.TO, "", "bob@customer.example", True),
        (AddressRole.SENDER, "Assistant", "assistant@globex.com", False),
    ]
    message = await Message.get(id=message_id)
    assert (message.from_name, message.from_address) == ("Jane Doe", "jane@globex.com")  # the first author
    linked = set(await column_values(MessageLink.filter(message_id=message_id), "record_id"))
    assert linked == {second_author.id}  # every author links; the Sender alone does not
    # Recomputing counterparties (the From addresses changed) keeps the Sender out of them.
    await FromAddress.create(account_id=target.account_id, address="rick@initech.example")
    await refresh_counterparties(target.account_id)
    assert dict(await MessageAddress.filter(message_id=message_id).values_list("address", "is_counterparty")) == {
        "jane@globex.com": True, "rick@initech.example": False, "rep@acme.test": False,
        "bob@customer.example": True, "assistant@globex.com": False}
    assert only_sender.id not in set(await column_values(MessageLink.filter(message_id=message_id), "record_id"))


async def test_the_api_says_where_each_date_comes_from(api: GraphQLClient, rep_token: str, rep: User) -> None:
    target = await _target(rep)
    result = await store_batch(target, [
        FetchedMessage(uid=1, flags=frozenset(), parsed=parse_message(_raw()), internal_date=ARRIVED),
        FetchedMessage(uid=2, flags=frozenset(), parsed=parse_message(_raw("Date: Tue, 5 Mar 2024 09:00:00 +0000"))),
        FetchedMessage(uid=3, flags=frozenset(), parsed=parse_message(_raw("Date: Tue, 5 Mar 2024 09:00:00 +0000"))),
    ])
    fallback, header, older = result.inserted_ids
    await Message.filter(id=older).update(date_source=None)  # as stored before migration 0011
    query = "query($id: ID!) { message(id: $id) { date dateSource parseWarnings } }"
    answers = [(await api.ok(query, {"id": str(i)}, token=rep_token))["message"] for i in (fallback, header, older)]
    assert answers[0]["dateSource"] == "INTERNALDATE" and answers[0]["date"].startswith("2024-03-05T08:30:00")
    assert "no readable Date header: the date is the server's INTERNALDATE" in answers[0]["parseWarnings"]
    assert [a["dateSource"] for a in answers[1:]] == ["HEADER", None]


async def test_reply_to_is_kept_shown_and_no_counterparty(api: GraphQLClient, rep_token: str, rep: User) -> None:
    target = await _target(rep)
    form = await create_record(rep, RecordKind.CONTACT,
                               RecordInput(last_name="Web", primary_email="leads@forms.example"))
    raw = (b"From: Jane Doe <jane@globex.com>\r\nSender: Bot <bot@globex.com>\r\n"
           b"Reply-To: Sales Desk <desk@globex.com>, leads@forms.example\r\nTo: rep@acme.test\r\n"
           b"Subject: form\r\nDate: Tue, 5 Mar 2024 09:00:00 +0100\r\n\r\nbody\r\n")
    result = await store_batch(target, [FetchedMessage(uid=1, flags=frozenset(), parsed=parse_message(raw))])
    (message_id,) = result.inserted_ids
    rows = await MessageAddress.filter(message_id=message_id, role=AddressRole.REPLY_TO).order_by("id").values_list(
        "name", "address", "is_counterparty")
    assert rows == [("Sales Desk", "desk@globex.com", False), ("", "leads@forms.example", False)]
    assert form.id not in set(await column_values(MessageLink.filter(message_id=message_id), "record_id"))
    await refresh_counterparties(target.account_id)  # a recount keeps Reply-To out of the counterparties
    assert not await MessageAddress.filter(message_id=message_id, role=AddressRole.REPLY_TO,
                                           is_counterparty=True).exists()
    query = """query($id: ID!) { message(id: $id) { sender { name address } replyTo { name address }
        counterparties { address } } }"""
    shown = (await api.ok(query, {"id": str(message_id)}, token=rep_token))["message"]
    assert shown["sender"] == {"name": "Bot", "address": "bot@globex.com"}
    assert shown["replyTo"] == [{"name": "Sales Desk", "address": "desk@globex.com"},
                                {"name": "", "address": "leads@forms.example"}]
    assert shown["counterparties"] == [{"address": "jane@globex.com"}]
    plain = await store_batch(target, [FetchedMessage(uid=2, flags=frozenset(), parsed=parse_message(_raw()))])
    (plain_id,) = plain.inserted_ids
    bare = (await api.ok(query, {"id": str(plain_id)}, token=rep_token))["message"]
    assert bare["sender"] is None and bare["replyTo"] == []
