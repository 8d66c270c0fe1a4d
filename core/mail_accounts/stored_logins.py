"""An account's two logins (IMAP and SMTP) as stored, with their secrets decrypted: only for
code that connects. :func:`stored_logins` also says which servers are the provider's preset
(errors about those name the provider) and which SASL mechanism an access token uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..credentials import SecretBox
from ..db.models import MailAccount
from ..errors import SalesInboxError
from ..plugin_host.provider_registry import ProviderRegistry
from ..plugin_host.providers import AuthKind, LoginMechanism, OAuthMechanism, token_mechanism
from ..transport.server_login import ServerLogin

__all__ = ["AccountServers", "declared_mechanism", "login_mechanism", "preset_protocols", "stored_logins"]


@dataclass(frozen=True)
class AccountServers:
    """The two logins an account uses, before verification."""

    imap: ServerLogin
    smtp: ServerLogin
    auth_kind: AuthKind
    smtp_same_credentials: bool
    #: the protocols ("imap", "smtp") whose server is the provider's preset, not typed by
    #: the user: errors about them name the provider, not a form field
    preset: frozenset[str] = frozenset()


def stored_logins(
    account: MailAccount, secrets: SecretBox, registry: ProviderRegistry | None = None
) -> AccountServers:
    """The account's logins with decrypted secrets: only for code that connects.

    An access token logs in with the mechanism the provider's OAuth declaration names
    (OAUTHBEARER or XOAUTH2), looked up in ``registry``; XOAUTH2 without one."""
    declared = declared_mechanism(registry, account.provider)
    imap = ServerLogin(
        host=account.imap_host,
        port=account.imap_port,
        security=account.imap_security,
        username=account.imap_username,
        secret=secrets.decrypt(account.imap_secret),
        mechanism=login_mechanism(account.imap_auth_kind, declared),
    )
    smtp = ServerLogin(
        host=account.smtp_host,
        port=account.smtp_port,
        security=account.smtp_security,
        username=account.smtp_username,
        secret=secrets.decrypt(account.smtp_secret),
        mechanism=login_mechanism(account.smtp_auth_kind, declared),
    )
    return AccountServers(imap, smtp, account.imap_auth_kind, account.smtp_same_credentials,
                          preset=preset_protocols(registry, account))


def preset_protocols(registry: ProviderRegistry | None, account: MailAccount) -> frozenset[str]:
    """The protocols whose stored server is still the provider's preset for this account."""
    if registry is None:
        return frozenset()
    try:
        endpoints = registry.resolve_endpoints(account.provider, account.email, account.provider_options)
    except SalesInboxError:  # the plugin is gone, or its options changed
        return frozenset()
    if endpoints is None:
        return frozenset()
    stored = {"imap": (account.imap_host, account.imap_port), "smtp": (account.smtp_host, account.smtp_port)}
    declared = {"imap": endpoints.imap, "smtp": endpoints.smtp}
    return frozenset(p for p, (host, port) in stored.items()
                     if (declared[p].host, declared[p].port) == (host, port))


def login_mechanism(kind: AuthKind, declared: OAuthMechanism | None = None) -> LoginMechanism:
    """How a login of ``kind`` authenticates: LOGIN for passwords; for an access token, the
    mechanism the provider declared (XOAUTH2 when none)."""
    return token_mechanism(declared) if kind == AuthKind.XOAUTH2 else LoginMechanism.LOGIN


def declared_mechanism(registry: ProviderRegistry | None, provider: str) -> OAuthMechanism | None:
    """The OAuth mechanism ``provider`` declares; ``None`` without a registry, for a
    provider whose plugin is gone, or one that declares no OAuth server."""
    if registry is None:
        return None
    try:
        oauth = registry.get(provider).oauth
    except SalesInboxError:
        return None
    return oauth.mechanism if oauth is not None else None
