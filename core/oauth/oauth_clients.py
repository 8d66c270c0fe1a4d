"""The organisation's OAuth clients: what an admin registers so users can "Sign in with …".

Each provider that declares an OAuth server (``ProviderSpec.oauth``) needs the
organisation's own client at that server: a client id and secret, which an admin creates at
Google Cloud Console or Microsoft Entra and enters here. The secret is stored encrypted with
the deployment's :class:`SecretBox`, like mail passwords, and is never returned: the API
says only whether one is set. An admin may also override the declared endpoints (a national
cloud, a self-hosted identity provider, a test server), set the tenant of Microsoft-style
URLs, and name the frontend page the browser returns to after the consent.

The redirect URL to register with the provider is derived from ``SALESINBOX_PUBLIC_URL``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from ..credentials import Secret, SecretBox
from ..crm.users import require_admin
from ..db.models import OAuthClient, User
from ..db.orm_values import column_values
from ..errors import ErrorCode, SalesInboxError, invalid_input
from ..plugin_host.provider_registry import PROVIDER_KEY_PATTERN, ProviderRegistry
from ..plugin_host.providers import OAuthServer
from ..settings import Settings
from .oauth_urls import check_admin_url, check_frontend_url, check_tenant, fill_tenant, split_url

log = logging.getLogger(__name__)

#: the path of this server that providers send the browser back to
CALLBACK_PATH = "/oauth/callback"
#: the endpoint fields an admin may override, in display order
ENDPOINT_FIELDS = ("authorization_url", "token_url", "revocation_url", "userinfo_url")
MAX_CLIENT_ID = 500
MAX_CLIENT_SECRET = 2000


def redirect_url(settings: Settings) -> str:
    """The URL to register as the OAuth client's redirect URI: ``<public_url>/oauth/callback``.

    :raises SalesInboxError: ``INVALID_INPUT`` naming ``SALESINBOX_PUBLIC_URL`` when it is
        not an absolute http(s) URL without query or fragment.
    """
    base = settings.public_url.strip().rstrip("/")
    parts = split_url(base)
    if parts is None or parts.query or "{" in base:
        raise invalid_input(
            f"SALESINBOX_PUBLIC_URL={settings.public_url!r} is not the server's public address: "
            "give an absolute URL such as https://crm.example.com (a path prefix is allowed).",
            field="SALESINBOX_PUBLIC_URL",
        )
    return base + CALLBACK_PATH


@dataclass(frozen=True, slots=True)
class OAuthClientInput:
    """What an admin sets for one provider. ``None`` (or blank) endpoint fields, tenant and
    frontend URL mean "the provider's declaration" / "none"; ``client_secret=None`` keeps
    the stored secret (a secret is never shown, so it cannot be sent back unchanged)."""

    provider: str
    client_id: str
    client_secret: str | None = None
    authorization_url: str | None = None
    token_url: str | None = None
    revocation_url: str | None = None
    userinfo_url: str | None = None
    tenant: str | None = None
    frontend_redirect_url: str | None = None


@dataclass(frozen=True, slots=True)
class OAuthClientSettings:
    """One provider's OAuth client as it applies: no secret, endpoints resolved.

    :param overrides: the names of the fields the admin set (``token_url``, ``tenant``…).
    """

    provider: str
    client_id: str
    secret_set: bool
    authorization_url: str
    token_url: str
    revocation_url: str | None
    userinfo_url: str | None
    tenant: str | None
    overrides: tuple[str, ...]
    redirect_url: str
    frontend_redirect_url: str | None
    updated_at: datetime
    server: OAuthServer


def _effective(row: OAuthClient, server: OAuthServer, settings: Settings) -> OAuthClientSettings:
    declared = server.urls()
    tenant = row.tenant or server.default_tenant
    urls = {name: getattr(row, name) or declared[name] for name in ENDPOINT_FIELDS}
    overrides = tuple(name for name in (*ENDPOINT_FIELDS, "tenant") if getattr(row, name))
    return OAuthClientSettings(
        provider=row.provider,
        client_id=row.client_id,
        secret_set=bool(row.client_secret),
        authorization_url=fill_tenant(urls["authorization_url"], tenant) or "",
        token_url=fill_tenant(urls["token_url"], tenant) or "",
        revocation_url=fill_tenant(urls["revocation_url"], tenant),
        userinfo_url=fill_tenant(urls["userinfo_url"], tenant),
        tenant=tenant if any(u and "{tenant}" in u for u in urls.values()) else None,
        overrides=overrides,
        redirect_url=redirect_url(settings),
        frontend_redirect_url=row.frontend_redirect_url,
        updated_at=row.updated_at,
        server=server,
    )


def _blank_to_none(value: str | None) -> str | None:
    return None if value is None or not value.strip() else value


def _clean_client_id(client_id: str) -> str:
    value = client_id.strip() if isinstance(client_id, str) else ""
    if not value or len(value) > MAX_CLIENT_ID or any(c.isspace() or ord(c) < 0x20 for c in value):
        raise invalid_input(
            f"Give the client id the provider showed when you created the OAuth client "
            f"(1 to {MAX_CLIENT_ID} characters, no spaces).",
            field="clientId",
        )
    return value


def _clean_client_secret(secret: str) -> Secret:
    value = secret.strip() if isinstance(secret, str) else ""
    if not value or len(value) > MAX_CLIENT_SECRET or any(ord(c) < 0x20 for c in value):
        raise invalid_input(
            "Give the client secret the provider showed when you created it (copy it again if "
            "in doubt), or leave clientSecret out to keep the stored one.",
            field="clientSecret",
        )
    return Secret(value)


def _validated(values: OAuthClientInput, server: OAuthServer, settings: Settings) -> dict[str, str | None]:
    """The columns to store for ``values``, or ``INVALID_INPUT`` naming the field at fault."""
    columns: dict[str, str | None] = {"client_id": _clean_client_id(values.client_id)}
    for name, field in zip(
        ENDPOINT_FIELDS, ("authorizationUrl", "tokenUrl", "revocationUrl", "userinfoUrl"), strict=True
    ):
        given = _blank_to_none(getattr(values, name))
        columns[name] = None if given is None else check_admin_url(given, field=field, settings=settings)
    tenant = _blank_to_none(values.tenant)
    columns["tenant"] = None if tenant is None else check_tenant(tenant)
    urls = [columns[name] or server.urls()[name] for name in ENDPOINT_FIELDS]
    uses_tenant = any(url and "{tenant}" in url for url in urls)
    if columns["tenant"] is not None and not uses_tenant:
        raise invalid_input(
            "This provider's URLs have no {tenant} part, so a tenant changes nothing: leave "
            "tenant empty, or put {tenant} in the URLs you override.",
            field="tenant",
        )
    if uses_tenant and columns["tenant"] is None and server.default_tenant is None:
        raise invalid_input(
            "The URLs hold {tenant} but the provider has no default tenant: give a tenant.",
            field="tenant",
        )
    frontend = _blank_to_none(values.frontend_redirect_url)
    columns["frontend_redirect_url"] = (
        None if frontend is None else check_frontend_url(frontend, field="frontendRedirectUrl")
    )
    return columns


async def set_oauth_client(
    actor: User,
    values: OAuthClientInput,
    *,
    registry: ProviderRegistry,
    secrets: SecretBox,
    settings: Settings,
) -> OAuthClientSettings:
    """Create or replace the organisation's OAuth client for ``values.provider`` (admins).

    Every field is replaced (a blank override goes back to the declaration) except the
    secret, which ``client_secret=None`` keeps. Nothing is saved when a check fails.

    :raises SalesInboxError: ``FORBIDDEN`` for a non-admin; ``UNKNOWN_PROVIDER``;
        ``INVALID_INPUT`` for a provider without OAuth (field ``provider``), a bad client id,
        secret, URL or tenant (field named), or a first setting without a secret;
        ``CONFLICT`` when another admin created it at the same moment.
    """
    require_admin(actor, "set up OAuth sign-in")
    server = registry.oauth_server(values.provider)
    columns = _validated(values, server, settings)
    secret = None if values.client_secret is None else _clean_client_secret(values.client_secret)
    try:
        async with in_transaction():
            row = await OAuthClient.get_or_none(
                organisation_id=actor.organisation_id, provider=values.provider
            )
            if row is None:
                if secret is None:
                    raise invalid_input(
                        "Give the client secret too: there is none stored for this provider yet.",
                        field="clientSecret",
                    )
                row = OAuthClient(organisation_id=actor.organisation_id, provider=values.provider)
            if secret is not None:
                row.client_secret = secrets.encrypt(secret)
            for name, value in columns.items():
                setattr(row, name, value)
            await row.save()
    except IntegrityError:
        raise SalesInboxError(
            ErrorCode.CONFLICT,
            "Another admin set this provider's OAuth client at the same moment: look at it and "
            "try again.",
            field="provider",
        ) from None
    log.info(
        "OAuth client for provider %s set by user %s (secret %s)",
        values.provider, actor.id, "replaced" if secret is not None else "kept",
    )
    return _effective(row, server, settings)


async def list_oauth_clients(
    actor: User, *, registry: ProviderRegistry, settings: Settings
) -> list[OAuthClientSettings]:
    """The organisation's OAuth clients, by provider key (admins).

    A client whose provider is no longer installed (or no longer offers OAuth) is left out:
    it is inert; :func:`delete_oauth_client` still removes it.

    :raises SalesInboxError: ``FORBIDDEN`` for a non-admin.
    """
    require_admin(actor, "see the OAuth sign-in settings")
    specs = registry.providers()
    rows = await OAuthClient.filter(organisation_id=actor.organisation_id).order_by("provider")
    return [
        _effective(row, specs[row.provider].oauth, settings)  # type: ignore[arg-type]
        for row in rows
        if row.provider in specs and specs[row.provider].oauth is not None
    ]


async def delete_oauth_client(actor: User, provider: str) -> bool:
    """Remove the organisation's OAuth client for ``provider`` (admins), even when the
    provider's plugin is gone. Users then can no longer connect with that sign-in.

    :return: whether there was one.
    :raises SalesInboxError: ``FORBIDDEN`` for a non-admin; ``INVALID_INPUT`` for text that
        is no provider key.
    """
    require_admin(actor, "remove OAuth sign-in settings")
    if not isinstance(provider, str) or not PROVIDER_KEY_PATTERN.fullmatch(provider):
        raise invalid_input(
            "Give a provider key such as gmail, outlook or office365 (see oauthClients).",
            field="provider",
        )
    deleted = await OAuthClient.filter(organisation_id=actor.organisation_id, provider=provider).delete()
    if deleted:
        log.info("OAuth client for provider %s removed by user %s", provider, actor.id)
    return bool(deleted)


async def configured_providers(organisation_id: int) -> set[str]:
    """The provider keys the organisation has an OAuth client for (what users may sign in to)."""
    rows = await column_values(OAuthClient.filter(organisation_id=organisation_id), "provider")
    return set(rows)


async def oauth_client_for_sign_in(
    organisation_id: int,
    provider: str,
    *,
    registry: ProviderRegistry,
    secrets: SecretBox,
    settings: Settings,
) -> tuple[OAuthClientSettings, Secret]:
    """The client settings and the decrypted secret, for the consent flow and token refresh.

    :raises SalesInboxError: ``UNKNOWN_PROVIDER``; ``INVALID_INPUT`` for a provider without
        OAuth; ``NOT_FOUND`` when no admin has set the provider's client up.
    """
    server = registry.oauth_server(provider)
    row = await OAuthClient.get_or_none(organisation_id=organisation_id, provider=provider)
    if row is None:
        raise SalesInboxError(
            ErrorCode.NOT_FOUND,
            f"Sign-in with {provider} is not set up: an admin must register the organisation's "
            "OAuth client first (setOAuthClient).",
            field="provider",
        )
    return _effective(row, server, settings), secrets.decrypt(row.client_secret)
