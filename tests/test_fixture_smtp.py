"""Proof that the SMTP server fixture and the message builders behave as documented."""

from __future__ import annotations

import email
import re
import smtplib
import ssl
import statistics
from collections.abc import Callable
from email import policy

import pytest

from tests.servers.messages import Attachment, build_message, generate_messages
from tests.servers.smtp import SmtpServer, SmtpUser

# smtplib would otherwise call socket.getfqdn() for EHLO, a DNS lookup per connection.
LOCAL = "client.example.test"


def _submission(server: SmtpServer) -> smtplib.SMTP:
    client = smtplib.SMTP(server.host, server.port, local_hostname=LOCAL, timeout=5)
    client.starttls(context=server.ssl_context())
    return client


def test_send_with_starttls_and_auth(smtp_server: SmtpServer, smtp_user: SmtpUser) -> None:
    raw = build_message(from_=smtp_user.address, subject="Grüße – quote", html="<p>hi</p>")
    with _submission(smtp_server) as client:
        client.login(smtp_user.login, smtp_user.password)
        refused = client.sendmail(smtp_user.address, ["bob@customer.example.test"], raw)
    assert refused == {}
    [got] = smtp_server.messages
    assert got.data == raw
    assert got.mail_from == smtp_user.address
    assert got.rcpt_tos == ("bob@customer.example.test",)
    assert (got.login, got.tls, got.port) == (smtp_user.login, True, smtp_server.port)


def test_send_over_implicit_tls(smtp_server: SmtpServer, smtp_user: SmtpUser) -> None:
    raw = build_message(attachments=[Attachment("a.bin", bytes(range(256)) * 40)])
    with smtplib.SMTP_SSL(smtp_server.host, smtp_server.ssl_port, local_hostname=LOCAL,
                          context=smtp_server.ssl_context(), timeout=5) as client:
        client.login(smtp_user.login, smtp_user.password)
        client.sendmail(smtp_user.address, ["a@x.example.test", "b@x.example.test"], raw)
    [got] = smtp_server.wait_for_messages(1)
    assert got.data == raw
    assert got.rcpt_tos == ("a@x.example.test", "b@x.example.test")
    assert (got.tls, got.port) == (True, smtp_server.ssl_port)


def test_wrong_password_gives_535(smtp_server: SmtpServer, smtp_user: SmtpUser) -> None:
    with _submission(smtp_server) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError) as exc:
            client.login(smtp_user.login, "not-the-password")
    assert exc.value.smtp_code == 535


def test_refused_recipient_gives_550(smtp_server: SmtpServer, smtp_user: SmtpUser) -> None:
    smtp_server.refuse("Gone@Customer.example.test")
    raw = build_message()
    with _submission(smtp_server) as client:
        client.login(smtp_user.login, smtp_user.password)
        with pytest.raises(smtplib.SMTPRecipientsRefused) as exc:
            client.sendmail(smtp_user.address, ["gone@customer.example.test"], raw)
        assert exc.value.recipients["gone@customer.example.test"][0] == 550
        # With one good recipient the message goes through and the other is reported.
        refused = client.sendmail(smtp_user.address, ["gone@customer.example.test", "ok@x.test"], raw)
    assert refused["gone@customer.example.test"][0] == 550
    assert [m.rcpt_tos for m in smtp_server.messages] == [("ok@x.test",)]


def test_starttls_is_required_before_mail(smtp_server: SmtpServer) -> None:
    with smtplib.SMTP(smtp_server.host, smtp_server.port, local_hostname=LOCAL, timeout=5) as c:
        c.ehlo()
        assert c.has_extn("starttls")
        assert c.docmd("MAIL FROM:<a@x.test>")[0] == 530


def test_auth_is_required(smtp_server: SmtpServer) -> None:
    with _submission(smtp_server) as client:
        client.ehlo()
        assert client.docmd("MAIL FROM:<a@x.test>")[0] == 530


