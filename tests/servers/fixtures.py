"""pytest fixtures for the real test mail servers (register as a plugin:
`pytest_plugins = ["tests.servers.fixtures"]` in tests/conftest.py).

Session-scoped servers, function-scoped users, so tests never share a mailbox:

- `server_certs`  -> CertBundle          test CA + server cert + untrusted cert
- `dovecot`       -> DovecotServer       one private Dovecot for the session
- `mail_user`     -> MailUser            fresh `user-<n>@example.test` on `dovecot`
- `smtp_server`   -> SmtpServer          shared aiosmtpd server, reset before each test
- `smtp_user`     -> SmtpUser            fresh login/password on `smtp_server`
- `mail_account`  -> MailAccount         the same fresh credentials on both servers
- `proxy`         -> CuttingProxy        a relay to `dovecot`'s IMAP port that can cut
   or stall its connections (point an account's imap_port at `proxy.port`)
- `dovecot_factory(**options) -> DovecotServer`   extra started server, e.g.
   untrusted_cert=True; stopped at the end of the test
- `smtp_factory(users=None, **options) -> SmtpServer`   same for SMTP, e.g.
   require_starttls=False, auth_require_tls=False

OAuth2 ("Sign in with Google/Microsoft" without the internet):

- `oauth_server`  -> OAuthServer         local authorisation server (tests/servers/oauth.py)
   for the session, reset before each test (tokens, counters, switches); its default
   client is `oauth_server.client`, redirect_uri `oauth_server.url("/callback")`
- `oauth_dovecot` -> DovecotServer       a second session Dovecot whose users log in with
   a password or with XOAUTH2/OAUTHBEARER tokens it introspects at `oauth_server`
- `oauth_smtp`    -> SmtpServer          aiosmtpd (STARTTLS optional, AUTH required) taking
   passwords and XOAUTH2/OAUTHBEARER tokens the same way, reset before each test
- `oauth_account` -> MailAccount         a fresh user on `oauth_dovecot` and `oauth_smtp`;
   get it tokens through the consent page or `oauth_server.issue_tokens(account.address)`

If Dovecot cannot run here (not installed, not root) the fixtures skip, unless
SALESINBOX_REQUIRE_SERVERS=1 (set in CI), in which case they fail.

Import the fixture *types* from tests.servers.dovecot / tests.servers.smtp, not
from this module: importing a plugin module before pytest registers it makes
pytest warn (an error here) that it cannot rewrite its asserts.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from .certs import CertBundle, make_certs
from .dovecot import DovecotServer, MailUser, unavailable_reason
from .proxy import CuttingProxy

if TYPE_CHECKING:  # aiosmtpd/Authlib are test extras: import only when a fixture needs them
    from .oauth import OAuthServer
    from .smtp import SmtpServer, SmtpUser

REQUIRE_ENV = "SALESINBOX_REQUIRE_SERVERS"
_serial = itertools.count(1)


def require_or_skip(reason: str) -> None:
    """Skip the test for `reason`, or fail it when SALESINBOX_REQUIRE_SERVERS=1."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} (and {REQUIRE_ENV}=1 requires the test servers)", pytrace=False)
    pytest.skip(reason)


def _unique(prefix: str) -> str:
    # The random part keeps names unique across pytest-xdist workers sharing a server.
    return f"{prefix}-{next(_serial)}-{secrets.token_hex(3)}@example.test"


@dataclass(frozen=True)
class MailAccount:
    """One mailbox reachable over IMAP (`dovecot`) and SMTP (`smtp_server`) with
    the same credentials, like a real provider account."""

    user: MailUser
    dovecot: DovecotServer
    smtp: SmtpServer

    @property
    def username(self) -> str:
        return self.user.username

    @property
    def password(self) -> str:
        return self.user.password

    @property
    def address(self) -> str:
        return self.user.address


@pytest.fixture(scope="session")
def server_certs(tmp_path_factory: pytest.TempPathFactory) -> CertBundle:
    """Test CA, CA-signed cert for 127.0.0.1/::1/localhost and an untrusted cert (PEM)."""
    return make_certs(tmp_path_factory.mktemp("certs"))


def _running_dovecot(certs: CertBundle, **options: object) -> Iterator[DovecotServer]:
    """Start a DovecotServer with ``options`` (or skip/fail where Dovecot cannot run), yield
    it, stop it; a server that failed to start is stopped too."""
    reason = unavailable_reason()
    if reason:
        require_or_skip(reason)
    server = DovecotServer(certs, **options)  # type: ignore[arg-type]
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    yield server
    server.stop()


@pytest.fixture(scope="session")
def dovecot(server_certs: CertBundle) -> Iterator[DovecotServer]:
    """A private Dovecot for the whole session (plain+STARTTLS `port`, IMAPS `ssl_port`)."""
    yield from _running_dovecot(server_certs)


@pytest.fixture
def dovecot_factory(server_certs: CertBundle) -> Iterator[Callable[..., DovecotServer]]:
    """Start extra Dovecots: `dovecot_factory(untrusted_cert=True, extra_config=...)`
    takes DovecotServer's keyword options; each is stopped after the test."""
    started: list[DovecotServer] = []

    def start(**options: object) -> DovecotServer:
        reason = unavailable_reason()
        if reason:
            require_or_skip(reason)
        server = DovecotServer(server_certs, **options)  # type: ignore[arg-type]
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def mail_user(dovecot: DovecotServer) -> MailUser:
    """A fresh Dovecot user (`user-<n>-<hex>@example.test`, random password)."""
    return dovecot.add_user(_unique("user"), secrets.token_urlsafe(12))


