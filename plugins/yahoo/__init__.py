"""Yahoo Mail.

Servers per the Thunderbird ISPDB and Yahoo's help (SLN4075): ``imap.mail.yahoo.com:993``
and ``smtp.mail.yahoo.com:465``, implicit TLS. Mail apps sign in with an app password
(Yahoo help SLN15241) or with Yahoo sign-in (OAuth2). Yahoo's spam folder is "Bulk Mail"
(older mailboxes: "Bulk") and its drafts folder is "Draft". Yahoo! JAPAN (yahoo.co.jp) is a
separate service with its own servers and is deliberately not claimed here.
"""

from __future__ import annotations

from salesinbox.core import (
    AuthFailureContext,
    AuthKind,
    FolderRole,
    ProviderSpec,
    Security,
    ServerEndpoint,
    hookimpl,
)

KEY = "yahoo"
APP_PASSWORD_URL = "https://help.yahoo.com/kb/SLN15241.html"

APP_PASSWORD_HINT = (
    "Yahoo Mail needs an app password for other mail apps: create one in your Yahoo "
    f"Account Security page and use it instead of your password ({APP_PASSWORD_URL})."
)
OAUTH_HINT = (
    "Yahoo refused the sign-in token: it may have expired or been revoked. "
    "Connect the account with Yahoo sign-in again."
)

#: Yahoo's names: "Bulk Mail" for spam, "Draft" for drafts
FOLDER_NAMES: dict[FolderRole, tuple[str, ...]] = {
    FolderRole.SENT: ("Sent",),
    FolderRole.DRAFTS: ("Draft", "Drafts"),
    FolderRole.TRASH: ("Trash",),
    FolderRole.JUNK: ("Bulk Mail", "Bulk"),
    FolderRole.ARCHIVE: ("Archive",),
}

#: yahoo.com, Yahoo's country domains served by the same servers, and its legacy brands
DOMAINS = (
    "yahoo.com",
    "ymail.com",
    "rocketmail.com",
    "yahoo.co.uk",
    "yahoo.ie",
    "yahoo.fr",
    "yahoo.de",
    "yahoo.it",
    "yahoo.es",
    "yahoo.se",
    "yahoo.ca",
    "yahoo.in",
    "yahoo.co.in",
    "yahoo.com.au",
    "yahoo.co.nz",
    "yahoo.com.ar",
    "yahoo.com.br",
    "yahoo.com.mx",
    "yahoo.com.sg",
    "yahoo.com.ph",
    "yahoo.com.hk",
    "yahoo.com.tw",
    "yahoo.com.vn",
    "yahoo.co.id",
)


@hookimpl
def salesinbox_providers() -> list[ProviderSpec]:
    """Declare Yahoo Mail."""
    return [
        ProviderSpec(
            key=KEY,
            display_name="Yahoo Mail",
            imap=ServerEndpoint("imap.mail.yahoo.com", 993, Security.SSL),
            smtp=ServerEndpoint("smtp.mail.yahoo.com", 465, Security.SSL),
            auth_kinds=(AuthKind.APP_PASSWORD, AuthKind.XOAUTH2),
            domains=DOMAINS,
            app_password_url=APP_PASSWORD_URL,
            help_url="https://help.yahoo.com/kb/SLN4075.html",
            notes="Use an app password from your Yahoo Account Security page, or Yahoo sign-in.",
            folder_names=FOLDER_NAMES,
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
