"""open_imap / probe_imap against the real Dovecot: TLS, login, SSRF guard, error mapping.

Also home to `assert_secret_hidden`, which the SMTP tests share.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
import traceback
from collections.abc import Callable

import pytest

from salesinbox.core.credentials import Secret
from salesinbox.core.errors import ErrorCode
from salesinbox.core.plugin_host.providers import LoginMechanism, Security
from salesinbox.core.transport.imap import FolderInfo, ImapProbe, open_imap, probe_imap
from salesinbox.core.transport.server_errors import MailServerError
from salesinbox.core.transport.server_login import ConnectPolicy, ServerLogin
from tests.servers.certs import CertBundle, server_ssl_context
from tests.servers.dovecot import DovecotServer, MailUser, free_port
from tests.test_netguard import StarttlsStripper, black_hole, resolve_once

dovecot_test = pytest.mark.dovecot


def assert_secret_hidden(error: BaseException, secret: str, caplog: pytest.LogCaptureFixture) -> None:
    """`secret` appears nowhere: not in the error, its traceback or any log record."""
    assert isinstance(error, MailServerError)
    assert error.__context__ is None and error.__cause__ is None  # no unscrubbed originals
    shown = [str(error), repr(error), error.message, error.server_message,
             "".join(traceback.format_exception(error)), caplog.text]
    shown += [record.getMessage() for record in caplog.records]
    for text in shown:
        assert secret not in text


# --------------------------------------------------------------------------------- fixtures

@pytest.fixture
def policy(server_certs: CertBundle) -> ConnectPolicy:
    """Loopback servers allowed, the test CA trusted, short timeouts."""
    return ConnectPolicy(timeout=5.0, allow_private_hosts=True, extra_ca_file=server_certs.ca_cert)


def imap_login(user: MailUser, port: int, security: Security = Security.SSL, *,
               host: str = "localhost", password: str | None = None,
               mechanism: LoginMechanism = LoginMechanism.LOGIN) -> ServerLogin:
    secret = Secret(user.password if password is None else password)
    return ServerLogin(host, port, security, user.username, secret, mechanism)


def error_of(call: Callable[[], object]) -> MailServerError:
    with pytest.raises(MailServerError) as caught:
        call()
    return caught.value


# --------------------------------------------------------------------------------- success

@dovecot_test
@pytest.mark.parametrize("security", [Security.SSL, Security.STARTTLS])
def test_probe_reports_capabilities_and_folders(
    dovecot: DovecotServer, mail_user: MailUser, policy: ConnectPolicy, security: Security
) -> None:
    port = dovecot.ssl_port if security is Security.SSL else dovecot.port
    probe = probe_imap(imap_login(mail_user, port, security), policy)
    assert isinstance(probe, ImapProbe)
    assert probe.idle and probe.condstore and probe.qresync and probe.special_use
    assert {"IDLE", "CONDSTORE", "QRESYNC", "SPECIAL-USE", "UIDPLUS"} <= set(probe.capabilities)
    assert set(probe.auth_mechanisms) == {"PLAIN", "LOGIN"}
    assert probe.sent_folder == "Sent"
    folders = {f.name: f for f in probe.folders}
    assert set(folders) == {"INBOX", "Sent", "Drafts", "Trash", "Junk"}
    assert folders["Sent"] == FolderInfo("Sent", ("\\Sent",), "/")
    assert folders["Trash"].has_flag("\\trash")


@dovecot_test
@pytest.mark.parametrize("security", [Security.SSL, Security.STARTTLS])
def test_open_imap_gives_a_logged_in_fast_client(
    dovecot: DovecotServer, mail_user: MailUser, policy: ConnectPolicy, security: Security
) -> None:
    port = dovecot.ssl_port if security is Security.SSL else dovecot.port
    client = open_imap(imap_login(mail_user, port, security), policy)
    try:
        assert isinstance(client.socket(), ssl.SSLSocket)
        assert client.socket().getpeername() == ("127.0.0.1", port)
        assert client.socket().gettimeout() == policy.timeout
        assert client._imap.debug == 0  # docs/measurements.md#imaplib-debug-tracing
        assert client.select_folder("INBOX")[b"EXISTS"] == 0
    finally:
        client.logout()


@dovecot_test
def test_ip_literal_matches_the_certificate(
    dovecot: DovecotServer, mail_user: MailUser, policy: ConnectPolicy
) -> None:
    assert probe_imap(imap_login(mail_user, dovecot.ssl_port, host="127.0.0.1"), policy).idle


@dovecot_test
def test_non_ascii_password(dovecot: DovecotServer, policy: ConnectPolicy) -> None:
    # IMAP LOGIN is ASCII-only: such passwords go through AUTHENTICATE PLAIN (UTF-8).
    user = dovecot.add_user(f"umlaut-{free_port()}@example.test", "Pässwörd-日本-€")
    assert probe_imap(imap_login(user, dovecot.ssl_port), policy).sent_folder == "Sent"


@dovecot_test
def test_xoauth2_login(
    dovecot_factory: Callable[..., DovecotServer], policy: ConnectPolicy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Dovecot 2.3 checks an XOAUTH2 token like a password against the passdb.
    server = dovecot_factory(extra_config="auth_mechanisms = plain login xoauth2\n")
    user = server.add_user("oauth@example.test", "ya29.token-ABC")
    good = imap_login(user, server.ssl_port, mechanism=LoginMechanism.XOAUTH2)
    assert "XOAUTH2" in probe_imap(good, policy).auth_mechanisms
    caplog.set_level(logging.DEBUG)
    wrong = imap_login(user, server.ssl_port, password="ya29.stolen-XYZ",
                       mechanism=LoginMechanism.XOAUTH2)
    error = error_of(lambda: open_imap(wrong, policy))
    assert error.code is ErrorCode.AUTHENTICATION_FAILED
    assert_secret_hidden(error, "ya29.stolen-XYZ", caplog)


# --------------------------------------------------------------------------- authentication

@dovecot_test
@pytest.mark.parametrize("security", [Security.SSL, Security.STARTTLS])
def test_wrong_password_is_authentication_failed_and_never_shown(
    dovecot: DovecotServer, mail_user: MailUser, policy: ConnectPolicy, security: Security,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    password = "Wr0ng-Pa55word-4f9c"
    port = dovecot.ssl_port if security is Security.SSL else dovecot.port
    error = error_of(lambda: probe_imap(imap_login(mail_user, port, security, password=password), policy))
    assert error.code is ErrorCode.AUTHENTICATION_FAILED
    assert error.message == "The IMAP server refused the username or password."
    assert error.protocol == "imap"
    assert "AUTHENTICATIONFAILED" in error.server_message
    assert_secret_hidden(error, password, caplog)


# ------------------------------------------------------------------------------------- TLS

@dovecot_test
@pytest.mark.parametrize("security", [Security.SSL, Security.STARTTLS])
def test_untrusted_certificate_is_tls_failed(
    dovecot_factory: Callable[..., DovecotServer], policy: ConnectPolicy, security: Security
) -> None:
    server = dovecot_factory(untrusted_cert=True)
    user = server.add_user("u@example.test")
    port = server.ssl_port if security is Security.SSL else server.port
    error = error_of(lambda: open_imap(imap_login(user, port, security), policy))
    assert error.code is ErrorCode.TLS_FAILED
    assert f"localhost:{port}" in error.message and "not trusted" in error.message
    assert "SALESINBOX_EXTRA_CA_FILE" in error.message


@dovecot_test
def test_system_store_alone_rejects_the_test_ca(
    dovecot: DovecotServer, mail_user: MailUser, policy: ConnectPolicy
) -> None:
    no_extra_ca = ConnectPolicy(timeout=5.0, allow_private_hosts=True)
    error = error_of(lambda: open_imap(imap_login(mail_user, dovecot.ssl_port), no_extra_ca))
    assert error.code is ErrorCode.TLS_FAILED


@dovecot_test
@pytest.mark.parametrize("security", [Security.SSL, Security.STARTTLS])
def test_connection_goes_to_the_checked_address_and_tls_checks_the_name(
    dovecot: DovecotServer, mail_user: MailUser, policy: ConnectPolicy, security: Security,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # "localhost" answers once: a second lookup (by imaplib or ssl) would fail the test.
    lookups = resolve_once(monkeypatch, "localhost")
    port = dovecot.ssl_port if security is Security.SSL else dovecot.port
    assert probe_imap(imap_login(mail_user, port, security), policy).sent_folder == "Sent"
    assert lookups == ["localhost"]


@dovecot_test
@pytest.mark.parametrize("security", [Security.SSL, Security.STARTTLS])
def test_hostname_mismatch_is_tls_failed(
    dovecot: DovecotServer, mail_user: MailUser, policy: ConnectPolicy, security: Security,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The name resolves to the server, but its certificate is for localhost/127.0.0.1 only.
    resolve_once(monkeypatch, "imap.other-name.test")
    port = dovecot.ssl_port if security is Security.SSL else dovecot.port
    login = imap_login(mail_user, port, security, host="imap.other-name.test")
    error = error_of(lambda: open_imap(login, policy))
    assert error.code is ErrorCode.TLS_FAILED
    assert "issued for another server name" in error.message


@dovecot_test
def test_ssl_on_the_starttls_port_is_tls_failed(
    dovecot: DovecotServer, mail_user: MailUser, policy: ConnectPolicy
) -> None:
    error = error_of(lambda: open_imap(imap_login(mail_user, dovecot.port, Security.SSL), policy))
    assert error.code is ErrorCode.TLS_FAILED
    assert "security setting" in error.message


@dovecot_test
def test_stripped_starttls_is_tls_failed_and_no_password_is_sent(
    dovecot: DovecotServer, mail_user: MailUser, policy: ConnectPolicy
) -> None:
    with StarttlsStripper(dovecot.port) as stripper:
        login = imap_login(mail_user, stripper.port, Security.STARTTLS)
        error = error_of(lambda: open_imap(login, policy))
    sent = bytes(stripper.from_client)
    assert error.code is ErrorCode.TLS_FAILED
    assert "does not offer STARTTLS" in error.message
    assert b"CAPABILITY" in sent.upper()  # the client did talk through the proxy ...
    assert b"LOGIN" not in sent.upper() and mail_user.password.encode() not in sent  # ... but never logged in


# --------------------------------------------------------------- network and policy failures

def test_closed_port_is_connection_failed(policy: ConnectPolicy) -> None:
    port = free_port()
    login = ServerLogin("localhost", port, Security.SSL, "u", Secret("pw"))
    error = error_of(lambda: open_imap(login, policy))
    assert error.code is ErrorCode.CONNECTION_FAILED
    assert f"localhost:{port}" in error.message and "refused the connection" in error.message


@pytest.mark.parametrize("security", [Security.SSL, Security.STARTTLS])
def test_black_hole_is_timeout(server_certs: CertBundle, security: Security) -> None:
    policy = ConnectPolicy(timeout=1.0, allow_private_hosts=True, extra_ca_file=server_certs.ca_cert)
    with black_hole() as port:
        login = ServerLogin("localhost", port, security, "u", Secret("pw"))
        started = time.monotonic()
        error = error_of(lambda: probe_imap(login, policy))
        elapsed = time.monotonic() - started
    assert error.code is ErrorCode.TIMEOUT
    assert error.message == f"No answer from the IMAP server localhost:{port} within 1 s."
    assert 0.9 <= elapsed < 2.0


def test_starttls_on_the_implicit_tls_port_hints_at_ssl(server_certs: CertBundle,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # A STARTTLS client waits for a greeting an IMAPS server never sends (it awaits TLS).
    policy = ConnectPolicy(timeout=1.0, allow_private_hosts=True, extra_ca_file=server_certs.ca_cert)
    with black_hole() as port:
        monkeypatch.setattr(socket, "getaddrinfo", _pinned_to(port, socket.getaddrinfo))
        error = error_of(lambda: open_imap(
            ServerLogin("localhost", 993, Security.STARTTLS, "u", Secret("pw")), policy))
    assert error.code is ErrorCode.TIMEOUT
    assert "Port 993 usually needs security SSL" in error.message


def _pinned_to(port: int, real: Callable[..., list]) -> Callable[..., list]:
    def getaddrinfo(host: str, _port: int, *args: object, **kwargs: object) -> list:
        return real(host, port, *args, **kwargs)
    return getaddrinfo


@dovecot_test
def test_plaintext_is_refused_unless_allowed(
    dovecot: DovecotServer, mail_user: MailUser, policy: ConnectPolicy
) -> None:
    login = imap_login(mail_user, dovecot.port, Security.NONE)
    error = error_of(lambda: open_imap(login, policy))
    assert (error.code, error.field) == (ErrorCode.INVALID_INPUT, "security")
    assert "SALESINBOX_ALLOW_PLAINTEXT" in error.message
    allowed = ConnectPolicy(timeout=5.0, allow_private_hosts=True, allow_plaintext=True)
    client = open_imap(login, allowed)
    try:
        assert not isinstance(client.socket(), ssl.SSLSocket)
    finally:
        client.logout()


@dovecot_test
def test_loopback_server_is_refused_by_the_ssrf_guard(
    dovecot: DovecotServer, mail_user: MailUser, server_certs: CertBundle
) -> None:
    strict = ConnectPolicy(timeout=5.0, extra_ca_file=server_certs.ca_cert)
    error = error_of(lambda: probe_imap(imap_login(mail_user, dovecot.ssl_port), strict))
    assert (error.code, error.protocol) == (ErrorCode.HOST_NOT_ALLOWED, "imap")
    assert "SALESINBOX_ALLOW_PRIVATE_HOSTS" in error.message


def test_unresolvable_and_malformed_hosts(policy: ConnectPolicy) -> None:
    login = ServerLogin("nonexistent.invalid", 993, Security.SSL, "u", Secret("pw"))
    error = error_of(lambda: open_imap(login, policy))
    assert error.code is ErrorCode.CONNECTION_FAILED
    assert "nonexistent.invalid" in error.message and "check the server name" in error.message
    url = ServerLogin("imaps://imap.gmail.com", 993, Security.SSL, "u", Secret("pw"))
    error = error_of(lambda: open_imap(url, policy))
    assert (error.code, error.field) == (ErrorCode.INVALID_INPUT, "host")


def test_server_login_never_shows_the_secret() -> None:
    login = ServerLogin("imap.example.com", 993, Security.SSL, "rex@acme.test", Secret("hunter2-xyz"))
    assert "hunter2-xyz" not in repr(login) and "hunter2-xyz" not in str(login)
    assert login.endpoint == "imap.example.com:993"
    assert ServerLogin("::1", 143, Security.NONE, "u", Secret("x")).endpoint == "[::1]:143"


# ------------------------------------------------------ provider refusals (fault injection)

class FakeImapServer:
    """A scripted IMAPS server for refusals Dovecot cannot produce: it greets, answers
    CAPABILITY, and answers LOGIN with `login_reply` (lines; "{tag}" is replaced), or hangs
    up without a word when `login_reply` is empty."""

    def __init__(self, certs: CertBundle, login_reply: list[str]) -> None:
        self.login_reply = login_reply
        self.context = server_ssl_context(certs)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        conn.settimeout(10)
        try:
            with self.context.wrap_socket(conn, server_side=True) as tls, tls.makefile("rb") as lines:
                tls.sendall(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] Fake ready\r\n")
                for line in lines:
                    tag, command = line.split()[:2]
                    if command.upper() == b"CAPABILITY":
                        tls.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n")
                    elif command.upper() == b"LOGIN":
                        if not self.login_reply:
                            break  # the connection drops mid-login (network cut, restart)
                        reply = "".join(r.replace("{tag}", tag.decode()) + "\r\n" for r in self.login_reply)
                        tls.sendall(reply.encode())
                    else:
                        tls.sendall(b"* BYE bye\r\n" + tag + b" OK bye\r\n")
                        break
        except (OSError, ValueError):
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.thread.join(10)
        self.listener.close()


SECRET = "S3cret-echoed-back"


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (["{tag} NO [ALERT] IMAP access is disabled"], ErrorCode.IMAP_DISABLED),
        (["* NO [ALERT] Your account is not enabled for IMAP use. Please visit your Gmail settings "
          "page and enable your account for IMAP access. (Failure)",
          "{tag} NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)"], ErrorCode.IMAP_DISABLED),
        (["{tag} NO You are yet to enable IMAP for your account. Please contact your administrator."],
         ErrorCode.IMAP_DISABLED),
        (["{tag} NO [WEBALERT https://accounts.google.com/signin/continue] Web login required."],
         ErrorCode.IMAP_DISABLED),
        (["{tag} NO User is authenticated but not connected."], ErrorCode.IMAP_DISABLED),
        (["{tag} NO [UNAVAILABLE] Temporary authentication failure"], ErrorCode.CONNECTION_FAILED),
        ([], ErrorCode.CONNECTION_FAILED),
        (["{tag} NO [LIMIT] Maximum number of connections from user+IP exceeded"], ErrorCode.CONNECTION_FAILED),
        (["{tag} NO [INUSE] Mailbox is locked by another session"], ErrorCode.CONNECTION_FAILED),
        (["{tag} NO [ALERT] Too many simultaneous connections. (Failure)"], ErrorCode.CONNECTION_FAILED),
        (["{tag} NO [AUTHENTICATIONFAILED] Invalid password " + SECRET], ErrorCode.AUTHENTICATION_FAILED),
    ],
    ids=["alert", "gmail", "zoho", "web-login", "office365", "unavailable", "hang-up", "limit", "inuse",
         "too-many", "echoes-secret"],
)
def test_provider_refusals(
    server_certs: CertBundle, policy: ConnectPolicy, caplog: pytest.LogCaptureFixture,
    reply: list[str], code: ErrorCode,
) -> None:
    caplog.set_level(logging.DEBUG)
    server = FakeImapServer(server_certs, reply)
    try:
        login = ServerLogin("localhost", server.port, Security.SSL, "rex@acme.test", Secret(SECRET))
        error = error_of(lambda: probe_imap(login, policy))
    finally:
        server.close()
    assert error.code is code
    assert error.server_message  # the provider's words, for the accounts layer's hint
    if code is ErrorCode.IMAP_DISABLED:
        assert "Enable IMAP access in the mail provider's settings" in error.message
    assert_secret_hidden(error, SECRET, caplog)


def test_with_message_keeps_everything_else() -> None:
    error = MailServerError(ErrorCode.AUTHENTICATION_FAILED, "Refused.", protocol="smtp",
                            server_message="535 no", field="password")
    hinted = error.with_message("Refused. Gmail needs an app password.")
    assert (hinted.code, hinted.protocol, hinted.server_message, hinted.field) == (
        ErrorCode.AUTHENTICATION_FAILED, "smtp", "535 no", "password")
    assert hinted.message == str(hinted) == "Refused. Gmail needs an app password."
