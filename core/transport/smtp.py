"""Talking to SMTP submission servers: verify an account (:func:`probe_smtp`) and send one
message (:func:`send_smtp`).

Built on smtplib, connecting like :mod:`.imap`: TCP to an address vetted by :mod:`.netguard`,
TLS verified against the host name, STARTTLS mandatory on a STARTTLS endpoint. Sending uses
the low-level MAIL/RCPT/DATA steps so that nothing is sent unless every recipient is
accepted. Failures are :class:`~.server_errors.MailServerError` with ``protocol == "smtp"``.
"""

from __future__ import annotations

import base64
import logging
import smtplib
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from ..errors import ErrorCode, invalid_input
from ..plugin_host.providers import Security
from .chunked_send import SEND_CHUNK
from .netguard import connect_pinned
from .sasl import TOKEN_MECHANISMS, scrub, token_initial_response
from .server_errors import MailServerError, decode_text, log_failure, transport_error
from .server_login import ConnectPolicy, ServerLogin, plan_connection, refused_credentials
from .tls import client_ssl_context

__all__ = ["SmtpProbe", "probe_smtp", "send_smtp"]

log = logging.getLogger(__name__)

PROTOCOL = "smtp"

#: EHLO argument: an address literal, as Thunderbird sends. Without it smtplib calls
#: socket.getfqdn() (a DNS lookup per connection) and would reveal our internal host name.
EHLO_NAME = "[127.0.0.1]"


@dataclass(frozen=True, slots=True)
class SmtpProbe:
    """What :func:`probe_smtp` learnt: EHLO extensions after TLS (upper case, e.g.
    ``"SIZE"``, ``"8BITMIME"``), the AUTH mechanisms offered, and the SIZE limit in bytes
    (``None`` when the server states none)."""

    extensions: tuple[str, ...]
    auth_mechanisms: tuple[str, ...]
    max_size: int | None


class _ChunkedSend:
    """Send big payloads (DATA) in pieces, so the timeout bounds progress, not the upload."""

    def send(self, s: Any) -> None:
        if isinstance(s, str) or len(s) <= SEND_CHUNK:
            super().send(s)  # type: ignore[misc]
            return
        view = memoryview(s)
        for start in range(0, len(view), SEND_CHUNK):
            super().send(view[start:start + SEND_CHUNK])  # type: ignore[misc]


class _PinnedSMTP(_ChunkedSend, smtplib.SMTP):
    """smtplib over a socket to a vetted address; ``_host`` stays the name for STARTTLS."""

    def __init__(self, connect: Callable[[], socket.socket], timeout: float) -> None:
        self._pinned_connect = connect
        super().__init__(local_hostname=EHLO_NAME, timeout=timeout)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        self._host = host  # smtplib only sets it in __init__; starttls() checks the cert by it
        return self._pinned_connect()


class _PinnedSMTPSSL(_ChunkedSend, smtplib.SMTP_SSL):
    """Implicit-TLS smtplib over a socket to a vetted address, certificate checked by name."""

    def __init__(self, connect: Callable[[], socket.socket], timeout: float,
                 context: ssl.SSLContext) -> None:
        self._pinned_connect = connect
        super().__init__(local_hostname=EHLO_NAME, timeout=timeout, context=context)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        self._host = host
        sock = self._pinned_connect()
        try:
            return self.context.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise


def probe_smtp(login: ServerLogin, policy: ConnectPolicy) -> SmtpProbe:
    """Verify an account: connect, TLS (implicit or mandatory STARTTLS), EHLO, AUTH, QUIT.

    Blocking: run it in a thread from async code.

    :raises MailServerError: ``INVALID_INPUT``, ``HOST_NOT_ALLOWED``, ``CONNECTION_FAILED``,
        ``TLS_FAILED``, ``TIMEOUT`` or ``AUTHENTICATION_FAILED``; messages never contain the
        secret.
    """
    client, probe = _open(login, policy)
    _quit(client)
    return probe


