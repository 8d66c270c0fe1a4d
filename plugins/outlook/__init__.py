"""Outlook.com (Hotmail, Live, MSN): Microsoft's consumer mail.

Servers per Microsoft's "POP, IMAP, and SMTP settings for Outlook.com" page:
``outlook.office365.com:993`` (implicit TLS) and ``smtp-mail.outlook.com:587`` (STARTTLS).
(The Thunderbird ISPDB lists ``smtp.office365.com:587`` instead; both answer for Outlook.com.)
Since September 2024 Outlook.com accepts only Microsoft sign-in (OAuth2, SASL XOAUTH2) over
IMAP and SMTP: no passwords, no app passwords. Exchange files mail sent through its SMTP
server in "Sent Items" itself, so the core must not APPEND a copy.

Microsoft sign-in (``oauth``) per Microsoft's "Authenticate an IMAP, POP or SMTP connection
using OAuth" (which covers Outlook.com users too) and the identity platform v2 endpoints. The
tenant is ``consumers``: this preset is for personal Microsoft accounts, and ``consumers``
makes the sign-in page refuse work accounts, which belong to the Office 365 preset (its SMTP
host and hints differ); an app registration that accepts personal accounts serves it, the
same one as for ``common``. An admin may set another tenant (e.g. ``common``).
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

KEY = "outlook"

HINT = (
    "Office 365 and Outlook.com no longer accept passwords over IMAP: "
    "connect with Microsoft sign-in (OAuth2)."
)

#: Exchange Online refuses a live token with a bare "AUTHENTICATE failed" when the mailbox
#: may not use IMAP or SMTP AUTH (switched off per mailbox or for the whole tenant)
OAUTH_REFUSED_HINT = (
    "Microsoft refused the sign-in token for this mailbox. If the sign-in just succeeded, "
    "IMAP or SMTP AUTH is switched off for it: an Exchange admin can allow both "
    "(Set-CASMailbox <address> -ImapEnabled $true -SmtpClientAuthenticationDisabled $false, or "
    "the tenant-wide SMTP AUTH setting), and the app registration needs the "
    "IMAP.AccessAsUser.All and SMTP.Send permissions. Otherwise connect again with Microsoft sign-in."
)

#: Microsoft identity platform v2; no revocation endpoint, and its userinfo endpoint answers
#: only Microsoft Graph tokens, so the address comes from the ID token
OAUTH = OAuthServer(
    authorization_url="https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize",
    token_url="https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
    scopes=(
        "https://outlook.office.com/IMAP.AccessAsUser.All",
        "https://outlook.office.com/SMTP.Send",
        "offline_access",
        "openid",
        "email",
    ),
    mechanism=OAuthMechanism.XOAUTH2,
    authorization_params=(("prompt", "select_account"),),
    address_claims=("email", "preferred_username"),
    default_tenant="consumers",
    setup_url="https://learn.microsoft.com/entra/identity-platform/quickstart-register-app",
)

#: Exchange's folder names (English mailboxes; localised mailboxes announce SPECIAL-USE)
FOLDER_NAMES: dict[FolderRole, list[str]] = {
    FolderRole.SENT: ["Sent Items", "Sent"],
    FolderRole.DRAFTS: ["Drafts"],
    FolderRole.TRASH: ["Deleted Items", "Deleted"],
    FolderRole.JUNK: ["Junk Email", "Junk"],
    FolderRole.ARCHIVE: ["Archive"],
}

#: the main consumer domains, from the Thunderbird ISPDB's Outlook.com entry
DOMAINS = (
    "outlook.com",
    "hotmail.com",
    "live.com",
    "msn.com",
    "windowslive.com",
    "hotmail.co.uk",
    "hotmail.fr",
    "hotmail.de",
    "hotmail.it",
    "hotmail.es",
    "hotmail.ca",
    "hotmail.com.au",
    "hotmail.com.br",
    "live.co.uk",
    "live.fr",
    "live.de",
    "live.it",
    "live.ca",
    "live.com.au",
    "live.nl",
    "outlook.fr",
    "outlook.de",
    "outlook.es",
    "outlook.it",
    "outlook.com.au",
    "outlook.com.br",
)


@hookimpl
def salesinbox_providers() -> list[ProviderSpec]:
    """Declare Outlook.com."""
    return [
        ProviderSpec(
            key=KEY,
            display_name="Outlook.com",
            imap=ServerEndpoint("outlook.office365.com", 993, Security.SSL),
            smtp=ServerEndpoint("smtp-mail.outlook.com", 587, Security.STARTTLS),
            auth_kinds=(AuthKind.XOAUTH2,),
            domains=DOMAINS,
            help_url=(
                "https://support.microsoft.com/office/"
                "pop-imap-and-smtp-settings-for-outlook-com-d088b986-291d-42b8-9564-9c414e2aa040"
            ),
            notes="Sign in with your Microsoft account (OAuth2); passwords are not accepted.",
            oauth=OAUTH,
        )
    ]


@hookimpl
def salesinbox_folder_names(provider: str, role: FolderRole) -> list[str] | None:
    """Exchange names: "Sent Items", "Junk Email", "Deleted Items"."""
    if provider != KEY or role not in FOLDER_NAMES:
        return None
    return list(FOLDER_NAMES[role])


@hookimpl
def salesinbox_stores_sent_mail(provider: str) -> bool | None:
    """``True``: Exchange's SMTP files the copy in "Sent Items"."""
    if provider != KEY:
        return None
    return True


@hookimpl
def salesinbox_auth_failure_hint(context: AuthFailureContext) -> str | None:
    """Passwords cannot work at all: say to use Microsoft sign-in; a refused sign-in token
    is most often a mailbox whose IMAP or SMTP AUTH is off in Exchange Online."""
    if context.provider != KEY:
        return None
    return OAUTH_REFUSED_HINT if context.auth_kind == AuthKind.XOAUTH2 else HINT
