"""Connecting to IMAP servers: log in (:func:`open_imap`) and verify an account (:func:`probe_imap`).

Built on imapclient, with three changes to how it connects: the TCP connection goes to an
address vetted by :mod:`.netguard` (while TLS still checks the certificate against the host
name), STARTTLS is mandatory on a STARTTLS endpoint (no silent fall-back to plaintext), and
imaplib's debug tracing is off (it costs 58 % of fetch CPU, and would log commands:
docs/measurements.md#imaplib-debug-tracing).
Failures are :class:`~.server_errors.MailServerError` with ``protocol == "imap"``.
"""

from __future__ import annotations

import ast
import imaplib
import logging
import re
import socket
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from ..errors import ErrorCode
from ..plugin_host.providers import LoginMechanism, Security
from .chunked_send import sendall_chunked
from .netguard import connect_pinned
from .sasl import TOKEN_MECHANISMS, scrub, token_initial_response
from .server_errors import MailServerError, decode_text, log_failure, transport_error
from .server_login import ConnectPolicy, ServerLogin, plan_connection, refused_credentials
from .tls import client_ssl_context

__all__ = ["FolderInfo", "ImapProbe", "open_imap", "probe_imap"]

log = logging.getLogger(__name__)

PROTOCOL = "imap"

# Providers' wording when the account exists but IMAP access is switched off (Gmail, Zoho,
# Outlook/Office 365 "authenticated but not connected", Gmail's web-login demands).
_IMAP_DISABLED = re.compile(
    r"\bIMAP\b[^.;]{0,60}\b(disabled|not enabled|not allowed|not permitted|turned off)\b"
    r"|\b(disabled|not enabled)\b[^.;]{0,40}\bIMAP\b"
    r"|\benable\b[^.;]{0,40}\bIMAP\b"
    r"|web ?login required|log ?in via your web browser"
    r"|authenticated but not connected",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class FolderInfo:
    """One mailbox from LIST: its name (decoded from modified UTF-7), flags (``\\Sent``,
    ``\\HasNoChildren``…) and hierarchy delimiter (``""`` for a flat namespace)."""

    name: str
    flags: tuple[str, ...]
    delimiter: str

    def has_flag(self, flag: str) -> bool:
        """Whether the folder carries ``flag`` (case-insensitive, e.g. ``"\\\\Sent"``)."""
        return flag.lower() in (f.lower() for f in self.flags)


@dataclass(frozen=True, slots=True)
class ImapProbe:
    """What :func:`probe_imap` learnt about a server and mailbox.

    :param capabilities: capabilities after login, upper case (``"IDLE"``, ``"CONDSTORE"``…).
    :param auth_mechanisms: SASL mechanisms offered before login (from ``AUTH=...``).
    :param folders: every folder from LIST (with special-use flags when supported).
    :param sent_folder: the folder flagged ``\\Sent`` (RFC 6154), or ``None``.
    """

    capabilities: tuple[str, ...]
    auth_mechanisms: tuple[str, ...]
    folders: tuple[FolderInfo, ...]
    sent_folder: str | None

    def has(self, capability: str) -> bool:
        """Whether the server advertised ``capability`` after login."""
        return capability.upper() in self.capabilities

    @property
    def idle(self) -> bool:
        return self.has("IDLE")

    @property
    def condstore(self) -> bool:
        return self.has("CONDSTORE") or self.has("QRESYNC")  # QRESYNC implies CONDSTORE

    @property
    def qresync(self) -> bool:
        return self.has("QRESYNC")

    @property
    def special_use(self) -> bool:
        return self.has("SPECIAL-USE")


class _PinnedIMAP4(imaplib.IMAP4):
    """imaplib connection over a socket we open (to a vetted address) and, for implicit TLS,
    wrap with our context; ``self.host`` stays the name, so STARTTLS checks it too."""

    def __init__(self, host: str, port: int, connect: Callable[[], socket.socket],
                 tls_context: ssl.SSLContext | None) -> None:
        self._pinned_connect = connect
        self._implicit_tls = tls_context
        super().__init__(host, port)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock = self._pinned_connect()
        if self._implicit_tls is None:
            return sock
        try:
            return self._implicit_tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise

    def send(self, data: bytes) -> None:  # type: ignore[override]  # imaplib sends bytes only
        sys.audit("imaplib.send", self, data)
        sendall_chunked(self.sock, data)


class _PinnedIMAPClient(IMAPClient):  # type: ignore[misc]  # imapclient ships no types: Any
    """IMAPClient whose imaplib object is a :class:`_PinnedIMAP4`, with debug tracing off."""

    def __init__(self, host: str, port: int, *, connect: Callable[[], socket.socket],
                 ssl_context: ssl.SSLContext, implicit_tls: bool, timeout: float) -> None:
        self._pinned_connect = connect
        super().__init__(host, port, ssl=implicit_tls, ssl_context=ssl_context, timeout=timeout)
        self._imap.debug = 0  # IMAPClient sets 5: repr() of every response, 58 % of fetch CPU

    def _create_IMAP4(self) -> imaplib.IMAP4:  # imapclient's name
        tls = self.ssl_context if self.ssl else None
        return _PinnedIMAP4(self.host, self.port, self._pinned_connect, tls)


class _TokenSasl:
    """SASL XOAUTH2 or OAUTHBEARER (RFC 7628): send the token once; answer an error
    challenge as the mechanism requires (XOAUTH2: an empty line, OAUTHBEARER: ``%x01``) and
    keep the challenge, which explains the refusal."""

    def __init__(self, mechanism: LoginMechanism, username: str, token: str) -> None:
        self._initial, self._error_answer = token_initial_response(mechanism, username, token)
        self.sent = False
        self.error_challenge = b""

    def __call__(self, challenge: bytes) -> str:
        if not self.sent:
            self.sent = True
            return self._initial
        self.error_challenge = challenge
        return self._error_answer


def open_imap(login: ServerLogin, policy: ConnectPolicy) -> IMAPClient:
    """Connect, secure and log in; return the logged-in client (the caller logs out).

    TCP goes to an address vetted by the SSRF guard; TLS (implicit, or STARTTLS which must be
    offered) verifies the certificate against ``login.host``; every network step is limited
    to ``policy.timeout`` seconds, which stays the socket timeout of the returned client.
    Blocking: run it in a thread from async code.

    :raises MailServerError: ``INVALID_INPUT``, ``HOST_NOT_ALLOWED``, ``CONNECTION_FAILED``,
        ``TLS_FAILED``, ``TIMEOUT``, ``AUTHENTICATION_FAILED`` or ``IMAP_DISABLED``; its
        message and ``server_message`` never contain the secret.
    """
    return _connect(login, policy)[0]


def probe_imap(login: ServerLogin, policy: ConnectPolicy) -> ImapProbe:
    """Verify an account: connect, TLS, login, CAPABILITY, LIST (with SPECIAL-USE), LOGOUT.

    :raises MailServerError: as :func:`open_imap`.
    """
    client, pre_login = _connect(login, policy)
    stage = "listing folders"
    try:
        capabilities = tuple(_text(c).upper() for c in client.capabilities())
        special_use = "SPECIAL-USE" in capabilities
        folders = _list_folders(client, special_use)
    except Exception as exc:  # noqa: BLE001 - any failure becomes a typed MailServerError, logged by _map_error
        _quiet_shutdown(client)
        failure: MailServerError | None = _map_error(exc, login, policy, stage, client)
    else:
        failure = None
    if failure is not None:
        raise failure  # outside the handler: no __context__ holding unscrubbed server text
    try:
        client.logout()
    except (imaplib.IMAP4.error, OSError):  # verified already; a rude goodbye changes nothing
        _quiet_shutdown(client)
    sent = next((f.name for f in folders if f.has_flag("\\Sent")), None)
    auth = tuple(c[5:] for c in pre_login if c.startswith("AUTH="))
    return ImapProbe(capabilities, auth, folders, sent)


def _connect(login: ServerLogin, policy: ConnectPolicy) -> tuple[IMAPClient, tuple[str, ...]]:
    """Open and log in; also return the capabilities seen before login."""
    stage = "checking the server address"
    client: _PinnedIMAPClient | None = None
    try:
        host, addresses = plan_connection(login, policy)
        context = client_ssl_context(policy.extra_ca_file)
        stage = "connecting"
        client = _PinnedIMAPClient(
            host, login.port, connect=partial(connect_pinned, addresses, policy.timeout),
            ssl_context=context, implicit_tls=login.security is Security.SSL,
            timeout=policy.timeout,
        )
        if login.security is Security.STARTTLS:
            stage = "starting TLS"
            if "STARTTLS" not in client._imap.capabilities:
                raise MailServerError(
                    ErrorCode.TLS_FAILED,
                    f"The IMAP server {login.endpoint} does not offer STARTTLS, so the "
                    "connection cannot be secured and the password was not sent. Choose "
                    "security SSL (usually port 993), or check the port.",
                    protocol=PROTOCOL,
                )
            client.starttls(context)  # imaplib re-reads CAPABILITY over TLS
        pre_login = tuple(c.upper() for c in client._imap.capabilities)
        stage = "logging in"
        _login(client, login, pre_login)
        # imaplib keeps its last commands (a LOGIN line included) for print_log(): drop them.
        if isinstance(getattr(client._imap, "_cmd_log", None), dict):
            client._imap._cmd_log.clear()
    except Exception as exc:  # noqa: BLE001 - any failure becomes a typed MailServerError, logged by _map_error
        if client is not None:
            _quiet_shutdown(client)
        failure: MailServerError | None = _map_error(exc, login, policy, stage, client)
    else:
        failure = None
    if failure is not None:
        raise failure  # outside the handler: no __context__ holding unscrubbed server text
    assert client is not None
    log.debug("imap %s: logged in as %s", login.endpoint, login.username)
    return client, pre_login


def _login(client: _PinnedIMAPClient, login: ServerLogin, capabilities: tuple[str, ...]) -> None:
    secret = login.secret.reveal()
    if login.mechanism in TOKEN_MECHANISMS:
        mech = _TokenSasl(login.mechanism, login.username, secret)
        try:
            client.sasl_login(login.mechanism.value, mech)
        except LoginError as exc:
            detail = mech.error_challenge.decode("utf-8", "replace")
            raise LoginError(f"{exc} {detail}".strip()) from None
        return
    if "LOGINDISABLED" in capabilities:
        raise MailServerError(
            ErrorCode.INVALID_INPUT,
            f"The IMAP server {login.endpoint} does not accept passwords on this connection: "
            "choose security SSL or STARTTLS.",
            protocol=PROTOCOL, field="security",
        )
    if (login.username + secret).isascii():
        client.login(login.username, secret)
    elif "AUTH=PLAIN" in capabilities:  # LOGIN is ASCII-only; SASL PLAIN carries UTF-8
        client.plain_login(login.username, secret)
    else:
        raise MailServerError(
            ErrorCode.AUTHENTICATION_FAILED,
            "The IMAP server cannot accept a username or password with non-ASCII characters.",
            protocol=PROTOCOL,
        )


def _list_folders(client: IMAPClient, special_use: bool) -> tuple[FolderInfo, ...]:
    if special_use:  # RFC 6154: RETURN (SPECIAL-USE) guarantees the \Sent etc. attributes
        imap = client._imap
        typ, data = imap._simple_command("LIST", '""', '"*"', "RETURN", "(SPECIAL-USE)")
        client._checkok("list", typ, data)
        typ, data = imap._untagged_response(typ, data, "LIST")
        rows = client._proc_folder_list(data)
    else:
        rows = client.list_folders()
    return tuple(
        FolderInfo(name=str(name), flags=tuple(_text(f) for f in flags),
                   delimiter=_text(delimiter) if delimiter else "")
        for flags, delimiter, name in rows
    )


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)