def send_smtp(
    login: ServerLogin,
    policy: ConnectPolicy,
    *,
    envelope_from: str,
    recipients: Sequence[str],
    message: bytes,
) -> None:
    """Send ``message`` (RFC 5322 bytes with CRLF line endings, sent as they are) from
    ``envelope_from`` to every address in ``recipients``.

    All or nothing: if the server refuses any recipient, the transaction is reset before
    DATA and nothing is sent to anyone (a partial send would leave the record wrong and make
    a retry duplicate the mail for the accepted ones). A message above the server's SIZE is
    refused before anything is sent.

    Beware: a ``TIMEOUT`` or ``CONNECTION_FAILED`` after the message was transmitted leaves
    it unknown whether the server took it (retrying may send it twice).

    :raises MailServerError: ``RECIPIENT_REFUSED`` (``refused_recipients`` lists them),
        ``MESSAGE_TOO_LARGE``, ``INVALID_INPUT`` (refused sender or content), and the codes of
        :func:`probe_smtp`.
    """
    recipients = list(recipients)
    if not recipients:
        raise MailServerError(ErrorCode.INVALID_INPUT, "Give at least one recipient.",
                              protocol=PROTOCOL, field="recipients")
    for name, address in [("envelope_from", envelope_from)] + [("recipients", r) for r in recipients]:
        # smtplib puts addresses into command lines as they are: a CR/LF would inject commands.
        if any(ord(c) < 32 or c == "\x7f" for c in address) or (name == "recipients" and not address):
            raise MailServerError(ErrorCode.INVALID_INPUT,
                                  f"{address!r} is not a valid email address.",
                                  protocol=PROTOCOL, field=name)
    client, probe = _open(login, policy)
    try:
        _transmit(client, login, probe, envelope_from, recipients, bytes(message))
    except Exception as exc:  # noqa: BLE001 - any failure becomes a typed MailServerError, logged by _map_error
        client.close()
        failure: MailServerError | None = _map_error(exc, login, policy, "sending")
    else:
        failure = None
    if failure is not None:
        raise failure  # outside the handler: no __context__ holding unscrubbed server text
    _quit(client)
    log.debug("smtp %s: sent %d bytes to %d recipients", login.endpoint, len(message),
              len(recipients))


def _open(login: ServerLogin, policy: ConnectPolicy) -> tuple[smtplib.SMTP, SmtpProbe]:
    """Connect, secure, EHLO and authenticate; return the client and what EHLO said."""
    stage = "checking the server address"
    client: smtplib.SMTP | None = None
    try:
        host, addresses = plan_connection(login, policy)
        context = client_ssl_context(policy.extra_ca_file)
        connect = partial(connect_pinned, addresses, policy.timeout)
        stage = "connecting"
        if login.security is Security.SSL:
            client = _PinnedSMTPSSL(connect, policy.timeout, context)
        else:
            client = _PinnedSMTP(connect, policy.timeout)
        client.connect(host, login.port)
        client.ehlo_or_helo_if_needed()
        if login.security is Security.STARTTLS:
            stage = "starting TLS"
            if not client.has_extn("starttls"):
                raise MailServerError(
                    ErrorCode.TLS_FAILED,
                    f"The SMTP server {login.endpoint} does not offer STARTTLS, so the "
                    "connection cannot be secured and the password was not sent. Choose "
                    "security SSL (usually port 465), or check the port.",
                    protocol=PROTOCOL,
                )
            client.starttls(context=context)
            client.ehlo_or_helo_if_needed()  # capabilities again, now over TLS
        probe = _describe(client)
        stage = "logging in"
        _authenticate(client, login, probe)
    except Exception as exc:  # noqa: BLE001 - any failure becomes a typed MailServerError, logged by _map_error
        if client is not None:
            client.close()
        failure: MailServerError | None = _map_error(exc, login, policy, stage)
    else:
        failure = None
    if failure is not None:
        raise failure  # outside the handler: no __context__ holding unscrubbed server text
    assert client is not None
    return client, probe


def _describe(client: smtplib.SMTP) -> SmtpProbe:
    features = client.esmtp_features
    size: int | None = None
    words = features.get("size", "").split()
    if words and words[0].isdigit():
        size = int(words[0]) or None  # "SIZE 0" means no fixed limit
    return SmtpProbe(
        extensions=tuple(name.upper() for name in features),
        auth_mechanisms=tuple(features.get("auth", "").upper().split()),
        max_size=size,
    )


