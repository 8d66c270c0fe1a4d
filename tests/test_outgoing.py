"""Send and reply against the real SMTP server (aiosmtpd) and Dovecot (docs/outgoing-mail.md)."""

from __future__ import annotations

import email
from dataclasses import replace
from typing import TYPE_CHECKING, cast

import pytest

from salesinbox.core import hookimpl
from salesinbox.core.crm.records import RecordInput, create_record
from salesinbox.core.db.models import (
    Direction,
    MailAccount,
    Message,
    MessageLink,
    RecordKind,
    SharingPermission,
    User,
)
from salesinbox.core.errors import ErrorCode, SalesInboxError
from salesinbox.core.plugin_host.plugins import get_plugin_manager
from salesinbox.core.plugin_host.provider_registry import ProviderRegistry
from salesinbox.core.sending.mailer import OutgoingAttachment
from salesinbox.core.sending.outgoing import Draft, MailServices, reply, reply_subject, send_new
from salesinbox.core.sync.engine import SyncServices, sync_account

from .servers.messages import build_message
from .test_sync import connect

if TYPE_CHECKING:
    from .servers.fixtures import MailAccount as TestMailbox

pytestmark = pytest.mark.dovecot


@pytest.fixture
def mail(services: SyncServices) -> MailServices:
    return MailServices(secrets=services.secrets, registry=services.registry, policy=services.policy)


def server_flags(box: TestMailbox, folder: str, uid: int) -> set[bytes]:
    with box.dovecot.imap_client(box.user) as client:
        client.select_folder(folder, readonly=True)
        return {bytes(f) for data in client.fetch([uid], [b"FLAGS"]).values() for f in data[b"FLAGS"]}


def sent_folder_copies(box: TestMailbox) -> list[email.message.Message]:
    with box.dovecot.imap_client(box.user) as client:
        client.select_folder("Sent", readonly=True)
        uids = client.search(["ALL"])
        fetched = client.fetch(uids, [b"BODY.PEEK[]", b"FLAGS"]) if uids else {}
    copies = []
    for data in fetched.values():
        assert b"\\Seen" in data[b"FLAGS"]
        copies.append(email.message_from_bytes(data[b"BODY[]"]))
    return copies


async def test_send_new_message(rep: User, mail_account: TestMailbox, mail: MailServices,
                                services: SyncServices) -> None:
    box = mail_account
    account = await connect(rep, box, services)
    await sync_account(account.id, services)
    contact = await create_record(
        rep, RecordKind.CONTACT, RecordInput(last_name="Doe", primary_email="jane@globex.example")
    )
    draft = Draft(to=("Jane Doe <Jane@Globex.example>",), bcc=("boss@acme.test",), subject="Proposal",
                  text="Hello Jane", attachments=(OutgoingAttachment("quote.pdf", "application/pdf", b"%PDF-1.4 x"),))
    copy = await send_new(rep, draft, mail)

    (received,) = box.smtp.wait_for_messages(1)
    assert received.mail_from == box.address
    assert sorted(received.rcpt_tos) == ["boss@acme.test", "jane@globex.example"]
    wire = email.message_from_bytes(received.data)
    assert wire["Subject"] == "Proposal" and wire["To"] == "jane@globex.example" and wire["Bcc"] is None
    assert box.address in wire["From"]
    # The Sent copy: on the server once (with Bcc, \Seen), in the store once, linked at once.
    (server_copy,) = sent_folder_copies(box)
    assert server_copy["Message-ID"] == wire["Message-ID"] and server_copy["Bcc"] == "boss@acme.test"
    assert copy.message.direction == Direction.SENT and copy.warning is None
    assert await MessageLink.filter(message_id=copy.message.id, record_id=contact.id).exists()
    await sync_account(account.id, services)
    assert await Message.filter(account_id=account.id, message_id=wire["Message-ID"]).count() == 1


async def test_reply_is_threaded_and_quoted(rep: User, mail_account: TestMailbox, mail: MailServices,
                                            services: SyncServices) -> None:
    box = mail_account
    box.dovecot.append(box.user, "INBOX", build_message(
        from_=("Jane Doe", "jane@globex.example"), to=[box.address, "colleague@globex.example"],
        cc=["cc@globex.example", box.address.upper()], subject="Re: RE: Pricing", message_id="<orig@globex.example>",
        references=["<root@globex.example>"], in_reply_to="<root@globex.example>", text="What is the price?"))
    account = await connect(rep, box, services)
    await sync_account(account.id, services)
    original = await Message.get(account_id=account.id, message_id="<orig@globex.example>")
    assert not original.answered and b"\\Answered" not in server_flags(box, "INBOX", original.uid)

    await reply(rep, original.id, Draft(text="It is 10 EUR."), mail, reply_all=True)
    # \Answered on the original, on the server (other mail clients show it) and in the store
    assert b"\\Answered" in server_flags(box, "INBOX", original.uid)
    assert (await Message.get(id=original.id)).answered
    (received,) = box.smtp.wait_for_messages(1)
    wire = email.message_from_bytes(received.data)
    assert wire["Subject"] == "Re: Pricing"
    assert wire["In-Reply-To"] == "<orig@globex.example>"
    assert wire["References"].split() == ["<root@globex.example>", "<orig@globex.example>"]
    assert wire["To"] == "jane@globex.example"
    assert wire["Cc"] == "colleague@globex.example, cc@globex.example"  # my own address dropped
    body = cast(bytes, wire.get_payload(decode=True)).decode()
    assert body.startswith("It is 10 EUR.") and "> What is the price?" in body and "wrote:" in body


