"""The plugin contract: every hook a provider plugin may implement.

A provider plugin is a module (or object) with functions marked ``@hookimpl`` whose names are
the hooks below. Hooks are synchronous and declarative: plugins describe a provider, the core
does all network and database work. pluggy passes arguments by keyword only.

Hooks that answer "who handles this?" are ``firstresult``: the first implementation that
returns something other than ``None`` wins, so every implementation begins with
``if provider != MY_KEY: return None``. The core registers a default implementation of each
such hook marked ``trylast``, so a plugin only implements what differs from the default.
Static facts (servers, username format, folder names, whether the SMTP server files sent
mail, OAuth server) are declared as data in ``ProviderSpec``, which those defaults read;
hooks are for what a plugin computes (Zoho's servers per region, a hint per auth kind).

Third-party plugins are discovered through the entry-point group ``salesinbox.providers``.
"""

from __future__ import annotations

from collections.abc import Mapping

import pluggy

from .providers import (
    AuthFailureContext,
    AuthKind,
    FolderRole,
    LoginPlan,
    ProviderEndpoints,
    ProviderSpec,
)

PROJECT_NAME = "salesinbox"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def salesinbox_providers() -> list[ProviderSpec]:  # type: ignore[empty-body]  # a contract, no body
    """Declare the mail providers this plugin adds.

    Every plugin that adds a provider implements this. All results are collected (this is not
    ``firstresult``); the core checks that keys are unique across plugins.

    A provider whose users may connect with "Sign in with …" (OAuth2) sets
    ``ProviderSpec.oauth`` to an :class:`~salesinbox.core.plugin_host.providers.OAuthServer`: its
    authorisation and token endpoints (``https://``; revocation and userinfo optional), the
    scopes for IMAP, SMTP, a refresh token and the address, the SASL mechanism (XOAUTH2 or
    OAUTHBEARER), extra consent-URL parameters (not the ones the core sets: ``client_id``,
    ``redirect_uri``, ``scope``, ``state``…), the claims that hold the mailbox address, and,
    when the URLs hold ``{tenant}``, the default tenant. Such a provider must list
    ``AuthKind.XOAUTH2`` in ``auth_kinds``. The organisation's client id and secret are not
    part of the declaration: an admin enters them (``setOAuthClient``) and may override the
    endpoints and the tenant. A malformed declaration is a ``ProviderDeclarationError``.

    :return: a list of :class:`ProviderSpec`, usually with one element.
    """


@hookspec(firstresult=True)
def salesinbox_resolve_endpoints(
    provider: str, email: str, options: Mapping[str, str]
) -> ProviderEndpoints | None:
    """Resolve the incoming and outgoing servers for an account of ``provider``.

    Implement this when the servers depend on the account, as Zoho's do on the data-centre
    region and on personal vs organisation accounts. The core's ``trylast`` default returns
    the preset ``imap``/``smtp`` of the provider's :class:`ProviderSpec`, or ``None`` when the
    provider has no presets (the user gives the servers).

    First non-None result wins.

    :param provider: the provider key of the account.
    :param email: the account's email address, already normalised (trimmed, lower-case domain).
    :param options: the values of the provider's :class:`ProviderOption` questions. When
        called through the core's ``ProviderRegistry`` they are validated against the
        choices and every option is present (defaults filled in); read them with
        ``options.get(name, default)`` all the same.
    :return: the endpoints, or ``None`` when this plugin does not handle ``provider``.
    """


@hookspec(firstresult=True)
def salesinbox_login_plan(
    provider: str, email: str, auth_kind: AuthKind, protocol: str
) -> LoginPlan | None:
    """Say how to log in to ``provider``'s IMAP or SMTP server.

    The core's ``trylast`` default uses SASL XOAUTH2 for ``AuthKind.XOAUTH2`` and LOGIN
    otherwise, with the full email address as username. Implement it when the username or the
    mechanism differs. Refusing an auth kind is done by leaving it out of
    ``ProviderSpec.auth_kinds``, not here.

    First non-None result wins.

    :param provider: the provider key of the account.
    :param email: the account's email address.
    :param auth_kind: how the user chose to log in.
    :param protocol: ``"imap"`` or ``"smtp"``.
    :return: the mechanism and username, or ``None`` when this plugin does not handle it.
    """


@hookspec(firstresult=True)
def salesinbox_folder_names(provider: str, role: FolderRole) -> list[str] | None:
    """Name the folders that may hold ``role`` on ``provider``'s server, most likely first.

    Used only when the server does not announce SPECIAL-USE flags (RFC 6154) or announces
    none for this role. A provider whose names are fixed declares them as data in
    ``ProviderSpec.folder_names``, which the core's ``trylast`` default answers from; roles
    not declared there get common names ("Sent", "Sent Items", "Sent Messages" for SENT;
    "INBOX" for INBOX…). Implement this hook only when the names must be computed.

    First non-None result wins.

    :param provider: the provider key of the account.
    :param role: the folder role to look for.
    :return: candidate folder names, or ``None`` when this plugin does not handle it.
    """


@hookspec(firstresult=True)
def salesinbox_stores_sent_mail(provider: str) -> bool | None:
    """Say whether the provider saves a copy of mail sent through its SMTP server itself.

    When ``True`` the core does not APPEND a copy to the Sent folder after sending (Gmail
    stores it; appending would create a duplicate). A provider declares this fact as data in
    ``ProviderSpec.stores_sent_mail``, which the core's ``trylast`` default answers from
    (``False`` for a provider nobody declares). Implement this hook only when the answer must
    be computed.

    First non-None result wins.

    :param provider: the provider key of the account.
    :return: ``True``/``False``, or ``None`` when this plugin does not handle ``provider``.
    """


@hookspec(firstresult=True)
def salesinbox_auth_failure_hint(context: AuthFailureContext) -> str | None:
    """Give the human sentence that tells a user how to fix a refused login.

    Shown with the ``AUTHENTICATION_FAILED`` error, so it must name the fix (e.g. "Gmail needs
    an app password when 2-Step Verification is on: <link>"). It must not repeat any secret.
    The core's ``trylast`` default says to check the username and password.

    First non-None result wins.

    :param context: the provider, auth kind, protocol and the server's refusal text.
    :return: the hint, or ``None`` when this plugin does not handle ``context.provider``.
    """
