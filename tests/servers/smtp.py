"""A real SMTP server for tests: aiosmtpd in a background thread, on loopback.

`SmtpServer` listens on two free ports of 127.0.0.1:

* `port`       submission-like: plain connection offering STARTTLS (required by default)
* `ssl_port`   SMTPS: implicit TLS, like port 465

Both use the certificates from certs.py, offer AUTH PLAIN/LOGIN against
`users` (and XOAUTH2/OAUTHBEARER when given an introspection URL, see smtp_oauth.py), capture
every accepted message in `messages`, and can refuse chosen recipients with 550 (for
RECIPIENT_REFUSED tests).
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from .certs import CertBundle, client_ssl_context, server_ssl_context
from .smtp_oauth import MECHANISMS as OAUTH_MECHANISMS
from .smtp_oauth import Introspector, OAuthLogin, OAuthMechanisms


@dataclass(frozen=True)
class ReceivedMessage:
    """One message accepted by the server."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes  # as received after dot-unstuffing, CRLF line endings
    login: str | None  # the AUTH user, or None when unauthenticated
    tls: bool  # whether the session was encrypted (STARTTLS or implicit TLS)
    port: int  # which listener received it
    mechanism: str | None = None  # the SASL mechanism of a token login (XOAUTH2, OAUTHBEARER)


@dataclass(frozen=True)
class SmtpUser:
    """Credentials accepted by an `SmtpServer` (the login is also an address)."""

    login: str
    password: str

    @property
    def address(self) -> str:
        return self.login