async def test_a_reply_goes_to_reply_to(rep: User, mail_account: TestMailbox, mail: MailServices,
                                        services: SyncServices) -> None:
    """RFC 5322 §3.6.2: replies go to Reply-To when there is one, not to From."""
    box = mail_account
    box.dovecot.append(box.user, "INBOX", build_message(
        from_=("Web Form", "noreply@forms.example"), to=[box.address], subject="New lead",
        message_id="<form@forms.example>", text="Call me", reply_to=("Jane", "jane@globex.example")))
    account = await connect(rep, box, services)
    await sync_account(account.id, services)
    original = await Message.get(account_id=account.id, message_id="<form@forms.example>")
    await reply(rep, original.id, Draft(text="Calling you now."), mail)
    (received,) = box.smtp.wait_for_messages(1)
    assert email.message_from_bytes(received.data)["To"] == "jane@globex.example"


def test_reply_subject_does_not_pile_up() -> None:
    assert reply_subject("Re: Re: AW: Offer") == "Re: Offer"
    assert reply_subject("Offer") == "Re: Offer"
    assert reply_subject("RE[2]: sv: Offer") == "Re: Offer"


async def test_reply_to_colleagues_shared_mail(rep: User, other_rep: User, mail_account: TestMailbox,
                                               mail: MailServices, services: SyncServices,
                                               smtp_server, dovecot) -> None:
    box = mail_account
    box.dovecot.append(box.user, "INBOX", build_message(from_="jane@globex.example", to=box.address,
                                                        subject="Shared", message_id="<shared@globex.example>"))
    account = await connect(rep, box, services)
    await sync_account(account.id, services)
    await create_record(rep, RecordKind.CONTACT, RecordInput(last_name="Doe", primary_email="jane@globex.example"))
    shared = await Message.get(account_id=account.id, message_id="<shared@globex.example>")
    # The colleague has an account of their own.
    colleague_box = dovecot.add_user(f"other-{box.user.username}")
    smtp_server.add_user(colleague_box.username, colleague_box.password)
    from .servers.fixtures import MailAccount as Box

    colleague_account = await connect(other_rep, Box(colleague_box, dovecot, smtp_server), services)
    with pytest.raises(SalesInboxError) as caught:  # PRIVATE: as if it did not exist
        await reply(other_rep, shared.id, Draft(text="Hi"), mail)
    assert caught.value.code == ErrorCode.NOT_FOUND
    await MailAccount.filter(id=account.id).update(sharing=SharingPermission.PUBLIC)
    copy = await reply(other_rep, shared.id, Draft(text="Hi Jane, I am Rex's colleague"), mail)
    assert copy.message.account_id == colleague_account.id
    (received,) = smtp_server.wait_for_messages(1)
    assert received.mail_from == colleague_box.username and list(received.rcpt_tos) == ["jane@globex.example"]
    # the owner's mailbox is the owner's: a colleague's reply does not mark their mail answered
    assert b"\\Answered" not in server_flags(box, "INBOX", shared.uid)
    assert not (await Message.get(id=shared.id)).answered


