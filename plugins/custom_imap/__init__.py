"""Custom IMAP: any IMAP/SMTP server whose details the user types in.

There are no presets: the user gives the incoming and outgoing server name, port and
security, and the login username (often, but not always, the email address). The core's
defaults answer the folder-name and sent-mail questions; this plugin only declares the
provider and gives a hint that does not assume any particular mail service.
"""

from __future__ import annotations

from collections.abc import Mapping

from salesinbox.core import (
    AuthFailureContext,
    AuthKind,
    ProviderEndpoints,
    ProviderSpec,
    UsernameFormat,
    hookimpl,
)

KEY = "custom_imap"

PASSWORD_HINT = (
    "The server refused the username or password: check both with your mail provider or "
    "administrator (the username is often the full email address), and if the account uses "
    "two-factor authentication, use an app-specific password."
)
OAUTH_HINT = (
    "The server refused the sign-in token: it may have expired or been revoked. "
    "Sign in again, or use a password if the server accepts one."
)


@hookimpl
def salesinbox_providers() -> list[ProviderSpec]:
    """Declare the custom IMAP provider: no presets, every auth kind, typed username."""
    return [
        ProviderSpec(
            key=KEY,
            display_name="Custom IMAP",
            imap=None,
            smtp=None,
            auth_kinds=(AuthKind.PASSWORD, AuthKind.APP_PASSWORD, AuthKind.XOAUTH2),
            username_format=UsernameFormat.CUSTOM,
            notes=(
                "Enter the incoming (IMAP) and outgoing (SMTP) server details your mail "
                "provider gives, or tick “use the same credentials for outgoing”."
            ),
            user_supplies_servers=True,
        )
    ]


@hookimpl
def salesinbox_resolve_endpoints(
    provider: str, email: str, options: Mapping[str, str]
) -> ProviderEndpoints | None:
    """Always ``None``: the user gives the servers (``user_supplies_servers``).

    Written out for readers: it changes nothing, since the core default also answers
    ``None`` for a provider without presets.
    """
    return None


@hookimpl
def salesinbox_auth_failure_hint(context: AuthFailureContext) -> str | None:
    """A provider-neutral hint; the server's own message is shown separately by the core."""
    if context.provider != KEY:
        return None
    if context.auth_kind == AuthKind.XOAUTH2:
        return OAUTH_HINT
    return PASSWORD_HINT
