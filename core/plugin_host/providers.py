"""Value types that describe a mail provider: what a provider plugin declares and returns.

These are plain frozen dataclasses and enums so that plugins (including third-party ones)
depend on nothing but this module, re-exported from :mod:`salesinbox.core`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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
    OAUTHBEARER = "OAUTHBEARER"  #: SASL OAUTHBEARER (RFC 7628) with username + access token


class OAuthMechanism(StrEnum):
    """The SASL mechanism that presents an OAuth2 access token to IMAP and SMTP."""

    XOAUTH2 = "XOAUTH2"  #: Google's and Microsoft's mechanism (``user=…^Aauth=Bearer …``)
    OAUTHBEARER = "OAUTHBEARER"  #: the standard one, RFC 7628


def token_mechanism(declared: OAuthMechanism | None) -> LoginMechanism:
    """How an access token logs in, given the provider's declared :class:`OAuthMechanism`
    (``None``: no declaration, XOAUTH2 as Google and Microsoft use)."""
    if declared == OAuthMechanism.OAUTHBEARER:
        return LoginMechanism.OAUTHBEARER
    return LoginMechanism.XOAUTH2


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


#: the placeholder an :class:`OAuthServer` URL may hold for a Microsoft-style tenant
TENANT_PLACEHOLDER = "{tenant}"


@dataclass(frozen=True, slots=True)
class OAuthServer:
    """The OAuth2 authorisation server that signs users in to a provider's IMAP and SMTP.

    Declared as ``ProviderSpec.oauth``. The organisation registers its own OAuth client with
    this server (client id and secret, entered by an admin); the core runs the consent flow,
    stores and refreshes the tokens, and logs in with :attr:`mechanism`.

    :param authorization_url: where the user's browser is sent to consent (``https://``).
    :param token_url: where codes and refresh tokens are exchanged for access tokens.
    :param scopes: every scope to ask for: IMAP and SMTP access, the scope that yields a
        refresh token when the server needs one (Microsoft's ``offline_access``), and the
        OpenID scopes that reveal the mailbox address (``openid``, ``email``).
    :param mechanism: the SASL mechanism the servers accept the token with.
    :param revocation_url: the RFC 7009 endpoint to revoke a token when an account is
        removed, or ``None`` when the server has none.
    :param userinfo_url: the OpenID Connect userinfo endpoint, asked for the address when
        the ID token carries none of :attr:`address_claims`; ``None`` when there is none
        usable with these scopes.
    :param authorization_params: extra query parameters of the consent URL, as
        ``(name, value)`` pairs (Google: ``access_type=offline``, ``prompt=consent`` to get
        a refresh token every time).
    :param address_claims: the claims that hold the mailbox address, in the ID token then
        in the userinfo answer, first present wins (``email``; Microsoft also
        ``preferred_username``).
    :param default_tenant: the value of ``{tenant}`` in the URLs (Microsoft: ``common``,
        ``organizations``, ``consumers`` or a tenant id/domain); an admin may set another.
        Required when a URL holds ``{tenant}``, and ``None`` otherwise.
    :param setup_url: where an admin registers the OAuth client (a console or a guide).
    """

    authorization_url: str
    token_url: str
    scopes: tuple[str, ...]
    mechanism: OAuthMechanism = OAuthMechanism.XOAUTH2
    revocation_url: str | None = None
    userinfo_url: str | None = None
    authorization_params: tuple[tuple[str, str], ...] = ()
    address_claims: tuple[str, ...] = ("email",)
    default_tenant: str | None = None
    setup_url: str | None = None

    def urls(self) -> dict[str, str | None]:
        """The endpoint URLs by field name, as declared (``{tenant}`` not filled in)."""
        return {
            "authorization_url": self.authorization_url,
            "token_url": self.token_url,
            "revocation_url": self.revocation_url,
            "userinfo_url": self.userinfo_url,
        }

    @property
    def has_tenant(self) -> bool:
        """Whether some URL holds the ``{tenant}`` placeholder."""
        return any(TENANT_PLACEHOLDER in url for url in self.urls().values() if url)


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
    :param oauth: the provider's OAuth2 authorisation server, when users may connect with
        "Sign in with …"; ``None`` when they paste a password or token. A provider that
        declares one accepts ``AuthKind.XOAUTH2`` (the token is stored under that kind).
    :param folder_names: the provider's own folder names per :class:`FolderRole`, most likely
        first (Gmail: ``{FolderRole.SENT: ("[Gmail]/Sent Mail", "[Google Mail]/Sent Mail")}``),
        tried when the server announces no SPECIAL-USE flag for the role; roles left out get
        the core's common names ("Sent", "Sent Items"…).
    :param stores_sent_mail: ``True`` when the provider's SMTP server files a copy of sent
        mail in the Sent folder itself (Gmail, Exchange): the core then does not APPEND one,
        which would be a duplicate.
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
    oauth: OAuthServer | None = None
    # A mapping is not hashable: left out of the hash (specs still compare by it).
    folder_names: Mapping[FolderRole, tuple[str, ...]] = field(default_factory=dict, hash=False)
    stores_sent_mail: bool = False


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