def _authenticate(client: smtplib.SMTP, login: ServerLogin, probe: SmtpProbe) -> None:
    user, secret = login.username, login.secret.reveal()
    if login.mechanism in TOKEN_MECHANISMS:
        initial, error_answer = token_initial_response(login.mechanism, user, secret)
        _sasl(client, login.mechanism.value, initial.encode(), error_answer.encode())
    elif "AUTH" not in probe.extensions:
        raise MailServerError(
            ErrorCode.INVALID_INPUT,
            f"The SMTP server {login.endpoint} does not offer login on this connection. "
            "Check the port and security (mail submission is usually 587 with STARTTLS or "
            "465 with SSL).",
            protocol=PROTOCOL, field="port",
        )
    elif "PLAIN" in probe.auth_mechanisms:  # smtplib encodes credentials as ASCII; PLAIN here is UTF-8
        _sasl(client, "PLAIN", f"\0{user}\0{secret}".encode())
    elif (user + secret).isascii():
        client.login(user, secret)  # CRAM-MD5 or LOGIN
    else:
        raise MailServerError(
            ErrorCode.AUTHENTICATION_FAILED,
            "The SMTP server cannot accept a username or password with non-ASCII characters.",
            protocol=PROTOCOL,
        )


def _sasl(client: smtplib.SMTP, mechanism: str, initial: bytes, error_answer: bytes = b"") -> None:
    """AUTH with an initial response (RFC 4954). A 334 challenge after it carries error
    details (XOAUTH2, OAUTHBEARER): answer with ``error_answer``, as the mechanism requires
    (XOAUTH2: an empty line; OAUTHBEARER: ``%x01``, RFC 7628 §3.2.3)."""
    encoded = base64.b64encode(initial).decode("ascii") or "="
    code, reply = client.docmd("AUTH", f"{mechanism} {encoded}")
    details = b""
    for _round in range(3):
        if code != 334:
            break
        try:
            details = base64.b64decode(reply, validate=True)
        except ValueError:
            details = reply
        code, reply = client.docmd(base64.b64encode(error_answer).decode("ascii"))
    if code not in (235, 503):  # 503: already authenticated
        raise smtplib.SMTPAuthenticationError(code, reply + (b" " + details if details else b""))


def _transmit(client: smtplib.SMTP, login: ServerLogin, probe: SmtpProbe, sender: str,
              recipients: list[str], message: bytes) -> None:
    where = login.endpoint
    if probe.max_size is not None and len(message) > probe.max_size:
        raise _too_large(where, len(message), probe.max_size, "")
    options: list[str] = []
    if "SIZE" in probe.extensions:
        options.append(f"SIZE={len(message)}")
    if not message.isascii() and "8BITMIME" in probe.extensions:
        options.append("BODY=8BITMIME")
    if not all(a.isascii() for a in [sender, *recipients]):
        if "SMTPUTF8" not in probe.extensions:
            raise invalid_input(
                f"The SMTP server {where} cannot send to or from addresses with non-ASCII "
                "characters.", field="recipients")
        options.append("SMTPUTF8")
    code, reply = client.mail(sender, options)
    if code != 250:
        raise _refusal(login, code, reply, "envelope_from", len(message),
                       f"The SMTP server {where} refused the sender address {sender}: this "
                       "account may not be allowed to send as that address.")
    refused: dict[str, tuple[int, bytes]] = {}
    for recipient in recipients:
        code, reply = client.rcpt(recipient)
        if code not in (250, 251):
            refused[recipient] = (code, reply)
    if refused:
        try:
            client.rset()
        except smtplib.SMTPException:
            pass
        listed = ", ".join(f"{a} ({c} {r.decode('utf-8', 'replace')})" for a, (c, r) in refused.items())
        raise MailServerError(
            ErrorCode.RECIPIENT_REFUSED,
            f"The SMTP server {where} refused {'this recipient' if len(refused) == 1 else 'these recipients'}: "
            f"{scrub(listed, login)}. Nothing was sent; correct or remove "
            f"{'it' if len(refused) == 1 else 'them'} and send again.",
            protocol=PROTOCOL, field="recipients", refused_recipients=tuple(refused),
            server_message="; ".join(_reply_text(c, r, login) for c, r in refused.values()),
        )
    code, reply = client.data(message)
    if code != 250:
        raise _refusal(login, code, reply, "message", len(message),
                       f"The SMTP server {where} rejected the message (its content or "
                       "attachments, possibly as spam); it was not sent.")


