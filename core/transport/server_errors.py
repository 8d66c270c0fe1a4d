"""What the IMAP and SMTP clients share: login/policy value types, the typed error, the
mapping of network and TLS failures to error codes, and secret scrubbing.

Everything here is synchronous; callers run the clients with ``asyncio.to_thread``.
"""

from __future__ import annotations

import base64
import logging
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .credentials import Secret
from .errors import ErrorCode, SalesInboxError, invalid_input
from .log_limits import short_repr
from .netguard import Address, normalise_host, resolve_mail_host
from .providers import LoginMechanism, Security
from .settings import Settings

__all__ = [
    "TOKEN_MECHANISMS",
    "token_initial_response",
    "ConnectPolicy",
    "MailServerError",
    "ServerLogin",
    "check_security",
    "plan_connection",
    "scrub",
    "sendall_chunked",
    "transport_error",
]

log = logging.getLogger(__name__)

#: Bytes per ``sendall``: a socket timeout bounds one whole sendall call, so a 25 MB message
#: on a slow uplink must go in pieces that each get the full timeout.
SEND_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class ServerLogin:
    """One mail server and the credentials to log in to it.

    :param host: the server name as the user gave it (or an IP literal).
    :param port: TCP port.
    :param security: SSL (implicit TLS), STARTTLS, or NONE (refused unless allowed).
    :param username: the login name (usually the email address).
    :param secret: the password, app password or OAuth2 access token; never shown.
    :param mechanism: LOGIN (username + password) or XOAUTH2 (username + access token).
    """

    host: str
    port: int
    security: Security
    username: str
    secret: Secret = field(repr=False)
    mechanism: LoginMechanism = LoginMechanism.LOGIN

    @property
    def endpoint(self) -> str:
        """``host:port`` for messages (``[v6]:port`` for an IPv6 literal)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ConnectPolicy:
    """Deployment rules for outgoing mail connections (from :class:`Settings`).

    :param timeout: seconds allowed for each network step (connect, TLS handshake, each reply).
    :param allow_private_hosts: allow servers on loopback/private addresses (SSRF guard off).
    :param allow_plaintext: allow ``Security.NONE``.
    :param extra_ca_file: a PEM CA bundle trusted besides the system store.
    """

    timeout: float = 20.0
    allow_private_hosts: bool = False
    allow_plaintext: bool = False
    extra_ca_file: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectPolicy:
        """The policy configured by ``SALESINBOX_MAIL_TIMEOUT``, ``_ALLOW_PRIVATE_HOSTS``,
        ``_ALLOW_PLAINTEXT`` and ``_EXTRA_CA_FILE``."""
        return cls(
            timeout=settings.mail_timeout,
            allow_private_hosts=settings.allow_private_hosts,
            allow_plaintext=settings.allow_plaintext,
            extra_ca_file=settings.extra_ca_file,
        )


class MailServerError(SalesInboxError):
    """A failure talking to an IMAP or SMTP server.

    :param protocol: ``"imap"`` or ``"smtp"``.
    :param server_message: the server's own words (e.g. its refusal text), with the secret
        removed; empty when the server said nothing (network or TLS failures).
    :param refused_recipients: for ``RECIPIENT_REFUSED``, the refused addresses.
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        protocol: str,
        server_message: str = "",
        field: str | None = None,
        refused_recipients: tuple[str, ...] = (),
    ) -> None:
        super().__init__(code, message, field=field)
        self.protocol = protocol
        self.server_message = server_message
        self.refused_recipients = refused_recipients

    def with_message(self, message: str) -> MailServerError:
        """A copy with another human message (e.g. the provider's hint appended)."""
        return MailServerError(
            self.code, message, protocol=self.protocol, server_message=self.server_message,
            field=self.field, refused_recipients=self.refused_recipients,
        )

    def __repr__(self) -> str:
        return (
            f"MailServerError({self.code.value}, {self.message!r}, protocol={self.protocol!r}, "
            f"server_message={self.server_message!r}, field={self.field!r})"
        )


def check_security(login: ServerLogin, policy: ConnectPolicy) -> None:
    """Refuse ``Security.NONE`` unless the policy allows plaintext.

    :raises SalesInboxError: ``INVALID_INPUT`` (field ``security``).
    """
    if login.security is Security.NONE and not policy.allow_plaintext:
        raise invalid_input(
            "Connections without encryption are not allowed: choose SSL or STARTTLS. An "
            "administrator can allow them with SALESINBOX_ALLOW_PLAINTEXT=true.",
            field="security",
        )


def plan_connection(login: ServerLogin, policy: ConnectPolicy) -> tuple[str, list[Address]]:
    """Check the security setting, normalise the host and resolve it through the SSRF guard.

    :returns: the normalised host (for TLS server-name checks) and the vetted addresses.
    """
    check_security(login, policy)
    host = normalise_host(login.host)
    return host, resolve_mail_host(host, login.port, policy)


def sasl_forms(login: ServerLogin) -> list[str]:
    """The secret in every form a client might send it: clear and inside base64 SASL."""
    secret = login.secret.reveal()
    if not secret:
        return []
    user = login.username
    payloads = [
        f"\0{user}\0{secret}",  # PLAIN
        f"user={user}\1auth=Bearer {secret}\1\1",  # XOAUTH2
        secret,  # LOGIN sends it alone
    ]
    forms = [secret]
    for payload in payloads:
        forms.append(base64.b64encode(payload.encode("utf-8")).decode("ascii"))
    return forms


