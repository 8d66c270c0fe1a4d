"""Typed, expected failures: the errors the API shows to clients with a code and a fix.

Anything that is not a :class:`SalesInboxError` is a bug: the API masks it as an internal
error and logs it. A message must never contain a secret.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Every error code a client may receive in ``extensions.code``."""

    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    INVALID_INPUT = "INVALID_INPUT"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    UNKNOWN_PROVIDER = "UNKNOWN_PROVIDER"
    PROVIDER_DISABLED = "PROVIDER_DISABLED"
    AUTHENTICATION_FAILED = "AUTHENTICATION_FAILED"
    CONNECTION_FAILED = "CONNECTION_FAILED"
    TLS_FAILED = "TLS_FAILED"
    TIMEOUT = "TIMEOUT"
    IMAP_DISABLED = "IMAP_DISABLED"
    HOST_NOT_ALLOWED = "HOST_NOT_ALLOWED"
    RECIPIENT_REFUSED = "RECIPIENT_REFUSED"
    MESSAGE_TOO_LARGE = "MESSAGE_TOO_LARGE"
    NO_MAIL_ACCOUNT = "NO_MAIL_ACCOUNT"
    SYNC_DISABLED = "SYNC_DISABLED"
    CONFLICT = "CONFLICT"
    QUERY_TOO_COSTLY = "QUERY_TOO_COSTLY"
    RESPONSE_TOO_LARGE = "RESPONSE_TOO_LARGE"
    #: the HTTP request is not a GraphQL request this server takes (body, content type, batch)
    BAD_REQUEST = "BAD_REQUEST"
    #: the request body or WebSocket message is over SALESINBOX_MAX_REQUEST_BYTES
    REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
    #: the user declined the "Sign in with …" consent (or the provider refused to ask)
    OAUTH_DENIED = "OAUTH_DENIED"
    #: the consent's return carries an unknown or already used state: start the sign-in again
    OAUTH_STATE_INVALID = "OAUTH_STATE_INVALID"
    #: the consent took longer than its 10 minutes: start the sign-in again
    OAUTH_STATE_EXPIRED = "OAUTH_STATE_EXPIRED"
    #: a reconnect signed in to another mailbox than the account's
    WRONG_MAILBOX = "WRONG_MAILBOX"
    #: the consent came back to another browser than the one that opened the sign-in link
    OAUTH_BROWSER_MISMATCH = "OAUTH_BROWSER_MISMATCH"
    #: the mail server no longer has a stored message (deleted or moved since the last sync)
    MESSAGE_NOT_ON_SERVER = "MESSAGE_NOT_ON_SERVER"
    INTERNAL_ERROR = "INTERNAL_ERROR"


class SalesInboxError(Exception):
    """An expected failure with a stable code and a human message that names the fix.

    :param code: the machine-readable :class:`ErrorCode`.
    :param message: one or two sentences for a person: what is wrong and what to do.
    :param field: the input field at fault, when there is one (e.g. ``"email"``).
    """

    def __init__(self, code: ErrorCode, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    def __repr__(self) -> str:
        return f"SalesInboxError({self.code.value}, {self.message!r}, field={self.field!r})"


def invalid_input(message: str, *, field: str | None = None) -> SalesInboxError:
    """Build an ``INVALID_INPUT`` error for ``field``."""
    return SalesInboxError(ErrorCode.INVALID_INPUT, message, field=field)


def not_found(what: str) -> SalesInboxError:
    """Build a ``NOT_FOUND`` error that reveals nothing but the kind of thing sought."""
    return SalesInboxError(ErrorCode.NOT_FOUND, f"No such {what}, or you may not see it.")