def _quiet_shutdown(client: IMAPClient) -> None:
    try:
        client.shutdown()
    except (OSError, imaplib.IMAP4.error, AttributeError):
        pass


def _server_text(exc: BaseException, client: IMAPClient | None, login: ServerLogin) -> str:
    """The server's words about a failure: the error text plus any ALERT/NO/BYE it sent."""
    first = exc.args[0] if exc.args and isinstance(exc.args[0], bytes) else str(exc)
    if isinstance(first, str):
        first = re.sub(r"^\w+ failed: ", "", first)
        if re.fullmatch(r"b(['\"]).*\1", first, re.DOTALL):  # imaplib's str(bytes) of the reply
            first = ast.literal_eval(first)
    parts: list[bytes | str | None] = []
    if client is not None:  # untagged first: an [ALERT] explains the tagged NO after it
        untagged = getattr(client._imap, "untagged_responses", {})
        for key in ("ALERT", "NO", "BAD", "BYE"):
            parts.extend(untagged.get(key, []))
    return scrub(decode_text([*parts, first]), login)


def _map_error(exc: BaseException, login: ServerLogin, policy: ConnectPolicy, stage: str,
               client: IMAPClient | None) -> MailServerError:
    error = _classify(exc, login, policy, stage, client)
    log_failure(PROTOCOL, login, stage, exc, error)
    return error


