"""Mail provider presets as the plugins declare them, for the "connect an account" form."""

from __future__ import annotations

import strawberry

from salesinbox.core.plugin_host.providers import (
    AuthKind,
    ProviderOption,
    ProviderSpec,
    Security,
    ServerEndpoint,
    UsernameFormat,
)

from .context import Info
from .oauth import ProviderOAuthType

SecurityEnum = strawberry.enum(Security, name="Security", description="Transport security.")
AuthKindEnum = strawberry.enum(AuthKind, name="AuthKind", description="How a user logs in.")
UsernameFormatEnum = strawberry.enum(
    UsernameFormat, name="UsernameFormat", description="How the login name derives from the address."
)


@strawberry.type(description="A mail server: host, port and transport security.")
class Server:
    host: str
    port: int
    security: SecurityEnum  # type: ignore[valid-type]

    @classmethod
    def from_endpoint(cls, endpoint: ServerEndpoint) -> Server:
        return cls(host=endpoint.host, port=endpoint.port, security=endpoint.security)


@strawberry.type(description="One allowed value of a provider option.")
class OptionChoice:
    value: str
    label: str


@strawberry.type(name="ProviderOption", description="An extra question asked when connecting.")
class ProviderOptionType:
    name: str
    label: str
    choices: list[OptionChoice]
    default: str

    @classmethod
    def from_option(cls, option: ProviderOption) -> ProviderOptionType:
        return cls(
            name=option.name,
            label=option.label,
            choices=[OptionChoice(value=v, label=lbl) for v, lbl in option.choices],
            default=option.default,
        )


@strawberry.type(description="Incoming and outgoing servers resolved for one account.")
class ProviderServers:
    incoming: Server
    outgoing: Server


@strawberry.type(name="Provider", description="A mail provider preset, from its plugin.")
class ProviderType:
    key: str
    display_name: str
    incoming: Server | None
    outgoing: Server | None
    auth_kinds: list[AuthKindEnum]  # type: ignore[valid-type]
    username_format: UsernameFormatEnum  # type: ignore[valid-type]
    domains: list[str]
    options: list[ProviderOptionType]
    app_password_url: str | None
    help_url: str | None
    notes: str | None
    user_supplies_servers: bool
    oauth: ProviderOAuthType | None = strawberry.field(
        description="Its OAuth2 server, when users may connect with “Sign in with …”."
    )

    @classmethod
    def from_spec(cls, spec: ProviderSpec) -> ProviderType:
        return cls(
            key=spec.key,
            display_name=spec.display_name,
            incoming=Server.from_endpoint(spec.imap) if spec.imap else None,
            outgoing=Server.from_endpoint(spec.smtp) if spec.smtp else None,
            auth_kinds=list(spec.auth_kinds),
            username_format=spec.username_format,
            domains=list(spec.domains),
            options=[ProviderOptionType.from_option(o) for o in spec.options],
            app_password_url=spec.app_password_url,
            help_url=spec.help_url,
            notes=spec.notes,
            user_supplies_servers=spec.user_supplies_servers,
            oauth=ProviderOAuthType.from_server(spec.key, spec.oauth) if spec.oauth else None,
        )


@strawberry.input(description="A value for one provider option, e.g. region = eu.")
class ProviderOptionValue:
    name: str
    value: str


@strawberry.type
class ProviderQueries:
    @strawberry.field(description="Every mail provider the server can connect, presets included.")
    def providers(self, info: Info) -> list[ProviderType]:
        registry = info.context.services.providers
        return [ProviderType.from_spec(spec) for spec in registry.providers().values()]

    @strawberry.field(description="One provider by key; UNKNOWN_PROVIDER lists the known keys.")
    def provider(self, info: Info, key: str) -> ProviderType:
        return ProviderType.from_spec(info.context.services.providers.get(key))

    @strawberry.field(description="The provider that serves an email address's domain, if known.")
    def detect_provider(self, info: Info, email: str) -> ProviderType | None:
        registry = info.context.services.providers
        key = registry.detect_provider(email)
        return ProviderType.from_spec(registry.get(key)) if key else None

    @strawberry.field(
        description="The servers an account of this provider would use (null: the user gives them)."
    )
    def provider_servers(
        self, info: Info, provider: str, email: str, options: list[ProviderOptionValue] | None = None
    ) -> ProviderServers | None:
        values = {o.name: o.value for o in options or []}
        endpoints = info.context.services.providers.resolve_endpoints(provider, email, values)
        if endpoints is None:
            return None
        return ProviderServers(
            incoming=Server.from_endpoint(endpoints.imap), outgoing=Server.from_endpoint(endpoints.smtp)
        )
