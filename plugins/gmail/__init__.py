"""Gmail and Google Workspace.

Servers per the Thunderbird ISPDB and Google's help: ``imap.gmail.com:993`` and
``smtp.gmail.com:465``, implicit TLS. Google no longer accepts the account password from
mail apps: an app password (which needs 2-Step Verification) or Google sign-in (OAuth2).
Google sign-in (``oauth``) per Google's "Using OAuth 2.0 for Web Server Applications" and
"OAuth 2.0 Mechanism" (IMAP/SMTP) pages: the scope for IMAP and SMTP is
``https://mail.google.com/`` (a restricted scope), ``access_type=offline`` asks for a
refresh token and ``prompt=consent`` makes Google send one again on every consent (it sends
one only on the first consent otherwise). The address is the ID token's ``email`` claim.
Gmail files a copy of mail sent through its SMTP server in "Sent Mail" itself, so the core
must not APPEND one. Gmail's system folders sit under "[Gmail]/" ("[Google Mail]/" in
accounts opened in Germany and the UK); Gmail also announces SPECIAL-USE flags.
"""

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

KEY = "gmail"
APP_PASSWORD_URL = "https://support.google.com/accounts/answer/185833"

APP_PASSWORD_HINT = (
    "Gmail needs an app password when 2-Step Verification is on: "
    f"{APP_PASSWORD_URL}"
)
OAUTH_HINT = (
    "Google refused the sign-in token: it may have expired or been revoked. "
    "Connect the account with Google sign-in again."
)


def _system_folder(name: str) -> tuple[str, ...]:
    """Both spellings of a Gmail system folder."""
    return (f"[Gmail]/{name}", f"[Google Mail]/{name}")


OAUTH = OAuthServer(
    authorization_url="https://accounts.google.com/o/oauth2/v2/auth",
    token_url="https://oauth2.googleapis.com/token",
    revocation_url="https://oauth2.googleapis.com/revoke",
    userinfo_url="https://openidconnect.googleapis.com/v1/userinfo",
    scopes=("https://mail.google.com/", "openid", "email"),
    mechanism=OAuthMechanism.XOAUTH2,
    authorization_params=(("access_type", "offline"), ("prompt", "consent")),
    address_claims=("email",),
    setup_url="https://console.cloud.google.com/apis/credentials",
)

#: the "[Gmail]/…" system folders; INBOX is left to the core's default
FOLDER_NAMES: dict[FolderRole, tuple[str, ...]] = {
    FolderRole.SENT: _system_folder("Sent Mail"),
    FolderRole.DRAFTS: _system_folder("Drafts"),
    FolderRole.TRASH: _system_folder("Trash") + _system_folder("Bin"),
    FolderRole.JUNK: _system_folder("Spam"),
    FolderRole.ARCHIVE: _system_folder("All Mail"),
}


@hookimpl
def salesinbox_providers() -> list[ProviderSpec]:
    """Declare Gmail."""
    return [
        ProviderSpec(
            key=KEY,
            display_name="Gmail",
            imap=ServerEndpoint("imap.gmail.com", 993, Security.SSL),
            smtp=ServerEndpoint("smtp.gmail.com", 465, Security.SSL),
            auth_kinds=(AuthKind.APP_PASSWORD, AuthKind.XOAUTH2),
            domains=("gmail.com", "googlemail.com"),
            app_password_url=APP_PASSWORD_URL,
            help_url="https://support.google.com/mail/answer/7126229",
            notes=(
                "Use an app password (2-Step Verification must be on) or Google sign-in. "
                "Google Workspace addresses on your own domain use the same servers."
            ),
            oauth=OAUTH,
            folder_names=FOLDER_NAMES,
            stores_sent_mail=True,  # Gmail's SMTP files the Sent copy; an APPEND would duplicate it
        )
    ]


@hookimpl
def salesinbox_auth_failure_hint(context: AuthFailureContext) -> str | None:
    """App password help for passwords; re-sign-in for refused OAuth tokens."""
    if context.provider != KEY:
        return None
    if context.auth_kind == AuthKind.XOAUTH2:
        return OAUTH_HINT
    return APP_PASSWORD_HINT