def test_system_trust_store_rejects_the_test_ca(smtp_server: SmtpServer) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        smtplib.SMTP_SSL(smtp_server.host, smtp_server.ssl_port, local_hostname=LOCAL,
                         context=ssl.create_default_context(), timeout=5)


def test_plain_server_without_tls(smtp_factory: Callable[..., SmtpServer]) -> None:
    # A no-TLS policy (e.g. a relay on a private network): AUTH over plaintext.
    server = smtp_factory({"u@x.test": "pw"}, require_starttls=False, auth_require_tls=False)
    with smtplib.SMTP(server.host, server.port, local_hostname=LOCAL, timeout=5) as c:
        c.login("u@x.test", "pw")
        c.sendmail("u@x.test", ["v@x.test"], b"Subject: hi\r\n\r\nbody\r\n")
    [got] = server.messages
    assert (got.tls, got.login, got.data) == (False, "u@x.test", b"Subject: hi\r\n\r\nbody\r\n")


def test_message_over_the_size_limit_gives_552(smtp_factory: Callable[..., SmtpServer]) -> None:
    server = smtp_factory({"u@x.test": "pw"}, max_message_size=10_000)
    with _submission(server) as client:
        client.login("u@x.test", "pw")
        assert client.ehlo_resp and client.has_extn("size")
        with pytest.raises(smtplib.SMTPSenderRefused) as exc:  # SIZE= is checked at MAIL FROM
            client.sendmail("u@x.test", ["v@x.test"], build_message(text="x" * 20_000))
    assert exc.value.smtp_code == 552
    assert server.messages == []


def test_untrusted_certificate_option(smtp_factory: Callable[..., SmtpServer]) -> None:
    server = smtp_factory(untrusted_cert=True)
    with pytest.raises(ssl.SSLCertVerificationError):
        smtplib.SMTP_SSL(server.host, server.ssl_port, local_hostname=LOCAL,
                         context=server.ssl_context(), timeout=5)


# ------------------------------------------------------------------ message builders

def test_build_message_headers_and_structure() -> None:
    raw = build_message(
        from_=("Jürgen Groß", "j@customer.example.test"), to=["Rex <rex@sales.example.test>"],
        cc=[("Zoë", "zoe@x.example.test")], subject="Angebot – 見積書",
        message_id="<m1@customer.example.test>", in_reply_to="<m0@sales.example.test>",
        text="Grüße\n", html="<p>Grüße</p>", attachments=[Attachment("q.pdf", b"%PDF", "application/pdf")],
        charset="iso-8859-1",
    )
    header = raw.split(b"\r\n\r\n", 1)[0]
    assert header.isascii() and b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    assert re.search(rb"\r\nSubject: [^\r]*=\?utf-8\?", header)  # RFC 2047
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert msg["Subject"] == "Angebot – 見積書"
    assert msg["From"].addresses[0].display_name == "Jürgen Groß"
    assert msg["References"] == "<m0@sales.example.test>"
    assert [p.get_content_type() for p in msg.walk()] == [
        "multipart/mixed", "multipart/alternative", "text/plain", "text/html", "application/pdf"]
    assert msg.get_body(("plain",)).get_content().rstrip() == "Grüße"
    assert msg.get_body(("plain",)).get_content_charset() == "iso-8859-1"
    assert build_message(message_id="<x@y>", date=msg["Date"].datetime) == build_message(
        message_id="<x@y>", date=msg["Date"].datetime)


def test_generator_is_deterministic_and_realistic() -> None:
    corpus = generate_messages(200, seed=1)
    assert corpus[:20] == generate_messages(20, seed=1)
    assert corpus[:20] != generate_messages(20, seed=2)
    median = statistics.median(len(m) for m in corpus)
    assert 6_500 <= median <= 10_000, median
    with_attachments = sum(b"Content-Disposition: attachment" in m for m in corpus)
    assert 0.05 * len(corpus) <= with_attachments <= 0.25 * len(corpus)
    replies = [email.message_from_bytes(m, policy=policy.default) for m in corpus[:100]]
    assert any(r["In-Reply-To"] for r in replies)
    assert len({r["Message-ID"] for r in replies}) == 100
