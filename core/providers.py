"""Value types that describe a mail provider: what a provider plugin declares and returns.

These are plain frozen dataclasses and enums so that plugins (including third-party ones)
depend on nothing but this module, re-exported from :mod:`salesinbox.core`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Security(StrEnum):
    """How a connection to a mail server is protected."""

    SSL = "SSL"  #: implicit TLS from the first byte (IMAPS 993, SMTPS 465)
    STARTTLS = "STARTTLS"  #: plain connect, then upgrade with STARTTLS (IMAP 143, submission 587)
    NONE = "NONE"  #: no TLS at all; refused unless an administrator allows plaintext


class AuthKind(StrEnum):
    """What secret the user gives to log in."""

    PASSWORD = "PASSWORD"  #: the account's normal password
    APP_PASSWORD = "APP_PASSWORD"  #: an app-specific password (needed when 2FA is on)
    XOAUTH2 = "XOAUTH2"  #: an OAuth2 access token, sent with SASL XOAUTH2


class LoginMechanism(StrEnum):
    """The IMAP/SMTP mechanism the core uses to authenticate."""

    LOGIN = "LOGIN"  #: IMAP LOGIN / SMTP AUTH PLAIN or LOGIN with username + secret
    XOAUTH2 = "XOAUTH2"  #: SASL XOAUTH2 with username + access token


class FolderRole(StrEnum):
    """The role of a mailbox folder, as SPECIAL-USE (RFC 6154) names them."""

    INBOX = "INBOX"
    SENT = "SENT"
    DRAFTS = "DRAFTS"
    TRASH = "TRASH"
    JUNK = "JUNK"
    ARCHIVE = "ARCHIVE"


class UsernameFormat(StrEnum):
    """How the login username derives from the email address."""

    EMAIL = "EMAIL"  #: the full email address (every preset provider)
    LOCAL_PART = "LOCAL_PART"  #: the part before the @
    CUSTOM = "CUSTOM"  #: the user types it (custom IMAP)


@dataclass(frozen=True, slots=True)
class ServerEndpoint:
    """One server to connect to: host, TCP port and transport security."""

    host: str
    port: int
    security: Security


@dataclass(frozen=True, slots=True)
class ProviderOption:
    """An extra question a provider asks when connecting (e.g. Zoho's data-centre region).

    :param name: the key the value is passed under in ``options`` to the endpoint hook.
    :param label: what a form shows the user.
    :param choices: the allowed values, as ``(value, label)`` pairs.
    :param default: the value used when the user gives none; one of ``choices``.
    """

    name: str
    label: str
    choices: tuple[tuple[str, str], ...]
    default: str


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """Everything a provider plugin declares about one mail service.

    :param key: stable identifier stored with each account (``gmail``, ``zoho_mail``…);
        lower case letters, digits and underscores.
    :param display_name: what users see ("Gmail", "Zoho Mail").
    :param imap: the default incoming server, or ``None`` when the user must give it.
    :param smtp: the default outgoing server, or ``None`` when the user must give it.
    :param auth_kinds: the ways of logging in the provider accepts, preferred first.
    :param username_format: how the login name derives from the email address.
    :param domains: email domains the provider serves, used to suggest it from an address.
    :param options: extra questions (region, account type) that change the endpoints.
    :param app_password_url: where users learn to create an app-specific password.
    :param help_url: the provider's own page on IMAP/SMTP access.
    :param notes: a short sentence shown next to the preset (e.g. "enable IMAP first").
    :param user_supplies_servers: ``True`` when the user types server details (custom IMAP).
    """

    key: str
    display_name: str
    imap: ServerEndpoint | None
    smtp: ServerEndpoint | None
    auth_kinds: tuple[AuthKind, ...]
    username_format: UsernameFormat = UsernameFormat.EMAIL
    domains: tuple[str, ...] = ()
    options: tuple[ProviderOption, ...] = ()
    app_password_url: str | None = None
    help_url: str | None = None
    notes: str | None = None
    user_supplies_servers: bool = False


@dataclass(frozen=True, slots=True)
class ProviderEndpoints:
    """The resolved incoming and outgoing servers for one account."""

    imap: ServerEndpoint
    smtp: ServerEndpoint


@dataclass(frozen=True, slots=True)
class LoginPlan:
    """How to log in to one server: the mechanism and the username to present."""

    mechanism: LoginMechanism
    username: str


@dataclass(frozen=True, slots=True)
class AuthFailureContext:
    """What the core knows when a login is refused, passed to the hint hook.

    :param provider: the provider key of the account.
    :param auth_kind: how the user tried to log in.
    :param protocol: ``"imap"`` or ``"smtp"``.
    :param server_message: the server's refusal text, already stripped of secrets.
    """

    provider: str
    auth_kind: AuthKind
    protocol: str
    server_message: str = ""