@dataclass
class _State:
    users: dict[str, str] = field(default_factory=dict)
    refused: set[str] = field(default_factory=set)
    messages: list[ReceivedMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    arrived: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.arrived = threading.Condition(self.lock)


class _Handler(OAuthMechanisms):
    """aiosmtpd handler: refuses configured recipients, records messages, and checks
    XOAUTH2/OAUTHBEARER tokens when it has an introspector."""

    def __init__(self, state: _State, implicit_tls: bool,
                 introspector: Introspector | None = None) -> None:
        self.state = state
        self.implicit_tls = implicit_tls  # session.ssl is only set by STARTTLS
        self.introspector = introspector

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.lower() in self.state.refused:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        auth = session.auth_data
        login = auth.login.decode() if isinstance(auth, (LoginPassword, OAuthLogin)) else None
        sock = server.transport.get_extra_info("sockname") if server.transport else None
        msg = ReceivedMessage(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=bytes(envelope.original_content or b""),
            login=login,
            tls=self.implicit_tls or session.ssl is not None,
            port=sock[1] if sock else 0,
            mechanism=auth.mechanism if isinstance(auth, OAuthLogin) else None,
        )
        with self.state.arrived:
            self.state.messages.append(msg)
            self.state.arrived.notify_all()
        return "250 2.0.0 OK: queued"


class _DropLoginDataNotice(logging.Filter):
    """aiosmtpd logs a deprecation notice for its own use of Session.login_data on
    every successful AUTH; it is not ours to fix, so keep it out of test output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


logging.getLogger("mail.log").addFilter(_DropLoginDataNotice())


class _Controller(Controller):
    """Controller on a pre-bound socket (no free-port race) whose SMTP instances
    require AUTH without tripping aiosmtpd's warning."""

    def __init__(self, handler: _Handler, sock: socket.socket, auth_required: bool,
                 **kwargs: Any) -> None:
        self._sock = sock
        self._auth_required = auth_required
        super().__init__(handler, hostname="127.0.0.1", port=sock.getsockname()[1], **kwargs)

    def _create_server(self):
        return self.loop.create_server(self._factory_invoker, sock=self._sock,
                                       ssl=self.ssl_context)

    def factory(self) -> SMTP:
        # SMTP(auth_required=True, auth_require_tls=False) warns on every connection,
        # and a warning is an error under pytest. Set the flag after construction.
        smtp = SMTP(self.handler, **self.SMTP_kwargs)
        smtp._auth_required = self._auth_required
        return smtp


class SmtpServer:
    """Threaded aiosmtpd server with STARTTLS and SMTPS listeners; see module doc.

    - `users`: {login: password} accepted by AUTH PLAIN/LOGIN.
    - `require_starttls`: the plain port rejects everything but EHLO/STARTTLS/QUIT
      until TLS is on (set False to test the no-TLS path).
    - `auth_required`: MAIL FROM needs a prior successful AUTH.
    - `auth_require_tls`: AUTH is only offered/accepted over TLS.
    - `untrusted_cert`: present the self-signed cert (clients trusting the CA fail).
    - `max_message_size`: advertised as SIZE; larger messages get 552 (MESSAGE_TOO_LARGE).
    - `oauth2_introspection_url` (+ `oauth2_client_id`/`oauth2_client_secret`, the
      introspecting client): also offer AUTH XOAUTH2 and OAUTHBEARER, accepting a token
      that the RFC 7662 endpoint calls active for the same e-mail (see smtp_oauth.py).
    """

    host = "127.0.0.1"

    def __init__(
        self,
        certs: CertBundle,
        users: dict[str, str] | None = None,
        *,
        require_starttls: bool = True,
        auth_required: bool = True,
        auth_require_tls: bool = True,
        untrusted_cert: bool = False,
        max_message_size: int = 32 * 1024 * 1024,
        hostname: str = "smtp.example.test",
        oauth2_introspection_url: str | None = None,
        oauth2_client_id: str = "",
        oauth2_client_secret: str = "",
    ) -> None:
        self.certs = certs
        self.introspector = (
            Introspector(oauth2_introspection_url, oauth2_client_id, oauth2_client_secret)
            if oauth2_introspection_url else None)
        self._state = _State(users=dict(users or {}))
        self.require_starttls = require_starttls
        self.auth_required = auth_required
        self.auth_require_tls = auth_require_tls
        self.untrusted_cert = untrusted_cert
        self.max_message_size = max_message_size
        self.hostname = hostname  # fixed, so aiosmtpd does not call socket.getfqdn()
        self.port = 0
        self.ssl_port = 0
        self._controllers: list[_Controller] = []

    # ----------------------------------------------------------------- lifecycle

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                      mechanism: str, auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            login, password = auth_data.login.decode(), auth_data.password.decode()
            with self._state.lock:
                ok = self._state.users.get(login) == password
            if ok:
                return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)  # aiosmtpd replies 535 5.7.8

    def start(self) -> SmtpServer:
        """Start both listeners (returns when they have answered a probe connection)."""
        ctx = server_ssl_context(self.certs, untrusted=self.untrusted_cert)
        common = dict(
            server_hostname=self.hostname,
            authenticator=self._authenticate,
            decode_data=False,
            data_size_limit=self.max_message_size,
            ready_timeout=10.0,
            # the handler always has auth_XOAUTH2/auth_OAUTHBEARER; offer them only if used
            auth_exclude_mechanism=[] if self.introspector else list(OAUTH_MECHANISMS),
        )
        try:
            for implicit in (False, True):
                # proto must be IPPROTO_TCP (not 0) or asyncio skips TCP_NODELAY on
                # accepted sockets, and Nagle adds ~45 ms to every multi-line reply.
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((self.host, 0))
                port = sock.getsockname()[1]
                handler = _Handler(self._state, implicit_tls=implicit,
                                   introspector=self.introspector)
                if implicit:
                    # aiosmtpd only counts STARTTLS as TLS for auth_require_tls, so
                    # on the already-encrypted SMTPS port AUTH must not require it.
                    controller = _Controller(handler, sock, self.auth_required,
                                             ssl_context=ctx, auth_require_tls=False, **common)
                    self.ssl_port = port
                else:
                    controller = _Controller(handler, sock, self.auth_required,
                                             tls_context=ctx, require_starttls=self.require_starttls,
                                             auth_require_tls=self.auth_require_tls, **common)
                    self.port = port
                self._controllers.append(controller)
                controller.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop both listeners and join their threads."""
        while self._controllers:
            controller = self._controllers.pop()
            if controller._thread is not None:
                controller.stop()
            else:
                controller._sock.close()

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --------------------------------------------------------------- test helpers

    @property
    def messages(self) -> list[ReceivedMessage]:
        """A snapshot of the messages received so far, oldest first."""
        with self._state.lock:
            return list(self._state.messages)

    def clear(self) -> None:
        """Forget received messages."""
        with self._state.lock:
            self._state.messages.clear()

    def reset(self) -> None:
        """Forget received messages and refused recipients (users are kept)."""
        with self._state.lock:
            self._state.messages.clear()
            self._state.refused.clear()

    def wait_for_messages(self, count: int = 1, timeout: float = 5.0) -> list[ReceivedMessage]:
        """Block until at least `count` messages arrived; return them (TimeoutError if not)."""
        deadline = time.monotonic() + timeout
        with self._state.arrived:
            while len(self._state.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self._state.messages)} of {count} messages arrived")
                self._state.arrived.wait(left)
            return list(self._state.messages)

    def add_user(self, login: str, password: str) -> None:
        """Accept `login`/`password` for AUTH (takes effect immediately)."""
        with self._state.lock:
            self._state.users[login] = password

    def refuse(self, *addresses: str | Iterable[str]) -> None:
        """Answer RCPT TO for these addresses with 550 (case-insensitive)."""
        with self._state.lock:
            for a in addresses:
                for address in [a] if isinstance(a, str) else a:
                    self._state.refused.add(address.lower())

    def ssl_context(self) -> ssl.SSLContext:
        """Client context trusting only the test CA."""
        return client_ssl_context(self.certs)
