"""Message ↔ record links: counterparties only, both emails, retroactive relinking."""

from __future__ import annotations

from datetime import UTC, datetime

from salesinbox.core.credentials import SecretBox, generate_key
from salesinbox.core.crm.linking import records_matching, relink_record
from salesinbox.core.crm.records import RecordInput, create_record, update_record
from salesinbox.core.db.models import (
    AddressRole,
    Direction,
    Folder,
    MailAccount,
    Message,
    MessageAddress,
    MessageLink,
    RecordKind,
    User,
)
from salesinbox.core.db.orm_values import column_values
from salesinbox.core.plugin_host.providers import AuthKind, Security

_box = SecretBox([generate_key().encode()])


async def _account(owner: User) -> MailAccount:
    secret = _box.encrypt("pw")
    return await MailAccount.create(
        user=owner, provider="custom_imap", display_name=owner.name, email=owner.email,
        imap_host="imap.acme.test", imap_port=993, imap_security=Security.SSL, imap_username=owner.email,
        imap_auth_kind=AuthKind.PASSWORD, imap_secret=secret, smtp_host="smtp.acme.test", smtp_port=465,
        smtp_security=Security.SSL, smtp_username=owner.email, smtp_auth_kind=AuthKind.PASSWORD, smtp_secret=secret,
    )


async def _message(account: MailAccount, uid: int, addresses: list[tuple[AddressRole, str, bool]]) -> Message:
    folder, _ = await Folder.get_or_create(account=account, name="INBOX")
    message = await Message.create(account=account, folder=folder, uidvalidity=1, uid=uid,
                                   direction=Direction.RECEIVED, date=datetime.now(UTC))
    for role, address, counterparty in addresses:
        await MessageAddress.create(message=message, role=role, address=address,
                                    domain=address.rpartition("@")[2], is_counterparty=counterparty)
    return message


async def _linked(record_id: int) -> set[int]:
    return set(await column_values(MessageLink.filter(record_id=record_id), "message_id"))


async def test_record_created_after_mail_gets_its_history(rep: User) -> None:
    account = await _account(rep)
    from_jane = await _message(account, 1, [(AddressRole.FROM, "jane@globex.com", True),
                                            (AddressRole.TO, "rep@acme.test", False)])
    to_jane_alt = await _message(account, 2, [(AddressRole.FROM, "rep@acme.test", False),
                                              (AddressRole.CC, "jane.doe@gmail.com", True)])
    unrelated = await _message(account, 3, [(AddressRole.FROM, "bob@other.com", True)])
    record = await create_record(rep, RecordKind.CONTACT, RecordInput(
        last_name="Doe", primary_email="Jane@Globex.com", secondary_email="jane.doe@gmail.com"))
    assert await _linked(record.id) == {from_jane.id, to_jane_alt.id}
    assert unrelated.id not in await _linked(record.id)


async def test_own_addresses_never_link(rep: User) -> None:
    account = await _account(rep)
    await _message(account, 1, [(AddressRole.FROM, "rep@acme.test", False)])
    record = await create_record(rep, RecordKind.LEAD, RecordInput(last_name="Self", primary_email="rep@acme.test"))
    assert await _linked(record.id) == set()


async def test_changing_emails_relinks(rep: User) -> None:
    account = await _account(rep)
    old = await _message(account, 1, [(AddressRole.FROM, "old@globex.com", True)])
    new = await _message(account, 2, [(AddressRole.FROM, "new@globex.com", True)])
    record = await create_record(rep, RecordKind.LEAD, RecordInput(last_name="X", primary_email="old@globex.com"))
    assert await _linked(record.id) == {old.id}
    await update_record(rep, record.id, RecordKind.LEAD, RecordInput(last_name="X", primary_email="new@globex.com"))
    assert await _linked(record.id) == {new.id}
    record.primary_email = None
    assert await relink_record(record) == 0 and await _linked(record.id) == set()


async def test_records_matching_by_either_address(rep: User) -> None:
    a = await create_record(rep, RecordKind.LEAD, RecordInput(last_name="A", primary_email="a@x.com"))
    b = await create_record(rep, RecordKind.CONTACT, RecordInput(last_name="B", primary_email="b@x.com",
                                                                 secondary_email="a2@x.com"))
    found = await records_matching(rep.organisation_id, ["a@x.com", "a2@x.com", "zzz@x.com"])
    assert [r.id for r in found] == [a.id, b.id]
    assert await records_matching(rep.organisation_id, []) == []


async def test_link_messages_is_idempotent(rep: User) -> None:
    from salesinbox.core.crm.linking import link_messages

    account = await _account(rep)
    record = await create_record(rep, RecordKind.LEAD, RecordInput(last_name="J", primary_email="jane@globex.com"))
    message = await _message(account, 1, [(AddressRole.FROM, "jane@globex.com", True)])
    assert await link_messages(rep.organisation_id, [message.id]) == 1
    assert await link_messages(rep.organisation_id, [message.id]) == 1
    assert await _linked(record.id) == {message.id}
    assert await link_messages(rep.organisation_id, []) == 0


async def test_new_from_address_stops_counting_as_counterparty(rep: User) -> None:
    from salesinbox.core.mail_accounts.from_addresses import add_from_address, remove_from_address

    account = await _account(rep)
    record = await create_record(
        rep, RecordKind.CONTACT, RecordInput(last_name="Alias", primary_email="sales@acme.test")
    )
    message = await _message(account, 1, [(AddressRole.FROM, "sales@acme.test", True)])
    await relink_record(record)
    assert await _linked(record.id) == {message.id}
    await add_from_address(rep, account.id, "Sales@acme.test", name="Sales team")
    assert not (await MessageAddress.get(message_id=message.id)).is_counterparty
    assert await _linked(record.id) == set()
    await remove_from_address(rep, account.id, "sales@acme.test")
    assert (await MessageAddress.get(message_id=message.id)).is_counterparty
    assert await _linked(record.id) == {message.id}


async def test_quoted_and_unquoted_local_parts_link_by_their_rfc_5321_meaning(rep: User) -> None:
    """docs/records-and-links.md#address-matching: the record is typed with quotes, the mail
    without (and the other way round); a domain literal matches itself."""
    account = await _account(rep)
    plain = await _message(account, 1, [(AddressRole.FROM, "john.doe@example.com", True)])
    spaced = await _message(account, 2, [(AddressRole.TO, '"sales team"@example.com', True)])
    literal = await _message(account, 3, [(AddressRole.CC, "ops@[192.0.2.10]", True)])
    john = await create_record(rep, RecordKind.CONTACT, RecordInput(
        last_name="Doe", primary_email='"John.Doe"@Example.com'))
    sales = await create_record(rep, RecordKind.LEAD, RecordInput(
        last_name="Sales", primary_email='"Sales Team"@example.com', secondary_email="ops@[192.0.2.10]"))
    assert (john.primary_email, sales.primary_email) == ("john.doe@example.com", '"sales team"@example.com')
    assert await _linked(john.id) == {plain.id}
    assert await _linked(sales.id) == {spaced.id, literal.id}