def _refusal(login: ServerLogin, code: int, reply: bytes | str, field: str, size: int,
             permanent: str) -> MailServerError:
    text = _reply_text(code, reply, login)
    if code == 552:
        return _too_large(login.endpoint, size, None, text)
    if 400 <= code < 500:
        return MailServerError(
            ErrorCode.CONNECTION_FAILED,
            f"The SMTP server {login.endpoint} is temporarily refusing mail; try again later.",
            protocol=PROTOCOL, server_message=text)
    return MailServerError(ErrorCode.INVALID_INPUT, permanent, protocol=PROTOCOL, field=field,
                           server_message=text)


def _too_large(where: str, size: int, limit: int | None, text: str) -> MailServerError:
    limit_text = f" ({_megabytes(limit)})" if limit else ""
    return MailServerError(
        ErrorCode.MESSAGE_TOO_LARGE,
        f"The message ({_megabytes(size)}) is larger than the SMTP server {where} accepts"
        f"{limit_text}. Remove or shrink attachments.",
        protocol=PROTOCOL, field="message", server_message=text)


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB" if size >= 100_000 else f"{size / 1000:.1f} kB"


def _reply_text(code: int, reply: bytes | str, login: ServerLogin) -> str:
    return scrub(f"{code} {decode_text([reply])}".strip(), login)


def _quit(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):  # done already; a rude goodbye changes nothing
        client.close()


def _map_error(exc: BaseException, login: ServerLogin, policy: ConnectPolicy,
               stage: str) -> MailServerError:
    error = _classify(exc, login, policy, stage)
    log_failure(PROTOCOL, login, stage, exc, error)
    return error


def _classify(exc: BaseException, login: ServerLogin, policy: ConnectPolicy,
              stage: str) -> MailServerError:
    where = login.endpoint
    text = ""
    if isinstance(exc, smtplib.SMTPResponseException):
        text = _reply_text(exc.smtp_code, exc.smtp_error, login)
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        if 400 <= exc.smtp_code < 500:  # e.g. 454: the server's problem, not the password
            return MailServerError(
                ErrorCode.CONNECTION_FAILED,
                f"The SMTP server {where} cannot log anyone in right now; try again later.",
                protocol=PROTOCOL, server_message=text)
        return MailServerError(ErrorCode.AUTHENTICATION_FAILED,
                               f"The SMTP server refused {refused_credentials(login)}.",
                               protocol=PROTOCOL, server_message=text)
    if stage == "starting TLS" and isinstance(exc, smtplib.SMTPResponseException):
        return MailServerError(
            ErrorCode.TLS_FAILED,
            f"The SMTP server {where} refused to start TLS, so the password was not sent.",
            protocol=PROTOCOL, server_message=text)
    if isinstance(exc, smtplib.SMTPDataError):
        return _refusal(login, exc.smtp_code, exc.smtp_error, "message", 0,
                        f"The SMTP server {where} rejected the message; it was not sent.")
    mapped = transport_error(exc, protocol=PROTOCOL, login=login, policy=policy)
    if mapped is not None:
        return mapped
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return MailServerError(
            ErrorCode.CONNECTION_FAILED,
            f"The SMTP server {where} closed the connection while {stage}. Check that the "
            "port is an SMTP port, and try again.", protocol=PROTOCOL)
    if isinstance(exc, smtplib.SMTPException):
        return MailServerError(
            ErrorCode.CONNECTION_FAILED,
            f"The SMTP server {where} answered unexpectedly while {stage}. Check that the port "
            "is an SMTP submission port (587 or 465).",
            protocol=PROTOCOL, server_message=text or scrub(str(exc), login))
    raise exc  # a bug, not a server failure: let it surface as one