async def test_errors_are_typed_and_nothing_is_stored(rep: User, other_rep: User, mail_account: TestMailbox,
                                                      mail: MailServices, services: SyncServices) -> None:
    box = mail_account
    with pytest.raises(SalesInboxError) as caught:
        await send_new(rep, Draft(to=("x@y.example",), text="hi"), mail)
    assert caught.value.code == ErrorCode.NO_MAIL_ACCOUNT
    account = await connect(rep, box, services)
    cases = [
        (Draft(to=("x@y.example",), from_address="ceo@acme.test"), ErrorCode.INVALID_INPUT),
        (Draft(to=("not an address",)), ErrorCode.INVALID_INPUT),
        (Draft(), ErrorCode.INVALID_INPUT),
        (
            Draft(
                to=("x@y.example",),
                attachments=(OutgoingAttachment("big.bin", "application/octet-stream", b"0" * 2048),),
            ),
            ErrorCode.MESSAGE_TOO_LARGE,
        ),
    ]
    small = replace(mail, max_message_bytes=1024)
    for draft, code in cases:
        with pytest.raises(SalesInboxError) as caught:
            await send_new(rep, draft, small)
        assert caught.value.code == code, draft
    box.smtp.refuse("gone@customer.example")
    with pytest.raises(SalesInboxError) as caught:
        await send_new(rep, Draft(to=("ok@customer.example", "gone@customer.example"), text="hi"), mail)
    assert caught.value.code == ErrorCode.RECIPIENT_REFUSED and "gone@customer.example" in caught.value.message
    await MailAccount.filter(id=account.id).update(smtp_secret=mail.secrets.encrypt("wrong-smtp-password"))
    with pytest.raises(SalesInboxError) as caught:
        await send_new(rep, Draft(to=("ok@customer.example",), text="hi"), mail)
    assert caught.value.code == ErrorCode.AUTHENTICATION_FAILED
    assert "wrong-smtp-password" not in caught.value.message
    assert box.smtp.messages == [] and sent_folder_copies(box) == []
    assert await Message.filter(account_id=account.id).count() == 0


class ProviderFilesSentMail:
    """Test plugin: the provider keeps its own Sent copy (as Gmail does)."""

    @hookimpl(tryfirst=True)
    def salesinbox_stores_sent_mail(self, provider: str) -> bool | None:
        return True if provider == "custom_imap" else None


async def test_provider_filed_copy_replaces_the_placeholder(rep: User, mail_account: TestMailbox,
                                                            mail: MailServices, services: SyncServices) -> None:
    box = mail_account
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(ProviderFilesSentMail())
    gmail_like = replace(mail, registry=ProviderRegistry(pm))
    account = await connect(rep, box, services)
    await sync_account(account.id, services)
    copy = await send_new(rep, Draft(to=("jane@globex.example",), text="hello"), gmail_like)
    assert sent_folder_copies(box) == []  # we did not append: the provider does
    assert copy.message.uid < 0  # shown at once, as a placeholder
    (received,) = box.smtp.wait_for_messages(1)
    box.dovecot.append(box.user, "Sent", received.data, flags=(b"\\Seen",))  # what the provider does
    await sync_account(account.id, services)
    rows = await Message.filter(account_id=account.id, message_id=copy.message.message_id)
    assert len(rows) == 1 and rows[0].uid > 0


async def test_placeholder_survives_a_renumbered_sent_folder(rep: User, mail_account: TestMailbox,
                                                             mail: MailServices, services: SyncServices) -> None:
    from salesinbox.core.db.models import Folder

    box = mail_account
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(ProviderFilesSentMail())
    account = await connect(rep, box, services)
    await sync_account(account.id, services)
    copy = await send_new(rep, Draft(to=("jane@globex.example",), text="hello"),
                          replace(mail, registry=ProviderRegistry(pm)))
    sent = await Folder.get(account_id=account.id, name="Sent")
    box.dovecot.doveadm("mailbox", "update", "-u", box.user.username, "--uid-validity",
                        str(sent.uidvalidity + 7), "Sent")
    await sync_account(account.id, services)
    assert await Message.exists(id=copy.message.id)  # still shown until the server's copy arrives


async def test_a_reply_is_sent_even_when_answered_cannot_be_set(
    rep: User, mail_account: TestMailbox, mail: MailServices, services: SyncServices,
    caplog: pytest.LogCaptureFixture,
) -> None:
    box = mail_account
    box.dovecot.append(box.user, "INBOX", build_message(from_="jane@globex.example", to=box.address,
                                                        subject="Renumbered", message_id="<ren@globex.example>"))
    account = await connect(rep, box, services)
    await sync_account(account.id, services)
    original = await Message.get(account_id=account.id, message_id="<ren@globex.example>")
    # The store still has the folder's old numbering: the server must not be asked to flag
    # whatever message has this UID now.
    await Message.filter(id=original.id).update(uidvalidity=original.uidvalidity + 1)

    copy = await reply(rep, original.id, Draft(text="Sure."), mail)
    (received,) = box.smtp.wait_for_messages(1)
    assert email.message_from_bytes(received.data)["In-Reply-To"] == "<ren@globex.example>"
    assert copy.warning is None and copy.message.direction == Direction.SENT
    assert not (await Message.get(id=original.id)).answered
    assert b"\\Answered" not in server_flags(box, "INBOX", original.uid)
    assert f"\\Answered not set on message {original.id}" in caplog.text and "renumbered" in caplog.text
    # Set by another client meanwhile, the flag comes in with the next sync's reconciliation.
    await Message.filter(id=original.id).update(uidvalidity=original.uidvalidity)
    with box.dovecot.imap_client(box.user) as client:
        client.select_folder("INBOX")
        client.add_flags([original.uid], [b"\\Answered"])
    await sync_account(account.id, services)
    assert (await Message.get(id=original.id)).answered