@pytest.fixture(scope="session")
def _smtp_session_server(server_certs: CertBundle) -> Iterator[SmtpServer]:
    try:
        from .smtp import SmtpServer
    except ImportError as exc:  # aiosmtpd is a test extra
        require_or_skip(f"aiosmtpd is not installed ({exc})")
    server = SmtpServer(server_certs).start()
    yield server
    server.stop()


@pytest.fixture
def smtp_server(_smtp_session_server: SmtpServer) -> SmtpServer:
    """The session's SmtpServer with no captured messages and no refused recipients.

    Default policy: STARTTLS required on `port`, implicit TLS on `ssl_port`, AUTH
    required. For other policies use `smtp_factory`.
    """
    _smtp_session_server.reset()
    return _smtp_session_server


@pytest.fixture
def smtp_factory(server_certs: CertBundle) -> Iterator[Callable[..., SmtpServer]]:
    """Start extra SMTP servers: `smtp_factory({"u": "pw"}, require_starttls=False)`
    takes SmtpServer's arguments; each is stopped after the test."""
    started: list[SmtpServer] = []

    def start(users: dict[str, str] | None = None, **options: object) -> SmtpServer:
        from .smtp import SmtpServer

        server = SmtpServer(server_certs, users, **options)  # type: ignore[arg-type]
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def smtp_user(smtp_server: SmtpServer) -> SmtpUser:
    """Fresh credentials accepted by `smtp_server`."""
    from .smtp import SmtpUser

    user = SmtpUser(_unique("sender"), secrets.token_urlsafe(12))
    smtp_server.add_user(user.login, user.password)
    return user


@pytest.fixture
def mail_account(
    dovecot: DovecotServer, smtp_server: SmtpServer, mail_user: MailUser
) -> MailAccount:
    """`mail_user` also allowed to send through `smtp_server` with the same password."""
    smtp_server.add_user(mail_user.username, mail_user.password)
    return MailAccount(user=mail_user, dovecot=dovecot, smtp=smtp_server)


@pytest.fixture
def proxy(mail_account: MailAccount) -> Iterator[CuttingProxy]:
    """A :class:`CuttingProxy` to `mail_account`'s Dovecot (plain/STARTTLS port), closed after the test."""
    relay = CuttingProxy("127.0.0.1", mail_account.dovecot.port)
    yield relay
    relay.close()


# ------------------------------------------------------------------------- OAuth2


@pytest.fixture(scope="session")
def _oauth_session_server() -> Iterator[OAuthServer]:
    try:
        from .oauth import OAuthServer
    except ImportError as exc:  # Authlib is a test extra
        require_or_skip(f"Authlib is not installed ({exc})")
    server = OAuthServer().start()
    yield server
    server.stop()


@pytest.fixture
def oauth_server(_oauth_session_server: OAuthServer) -> OAuthServer:
    """The session's OAuthServer, reset: no tokens, zero counters, switches off, access
    tokens living `access_token_lifetime` = 3600 s (set it lower in the test)."""
    _oauth_session_server.reset()
    return _oauth_session_server


@pytest.fixture(scope="session")
def oauth_dovecot(server_certs: CertBundle,
                  _oauth_session_server: OAuthServer) -> Iterator[DovecotServer]:
    """A session Dovecot taking passwords and XOAUTH2/OAUTHBEARER tokens (introspected at
    `oauth_server` as its `resource_client`); its users come from `oauth_account`."""
    resource = _oauth_session_server.resource_client
    yield from _running_dovecot(server_certs,
                                oauth2_introspection_url=_oauth_session_server.introspection_url,
                                oauth2_client_id=resource.client_id,
                                oauth2_client_secret=resource.client_secret)


@pytest.fixture(scope="session")
def _oauth_smtp_session(server_certs: CertBundle,
                        _oauth_session_server: OAuthServer) -> Iterator[SmtpServer]:
    from .smtp import SmtpServer

    resource = _oauth_session_server.resource_client
    server = SmtpServer(server_certs, require_starttls=False, auth_require_tls=False,
                        oauth2_introspection_url=_oauth_session_server.introspection_url,
                        oauth2_client_id=resource.client_id,
                        oauth2_client_secret=resource.client_secret).start()
    yield server
    server.stop()


@pytest.fixture
def oauth_smtp(_oauth_smtp_session: SmtpServer) -> SmtpServer:
    """The session's token-accepting SmtpServer, with no captured messages."""
    _oauth_smtp_session.reset()
    return _oauth_smtp_session


@pytest.fixture
def oauth_account(oauth_server: OAuthServer, oauth_dovecot: DovecotServer,
                  oauth_smtp: SmtpServer) -> MailAccount:
    """A fresh mailbox on `oauth_dovecot` + `oauth_smtp` (same password on both), whose
    address is also the e-mail to sign in as at `oauth_server` (it is its `current_user`)."""
    user = oauth_dovecot.add_user(_unique("oauth"), secrets.token_urlsafe(12))
    oauth_smtp.add_user(user.username, user.password)
    oauth_server.current_user = user.address
    return MailAccount(user=user, dovecot=oauth_dovecot, smtp=oauth_smtp)
