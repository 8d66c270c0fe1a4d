"""Acme Mail: a made-up provider, packaged the way a third party would package a plugin."""

from __future__ import annotations

from salesinbox.core import (
    AuthFailureContext,
    AuthKind,
    FolderRole,
    OAuthMechanism,
    OAuthServer,
    ProviderSpec,
    Security,
    ServerEndpoint,
    hookimpl,
)

KEY = "acme_mail"

#: Acme's own authorisation server: no OpenID Connect, the address comes from its userinfo
OAUTH = OAuthServer(
    authorization_url="https://auth.acme-mail.example/oauth2/authorize",
    token_url="https://auth.acme-mail.example/oauth2/token",
    revocation_url="https://auth.acme-mail.example/oauth2/revoke",
    userinfo_url="https://auth.acme-mail.example/me",
    scopes=("mail.imap", "mail.smtp", "offline"),
    mechanism=OAuthMechanism.XOAUTH2,
    authorization_params=(("audience", "mail"),),
    address_claims=("mailbox",),
    setup_url="https://developers.acme-mail.example/apps",
)


@hookimpl
def salesinbox_providers() -> list[ProviderSpec]:
    """Declare Acme Mail."""
    return [
        ProviderSpec(
            key=KEY,
            display_name="Acme Mail",
            imap=ServerEndpoint("imap.acme-mail.example", 993, Security.SSL),
            smtp=ServerEndpoint("smtp.acme-mail.example", 587, Security.STARTTLS),
            auth_kinds=(AuthKind.APP_PASSWORD, AuthKind.XOAUTH2),
            domains=("acme-mail.example",),
            app_password_url="https://help.acme-mail.example/app-passwords",
            help_url="https://help.acme-mail.example/imap",
            oauth=OAUTH,
            folder_names={FolderRole.SENT: ("Outbox Archive",)},  # the other roles: common names
        )
    ]


@hookimpl
def salesinbox_auth_failure_hint(context: AuthFailureContext) -> str | None:
    """Acme's own wording."""
    if context.provider != KEY:
        return None
    return "Acme Mail needs an app password: create one under Settings > Security."