# Refusals of a login that say nothing about the password (RFC 5530 codes, and Gmail's
# wording): retried later, never NEEDS_REAUTH.
_TEMPORARY_REFUSAL = re.compile(
    r"\[(UNAVAILABLE|LIMIT|INUSE|SERVERBUG)\]|too many (simultaneous )?connections", re.IGNORECASE
)


def _broken_connection(exc: BaseException) -> BaseException | None:
    """The socket error or IMAP abort behind ``exc``, if any: imapclient turns every error
    of LOGIN, a dropped connection included, into a ``LoginError``."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (OSError, imaplib.IMAP4.abort)):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _classify(exc: BaseException, login: ServerLogin, policy: ConnectPolicy, stage: str,
              client: IMAPClient | None) -> MailServerError:
    where = login.endpoint
    if isinstance(exc, imaplib.IMAP4.error):  # a cut during LOGIN is not a refused password
        exc = _broken_connection(exc) or exc
    mapped = transport_error(exc, protocol=PROTOCOL, login=login, policy=policy)
    if mapped is not None:
        return mapped
    if not isinstance(exc, imaplib.IMAP4.error):
        raise exc  # a bug, not a server failure: let it surface as one
    text = _server_text(exc, client, login)
    if _IMAP_DISABLED.search(text):
        return MailServerError(
            ErrorCode.IMAP_DISABLED,
            f"The IMAP server {where} refused IMAP access for this account: IMAP may be "
            "switched off in the account, or the provider wants a sign-in on its website "
            "first. Enable IMAP access in the mail provider's settings, then try again.",
            protocol=PROTOCOL, server_message=text,
        )
    if stage == "starting TLS":  # e.g. "NO STARTTLS unavailable": never go on in plaintext
        return MailServerError(
            ErrorCode.TLS_FAILED,
            f"The IMAP server {where} refused to start TLS, so the password was not sent.",
            protocol=PROTOCOL, server_message=text,
        )
    if stage == "logging in" and not isinstance(exc, imaplib.IMAP4.abort):
        if _TEMPORARY_REFUSAL.search(text):  # a server-side problem, not the password
            return MailServerError(
                ErrorCode.CONNECTION_FAILED,
                f"The IMAP server {where} cannot log anyone in right now; try again later.",
                protocol=PROTOCOL, server_message=text,
            )
        return MailServerError(
            ErrorCode.AUTHENTICATION_FAILED,
            f"The IMAP server refused {refused_credentials(login)}.",
            protocol=PROTOCOL, server_message=text,
        )
    if isinstance(exc, imaplib.IMAP4.abort):
        message = f"The IMAP server {where} closed the connection while {stage}."
    else:
        message = f"The IMAP server {where} answered unexpectedly while {stage}."
    return MailServerError(
        ErrorCode.CONNECTION_FAILED,
        f"{message} Check that the port is an IMAP port, and try again.",
        protocol=PROTOCOL, server_message=text,
    )


def close_quietly(client: IMAPClient) -> None:
    """Log out, or at least close the socket when the connection is already broken."""
    try:
        client.logout()
    except Exception:  # the connection may already be dead: close the socket
        log.debug("IMAP logout failed", exc_info=True)
        try:
            client.shutdown()
        except Exception:
            log.debug("IMAP socket close failed", exc_info=True)
