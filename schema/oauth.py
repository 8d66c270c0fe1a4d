"""OAuth sign-in: what providers declare, and the organisation's clients (admins set them)."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.utils.str_converters import to_camel_case

from salesinbox.core.oauth import oauth_clients
from salesinbox.core.oauth.oauth_clients import OAuthClientInput, OAuthClientSettings
from salesinbox.core.plugin_host.providers import OAuthMechanism, OAuthServer

from .context import Info

OAuthMechanismEnum = strawberry.enum(
    OAuthMechanism, name="OAuthMechanism", description="The SASL mechanism an OAuth token is sent with."
)

_CONFIGURED = "oauth_configured_providers"


@strawberry.type(description="One extra parameter of the consent URL, e.g. access_type = offline.")
class OAuthParam:
    name: str
    value: str


@strawberry.type(
    name="ProviderOAuth",
    description="A provider's OAuth2 server as its plugin declares it: users may connect with "
    "“Sign in with …” once an admin has set up the organisation's client (configured).",
)
class ProviderOAuthType:
    provider: strawberry.Private[str]
    authorization_url: str = strawberry.field(description="May hold {tenant}, see defaultTenant.")
    token_url: str
    revocation_url: str | None
    userinfo_url: str | None
    scopes: list[str]
    mechanism: OAuthMechanismEnum  # type: ignore[valid-type]
    authorization_params: list[OAuthParam]
    address_claims: list[str] = strawberry.field(
        description="ID-token (then userinfo) claims holding the mailbox address, first present wins."
    )
    default_tenant: str | None = strawberry.field(
        description="The value of {tenant} in the URLs unless an admin sets another."
    )
    setup_url: str | None = strawberry.field(description="Where an admin registers the OAuth client.")

    @classmethod
    def from_server(cls, provider: str, server: OAuthServer) -> ProviderOAuthType:
        return cls(
            provider=provider,
            authorization_url=server.authorization_url,
            token_url=server.token_url,
            revocation_url=server.revocation_url,
            userinfo_url=server.userinfo_url,
            scopes=list(server.scopes),
            mechanism=server.mechanism,
            authorization_params=[OAuthParam(name=n, value=v) for n, v in server.authorization_params],
            address_claims=list(server.address_claims),
            default_tenant=server.default_tenant,
            setup_url=server.setup_url,
        )

    @strawberry.field(description="Whether an admin has set up the organisation's client for it.")
    async def configured(self, info: Info) -> bool:
        extras = info.context.extras
        if _CONFIGURED not in extras:  # one query per request, however many providers
            extras[_CONFIGURED] = await oauth_clients.configured_providers(info.context.user.organisation_id)
        return self.provider in extras[_CONFIGURED]

    @strawberry.field(description="The redirect URI to register with the provider.")
    def redirect_url(self, info: Info) -> str:
        return oauth_clients.redirect_url(info.context.services.settings)


@strawberry.type(
    name="OAuthClient",
    description="The organisation's OAuth client at a provider, as it applies (admins only). "
    "The client secret is never shown.",
)
class OAuthClientType:
    provider: str
    client_id: str
    secret_set: bool = strawberry.field(description="Whether a client secret is stored.")
    authorization_url: str
    token_url: str
    revocation_url: str | None
    userinfo_url: str | None
    tenant: str | None = strawberry.field(description="The tenant filled into the URLs, if they have one.")
    overrides: list[str] = strawberry.field(
        description="The settings the admin changed from the provider's declaration (tokenUrl, tenant…)."
    )
    redirect_url: str = strawberry.field(
        description="The redirect URI to register with the provider: SALESINBOX_PUBLIC_URL + /oauth/callback."
    )
    frontend_redirect_url: str | None
    updated_at: datetime

    @classmethod
    def from_settings(cls, row: OAuthClientSettings) -> OAuthClientType:
        return cls(
            provider=row.provider,
            client_id=row.client_id,
            secret_set=row.secret_set,
            authorization_url=row.authorization_url,
            token_url=row.token_url,
            revocation_url=row.revocation_url,
            userinfo_url=row.userinfo_url,
            tenant=row.tenant,
            overrides=[to_camel_case(name) for name in row.overrides],
            redirect_url=row.redirect_url,
            frontend_redirect_url=row.frontend_redirect_url,
            updated_at=row.updated_at,
        )


@strawberry.input(
    name="OAuthClientInput",
    description="The organisation's OAuth client at a provider. Empty overrides use the provider's "
    "declaration; leave clientSecret out to keep the stored secret.",
)
class OAuthClientInputType:
    provider: str
    client_id: str
    client_secret: str | None = None
    authorization_url: str | None = None
    token_url: str | None = None
    revocation_url: str | None = None
    userinfo_url: str | None = None
    tenant: str | None = None
    frontend_redirect_url: str | None = strawberry.field(
        default=None, description="The frontend page the browser returns to after the consent."
    )


@strawberry.type
class OAuthQueries:
    @strawberry.field(description="The organisation's OAuth clients, one per provider (admins).")
    async def oauth_clients(self, info: Info) -> list[OAuthClientType]:
        services = info.context.services
        rows = await oauth_clients.list_oauth_clients(
            info.context.user, registry=services.providers, settings=services.settings
        )
        return [OAuthClientType.from_settings(row) for row in rows]


@strawberry.type
class OAuthMutations:
    @strawberry.mutation(
        name="setOAuthClient", description="Set the organisation's OAuth client for a provider (admins)."
    )
    async def set_oauth_client(self, info: Info, input: OAuthClientInputType) -> OAuthClientType:
        services = info.context.services
        row = await oauth_clients.set_oauth_client(
            info.context.user,
            OAuthClientInput(
                provider=input.provider, client_id=input.client_id, client_secret=input.client_secret,
                authorization_url=input.authorization_url, token_url=input.token_url,
                revocation_url=input.revocation_url, userinfo_url=input.userinfo_url,
                tenant=input.tenant, frontend_redirect_url=input.frontend_redirect_url,
            ),
            registry=services.providers, secrets=services.secrets, settings=services.settings,
        )
        return OAuthClientType.from_settings(row)

    @strawberry.mutation(
        name="deleteOAuthClient",
        description="Remove the organisation's OAuth client for a provider (admins); false when there was none.",
    )
    async def delete_oauth_client(self, info: Info, provider: str) -> bool:
        return await oauth_clients.delete_oauth_client(info.context.user, provider)
