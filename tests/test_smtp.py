"""probe_smtp / send_smtp against the real aiosmtpd test server."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

import pytest

from salesinbox.core.credentials import Secret
from salesinbox.core.errors import ErrorCode
from salesinbox.core.plugin_host.providers import Security
from salesinbox.core.transport import smtp as smtp_module
from salesinbox.core.transport.server_errors import MailServerError
from salesinbox.core.transport.server_login import ConnectPolicy, ServerLogin
from salesinbox.core.transport.smtp import SmtpProbe, probe_smtp, send_smtp
from tests.servers.certs import CertBundle
from tests.servers.dovecot import free_port
from tests.servers.messages import Attachment, build_message
from tests.servers.smtp import SmtpServer, SmtpUser
from tests.test_imap import assert_secret_hidden
from tests.test_netguard import StarttlsStripper, black_hole, resolve_once

SECURITIES = [Security.SSL, Security.STARTTLS]


@pytest.fixture
def policy(server_certs: CertBundle) -> ConnectPolicy:
    """Loopback servers allowed, the test CA trusted, short timeouts."""
    return ConnectPolicy(timeout=5.0, allow_private_hosts=True, extra_ca_file=server_certs.ca_cert)


def smtp_login(server: SmtpServer, security: Security, login: str, password: str, *,
               host: str = "localhost") -> ServerLogin:
    port = server.ssl_port if security is Security.SSL else server.port
    return ServerLogin(host, port, security, login, Secret(password))


def error_of(call: Callable[[], object]) -> MailServerError:
    with pytest.raises(MailServerError) as caught:
        call()
    return caught.value


# --------------------------------------------------------------------------------- success

@pytest.mark.parametrize("security", SECURITIES)
def test_probe_reports_extensions(
    smtp_server: SmtpServer, smtp_user: SmtpUser, policy: ConnectPolicy, security: Security
) -> None:
    probe = probe_smtp(smtp_login(smtp_server, security, smtp_user.login, smtp_user.password), policy)
    assert isinstance(probe, SmtpProbe)
    assert {"SIZE", "8BITMIME", "SMTPUTF8", "AUTH"} <= set(probe.extensions)
    assert "STARTTLS" not in probe.extensions  # read again after TLS
    assert set(probe.auth_mechanisms) == {"PLAIN", "LOGIN"}
    assert probe.max_size == smtp_server.max_message_size
    assert smtp_server.messages == []


@pytest.mark.parametrize("security", SECURITIES)
def test_send_delivers_the_exact_bytes(
    smtp_server: SmtpServer, smtp_user: SmtpUser, policy: ConnectPolicy, security: Security
) -> None:
    raw = build_message(
        from_=smtp_user.address, to=["lead@customer.example.test"], subject="Angebot – 見積書",
        text="Grüße\n.\n..a line starting with dots\n",  # dot-stuffing must be undone exactly
        attachments=[Attachment("big.bin", bytes(range(256)) * 4096)],  # 1 MiB: chunked DATA
    )
    login = smtp_login(smtp_server, security, smtp_user.login, smtp_user.password)
    send_smtp(login, policy, envelope_from=smtp_user.address,
              recipients=["lead@customer.example.test", "cc@customer.example.test"], message=raw)
    [got] = smtp_server.messages
    assert got.data == raw
    assert got.mail_from == smtp_user.address
    assert got.rcpt_tos == ("lead@customer.example.test", "cc@customer.example.test")
    assert (got.login, got.tls) == (smtp_user.login, True)


def test_non_ascii_password(smtp_server: SmtpServer, policy: ConnectPolicy) -> None:
    # smtplib.login() encodes credentials as ASCII; AUTH PLAIN is sent as UTF-8 instead.
    smtp_server.add_user("umlaut@example.test", "Pässwörd-日本-€")
    login = smtp_login(smtp_server, Security.SSL, "umlaut@example.test", "Pässwörd-日本-€")
    send_smtp(login, policy, envelope_from="umlaut@example.test", recipients=["a@x.test"],
              message=b"Subject: hi\r\n\r\nbody\r\n")
    assert [m.login for m in smtp_server.messages] == ["umlaut@example.test"]


def test_ip_literal_matches_the_certificate(
    smtp_server: SmtpServer, smtp_user: SmtpUser, policy: ConnectPolicy
) -> None:
    login = smtp_login(smtp_server, Security.SSL, smtp_user.login, smtp_user.password,
                       host="127.0.0.1")
    assert probe_smtp(login, policy).max_size


# ------------------------------------------------------------------------- refusals

@pytest.mark.parametrize("security", SECURITIES)
def test_wrong_password_is_authentication_failed_and_never_shown(
    smtp_server: SmtpServer, smtp_user: SmtpUser, policy: ConnectPolicy, security: Security,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    password = "Wr0ng-Pa55word-77e1"
    login = smtp_login(smtp_server, security, smtp_user.login, password)
    error = error_of(lambda: send_smtp(login, policy, envelope_from=smtp_user.address,
                                       recipients=["a@x.test"], message=b"Subject: x\r\n\r\ny\r\n"))
    assert error.code is ErrorCode.AUTHENTICATION_FAILED
    assert error.message == "The SMTP server refused the username or password."
    assert error.protocol == "smtp"
    assert error.server_message.startswith("535 ")
    assert_secret_hidden(error, password, caplog)
    assert smtp_server.messages == []


def test_refused_recipient_sends_nothing(
    smtp_server: SmtpServer, smtp_user: SmtpUser, policy: ConnectPolicy
) -> None:
    smtp_server.refuse("gone@customer.example.test")
    login = smtp_login(smtp_server, Security.STARTTLS, smtp_user.login, smtp_user.password)
    error = error_of(lambda: send_smtp(
        login, policy, envelope_from=smtp_user.address,
        recipients=["ok@customer.example.test", "gone@customer.example.test"],
        message=build_message(from_=smtp_user.address)))
    assert (error.code, error.field) == (ErrorCode.RECIPIENT_REFUSED, "recipients")
    assert error.refused_recipients == ("gone@customer.example.test",)
    assert "gone@customer.example.test (550" in error.message
    assert "ok@customer.example.test" not in error.message
    assert "Nothing was sent" in error.message
    assert error.server_message.startswith("550 5.1.1 ") and "User unknown" in error.server_message
    assert smtp_server.messages == []  # not even to the accepted recipient


def test_message_above_the_advertised_size_is_refused_before_sending(
    smtp_factory: Callable[..., SmtpServer], policy: ConnectPolicy
) -> None:
    server = smtp_factory({"u@x.test": "pw"}, max_message_size=10_000)
    login = smtp_login(server, Security.STARTTLS, "u@x.test", "pw")
    raw = build_message(text="x" * 20_000)
    error = error_of(lambda: send_smtp(login, policy, envelope_from="u@x.test",
                                       recipients=["v@x.test"], message=raw))
    assert (error.code, error.field) == (ErrorCode.MESSAGE_TOO_LARGE, "message")
    assert "(10.0 kB)" in error.message
    assert server.messages == []


def test_server_side_552_is_message_too_large(
    smtp_factory: Callable[..., SmtpServer], policy: ConnectPolicy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Skip our own SIZE check, so the server's 552 (at MAIL FROM SIZE=) is what we map.
    real_describe = smtp_module._describe
    monkeypatch.setattr(smtp_module, "_describe",
                        lambda client: dataclasses.replace(real_describe(client), max_size=None))
    server = smtp_factory({"u@x.test": "pw"}, max_message_size=10_000)
    login = smtp_login(server, Security.SSL, "u@x.test", "pw")
    error = error_of(lambda: send_smtp(login, policy, envelope_from="u@x.test",
                                       recipients=["v@x.test"], message=build_message(text="x" * 20_000)))
    assert error.code is ErrorCode.MESSAGE_TOO_LARGE
    assert error.server_message.startswith("552 ")
    assert server.messages == []


@pytest.mark.parametrize(
    ("sender", "recipients", "field"),
    [("a@x.test", [], "recipients"),
     ("a@x.test", ["b@x.test>\r\nRCPT TO:<evil@x.test"], "recipients"),
     ("a@x.test\r\nRSET", ["b@x.test"], "envelope_from")],
)
def test_malformed_envelopes_are_refused_before_connecting(
    policy: ConnectPolicy, sender: str, recipients: list[str], field: str
) -> None:
    login = ServerLogin("localhost", free_port(), Security.SSL, "u", Secret("pw"))
    error = error_of(lambda: send_smtp(login, policy, envelope_from=sender, recipients=recipients,
                                       message=b"x\r\n"))
    assert (error.code, error.field, error.protocol) == (ErrorCode.INVALID_INPUT, field, "smtp")


# ------------------------------------------------------------------------------------- TLS

@pytest.mark.parametrize("security", SECURITIES)
def test_untrusted_certificate_is_tls_failed(
    smtp_factory: Callable[..., SmtpServer], policy: ConnectPolicy, security: Security
) -> None:
    server = smtp_factory({"u@x.test": "pw"}, untrusted_cert=True)
    error = error_of(lambda: probe_smtp(smtp_login(server, security, "u@x.test", "pw"), policy))
    assert error.code is ErrorCode.TLS_FAILED
    assert "not trusted" in error.message and "SALESINBOX_EXTRA_CA_FILE" in error.message


@pytest.mark.parametrize("security", SECURITIES)
def test_hostname_mismatch_is_tls_failed(
    smtp_server: SmtpServer, smtp_user: SmtpUser, policy: ConnectPolicy, security: Security,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lookups = resolve_once(monkeypatch, "smtp.other-name.test")
    login = smtp_login(smtp_server, security, smtp_user.login, smtp_user.password,
                       host="smtp.other-name.test")
    error = error_of(lambda: probe_smtp(login, policy))
    assert error.code is ErrorCode.TLS_FAILED
    assert "issued for another server name" in error.message
    assert lookups == ["smtp.other-name.test"]  # resolved once, connected to that address


def test_ssl_on_the_starttls_port_is_tls_failed(
    smtp_server: SmtpServer, smtp_user: SmtpUser, policy: ConnectPolicy
) -> None:
    login = ServerLogin("localhost", smtp_server.port, Security.SSL, smtp_user.login,
                        Secret(smtp_user.password))
    assert error_of(lambda: probe_smtp(login, policy)).code is ErrorCode.TLS_FAILED


def test_stripped_starttls_is_tls_failed_and_no_password_is_sent(
    smtp_server: SmtpServer, smtp_user: SmtpUser, policy: ConnectPolicy
) -> None:
    with StarttlsStripper(smtp_server.port) as stripper:
        login = ServerLogin("localhost", stripper.port, Security.STARTTLS, smtp_user.login,
                            Secret(smtp_user.password))
        error = error_of(lambda: probe_smtp(login, policy))
    sent = bytes(stripper.from_client)
    assert error.code is ErrorCode.TLS_FAILED
    assert "does not offer STARTTLS" in error.message
    assert sent.upper().startswith(b"EHLO")
    assert b"AUTH" not in sent.upper() and b"MAIL" not in sent.upper()


# --------------------------------------------------------------- network and policy failures

def test_closed_port_is_connection_failed(policy: ConnectPolicy) -> None:
    port = free_port()
    error = error_of(lambda: probe_smtp(ServerLogin("localhost", port, Security.STARTTLS, "u",
                                                    Secret("pw")), policy))
    assert error.code is ErrorCode.CONNECTION_FAILED
    assert f"localhost:{port}" in error.message


@pytest.mark.parametrize("security", SECURITIES)
def test_black_hole_is_timeout(server_certs: CertBundle, security: Security) -> None:
    policy = ConnectPolicy(timeout=1.0, allow_private_hosts=True, extra_ca_file=server_certs.ca_cert)
    with black_hole() as port:
        login = ServerLogin("localhost", port, security, "u", Secret("pw"))
        started = time.monotonic()
        error = error_of(lambda: probe_smtp(login, policy))
        elapsed = time.monotonic() - started
    assert error.code is ErrorCode.TIMEOUT
    assert error.message == f"No answer from the SMTP server localhost:{port} within 1 s."
    assert 0.9 <= elapsed < 2.0


def test_plaintext_is_refused_unless_allowed(smtp_factory: Callable[..., SmtpServer]) -> None:
    server = smtp_factory({"u@x.test": "pw"}, require_starttls=False, auth_require_tls=False)
    login = ServerLogin("localhost", server.port, Security.NONE, "u@x.test", Secret("pw"))
    strict = ConnectPolicy(timeout=5.0, allow_private_hosts=True)
    error = error_of(lambda: send_smtp(login, strict, envelope_from="u@x.test",
                                       recipients=["v@x.test"], message=b"Subject: a\r\n\r\nb\r\n"))
    assert (error.code, error.field) == (ErrorCode.INVALID_INPUT, "security")
    assert "SALESINBOX_ALLOW_PLAINTEXT" in error.message
    allowed = ConnectPolicy(timeout=5.0, allow_private_hosts=True, allow_plaintext=True)
    send_smtp(login, allowed, envelope_from="u@x.test", recipients=["v@x.test"],
              message=b"Subject: a\r\n\r\nb\r\n")
    [got] = server.messages
    assert (got.tls, got.login, got.data) == (False, "u@x.test", b"Subject: a\r\n\r\nb\r\n")


def test_loopback_server_is_refused_by_the_ssrf_guard(
    smtp_server: SmtpServer, smtp_user: SmtpUser, server_certs: CertBundle
) -> None:
    strict = ConnectPolicy(timeout=5.0, extra_ca_file=server_certs.ca_cert)
    login = smtp_login(smtp_server, Security.SSL, smtp_user.login, smtp_user.password)
    error = error_of(lambda: probe_smtp(login, strict))
    assert (error.code, error.protocol) == (ErrorCode.HOST_NOT_ALLOWED, "smtp")


def test_unresolvable_host_is_connection_failed(policy: ConnectPolicy) -> None:
    login = ServerLogin("nonexistent.invalid", 465, Security.SSL, "u", Secret("pw"))
    error = error_of(lambda: probe_smtp(login, policy))
    assert error.code is ErrorCode.CONNECTION_FAILED
    assert "nonexistent.invalid" in error.message
