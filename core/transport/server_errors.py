"""The typed failure of the IMAP and SMTP clients: :class:`MailServerError`, the mapping of
network and TLS failures to error codes, their log line, and server replies as text.

Everything here is synchronous; callers run the clients with ``asyncio.to_thread``.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterable

from ..errors import ErrorCode, SalesInboxError
from ..log_limits import short_repr
from ..plugin_host.providers import Security
from .sasl import scrub
from .server_login import ConnectPolicy, ServerLogin

__all__ = [
    "MailServerError",
    "decode_text",
    "find_cause",
    "log_failure",
    "transport_error",
]

log = logging.getLogger(__name__)


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
