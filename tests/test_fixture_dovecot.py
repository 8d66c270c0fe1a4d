"""Proof that the private Dovecot fixture behaves like a real IMAP provider."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from tests.servers.dovecot import DovecotServer, MailUser
from tests.servers.messages import Attachment, build_message

if TYPE_CHECKING:
    from tests.servers.fixtures import MailAccount

pytestmark = pytest.mark.dovecot


def test_starttls_on_the_plain_port(dovecot: DovecotServer, mail_user: MailUser) -> None:
    client = dovecot.imap_client(mail_user, tls=False, starttls=False, login=False)
    try:
        assert b"STARTTLS" in client.capabilities()
        client.starttls(dovecot.ssl_context())
        assert isinstance(client.socket(), ssl.SSLSocket)
        client.login(mail_user.username, mail_user.password)
        assert client.select_folder("INBOX")[b"EXISTS"] == 0
    finally:
        client.logout()


def test_implicit_tls_login(dovecot: DovecotServer, mail_user: MailUser) -> None:
    with dovecot.imap_client(mail_user, tls=True) as client:
        assert isinstance(client.socket(), ssl.SSLSocket)
        assert client.socket().getpeername()[1] == dovecot.ssl_port


def test_plaintext_login_without_tls_is_allowed(dovecot: DovecotServer, mail_user: MailUser) -> None:
    with dovecot.imap_client(mail_user, tls=False, starttls=False) as client:
        assert not isinstance(client.socket(), ssl.SSLSocket)
        client.select_folder("INBOX")


def test_wrong_password_is_refused(dovecot: DovecotServer, mail_user: MailUser) -> None:
    wrong = MailUser(mail_user.username, mail_user.password + "x", mail_user.home)
    with pytest.raises(LoginError, match="AUTHENTICATIONFAILED"):
        dovecot.imap_client(wrong)


def test_append_then_fetch_is_byte_equal(dovecot: DovecotServer, mail_user: MailUser) -> None:
    raw = build_message(
        subject="Angebot für Müller – 見積書",
        from_=("Jürgen Groß", "juergen@customer.example.test"),
        to=[("Rex Rep", mail_user.address)],
        text="Grüße!\n", html="<p>Grüße!</p>",
        attachments=[Attachment("quote.pdf", b"%PDF-1.4\n" + bytes(range(256)), "application/pdf")],
    )
    when = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    uid = dovecot.append(mail_user, "INBOX", raw, flags=(b"\\Seen",), date=when)
    with dovecot.imap_client(mail_user) as client:
        client.select_folder("INBOX", readonly=True)
        data = client.fetch([uid], ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"])[uid]
    assert data[b"BODY[]"] == raw
    assert b"\\Seen" in data[b"FLAGS"]
    assert data[b"INTERNALDATE"].astimezone(UTC) == when


def test_special_use_folders(dovecot: DovecotServer, mail_user: MailUser) -> None:
    with dovecot.imap_client(mail_user) as client:
        assert client.find_special_folder(b"\\Sent") == "Sent"
        flags = {name: set(f) for f, _sep, name in client.list_folders()}
    for name in ("Sent", "Drafts", "Trash", "Junk"):
        assert f"\\{name}".encode() in flags[name]


def test_capabilities_needed_for_sync(dovecot: DovecotServer, mail_user: MailUser) -> None:
    with dovecot.imap_client(mail_user) as client:
        caps = set(client.capabilities())
    assert {b"IDLE", b"CONDSTORE", b"QRESYNC", b"SPECIAL-USE", b"UIDPLUS"} <= caps


def test_system_trust_store_rejects_the_test_ca(dovecot: DovecotServer) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        IMAPClient(dovecot.host, dovecot.ssl_port, ssl=True,
                   ssl_context=ssl.create_default_context(), timeout=5)


def test_untrusted_certificate_option(dovecot_factory: Callable[..., DovecotServer]) -> None:
    server = dovecot_factory(untrusted_cert=True)
    with pytest.raises(ssl.SSLCertVerificationError):
        IMAPClient(server.host, server.ssl_port, ssl=True,
                   ssl_context=server.ssl_context(), timeout=5)


def test_doveadm_recreating_a_folder_changes_uidvalidity(
    dovecot: DovecotServer, mail_user: MailUser
) -> None:
    dovecot.doveadm("mailbox", "create", "-u", mail_user.username, "Deals")
    dovecot.append(mail_user, "Deals", build_message())
    with dovecot.imap_client(mail_user) as client:
        before = client.folder_status("Deals", [b"UIDVALIDITY"])[b"UIDVALIDITY"]
    dovecot.doveadm("mailbox", "delete", "-u", mail_user.username, "Deals")
    dovecot.doveadm("mailbox", "create", "-u", mail_user.username, "Deals")
    with dovecot.imap_client(mail_user) as client:
        status = client.folder_status("Deals", [b"UIDVALIDITY", b"MESSAGES"])
    assert status[b"MESSAGES"] == 0
    assert status[b"UIDVALIDITY"] != before


def test_users_do_not_share_mailboxes(dovecot: DovecotServer, mail_user: MailUser) -> None:
    other = dovecot.add_user("other-" + mail_user.username)
    dovecot.append(mail_user, "INBOX", build_message())
    with dovecot.imap_client(other) as client:
        assert client.select_folder("INBOX")[b"EXISTS"] == 0


def test_mail_account_sends_and_files_in_sent(mail_account: MailAccount) -> None:
    smtp, imap = mail_account.smtp, mail_account.dovecot
    raw = build_message(from_=mail_account.address, to=["lead@customer.example.test"])
    with smtplib.SMTP_SSL(smtp.host, smtp.ssl_port, local_hostname="client.example.test",
                          context=smtp.ssl_context(), timeout=5) as client:
        client.login(mail_account.username, mail_account.password)
        client.sendmail(mail_account.address, ["lead@customer.example.test"], raw)
    [sent] = smtp.messages
    uid = imap.append(mail_account.user, "Sent", sent.data, flags=(b"\\Seen",))
    with imap.imap_client(mail_account.user) as client:
        client.select_folder("Sent", readonly=True)
        assert client.fetch([uid], ["BODY.PEEK[]"])[uid][b"BODY[]"] == raw