def scrub(text: str, login: ServerLogin) -> str:
    """``text`` with the login's secret (clear or base64 SASL form) replaced by ``********``."""
    for form in sasl_forms(login):
        text = text.replace(form, "********")
    return text


def find_cause(exc: BaseException, kinds: type | tuple[type, ...]) -> BaseException | None:
    """The first exception of ``kinds`` among ``exc`` and its causes/contexts."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kinds):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def transport_error(
    exc: BaseException, *, protocol: str, login: ServerLogin, policy: ConnectPolicy
) -> MailServerError | None:
    """Map a failure common to IMAP and SMTP (guard refusals, timeouts, TLS, TCP) to a
    :class:`MailServerError`; ``None`` when ``exc`` is none of those."""
    name = protocol.upper()
    where = login.endpoint
    if isinstance(exc, MailServerError):
        return exc
    if isinstance(exc, SalesInboxError):
        return MailServerError(exc.code, exc.message, protocol=protocol, field=exc.field)
    if find_cause(exc, TimeoutError) is not None:
        hint = ""
        if login.security is Security.STARTTLS and login.port in (993, 465):
            hint = f" Port {login.port} usually needs security SSL, not STARTTLS."
        return MailServerError(
            ErrorCode.TIMEOUT,
            f"No answer from the {name} server {where} within {policy.timeout:g} s.{hint}",
            protocol=protocol,
        )
    cert = find_cause(exc, ssl.SSLCertVerificationError)
    if isinstance(cert, ssl.SSLCertVerificationError):
        if cert.verify_code in (62, 64):  # X509_V_ERR_HOSTNAME_MISMATCH / IP_ADDRESS_MISMATCH
            message = (
                f"The certificate of the {name} server {where} is not trusted: it was issued "
                f"for another server name, not {login.host}. Check the server name (use the "
                "name the provider documents)."
            )
        else:
            reason = cert.verify_message or "unknown issuer"
            message = (
                f"The certificate of the {name} server {where} is not trusted ({reason}). For "
                "a self-hosted server with its own certificate authority, an administrator can "
                "trust that authority with SALESINBOX_EXTRA_CA_FILE."
            )
        return MailServerError(ErrorCode.TLS_FAILED, message, protocol=protocol)
    tls = find_cause(exc, ssl.SSLError)
    if isinstance(tls, ssl.SSLError):
        reason = (tls.reason or str(tls)).replace("_", " ").lower()
        return MailServerError(
            ErrorCode.TLS_FAILED,
            f"Cannot set up a secure connection with the {name} server {where} ({reason}). "
            "Check the port and security setting (SSL for 993/465, STARTTLS for 143/587).",
            protocol=protocol,
        )
    if find_cause(exc, ConnectionRefusedError) is not None:
        return MailServerError(
            ErrorCode.CONNECTION_FAILED,
            f"The {name} server {where} refused the connection: check the server name and port.",
            protocol=protocol,
        )
    os_error = find_cause(exc, OSError)
    if isinstance(os_error, OSError) and type(os_error).__module__ in ("builtins", "socket"):
        reason = (os_error.strerror or str(os_error) or type(os_error).__name__).lower()
        return MailServerError(
            ErrorCode.CONNECTION_FAILED,
            f"Cannot connect to the {name} server {where}: {reason}. Check the server name and "
            "port, and try again.",
            protocol=protocol,
        )
    return None


def log_failure(protocol: str, login: ServerLogin, stage: str, exc: BaseException,
                error: MailServerError) -> None:
    """Record a mapped failure for operators (scrubbed; the username is kept).

    Host, username and error text come from the user or the server: they are logged as
    bounded reprs (scrubbed first, so a cut never leaves part of a secret)."""
    log.info(
        "%s %s (%s) failed while %s: %s (%s: %s)", protocol, short_repr(login.endpoint),
        short_repr(login.username), stage, error.code.value, type(exc).__name__,
        short_repr(scrub(str(exc), login)),
    )


def sendall_chunked(sock: socket.socket, data: bytes | bytearray | memoryview) -> None:
    """``sock.sendall(data)`` in :data:`SEND_CHUNK` pieces, so the socket timeout limits
    each piece (progress) rather than the whole upload."""
    view = memoryview(data)
    for start in range(0, len(view), SEND_CHUNK):
        sock.sendall(view[start:start + SEND_CHUNK])


def decode_text(parts: Iterable[bytes | str | None]) -> str:
    """Join server replies into one line of text (bytes decoded leniently)."""
    texts: list[str] = []
    for part in parts:
        if part is None:
            continue
        text = part.decode("utf-8", "replace") if isinstance(part, (bytes, bytearray)) else part
        text = " ".join(text.split())
        if text and text not in texts:
            texts.append(text)
    return "; ".join(texts)


#: the mechanisms that log in with an OAuth2 access token
TOKEN_MECHANISMS = frozenset({LoginMechanism.XOAUTH2, LoginMechanism.OAUTHBEARER})


def token_initial_response(mechanism: LoginMechanism, username: str, token: str) -> tuple[str, str]:
    """The client's first message of SASL ``mechanism`` (XOAUTH2 or OAUTHBEARER) presenting
    the access token, and its answer to an error challenge."""
    if mechanism is LoginMechanism.OAUTHBEARER:
        # RFC 7628 §3.1: a GS2 header naming the user (RFC 5801 escapes "," and "="), then
        # the bearer token between ^A separators; an error challenge is answered with ^A.
        user = username.replace("=", "=3D").replace(",", "=2C")
        return f"n,a={user},\1auth=Bearer {token}\1\1", "\1"
    return f"user={username}\1auth=Bearer {token}\1\1", ""
