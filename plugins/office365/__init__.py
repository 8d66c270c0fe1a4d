"""Office 365 / Microsoft 365 business mailboxes (Exchange Online).

Servers per the Thunderbird ISPDB and Microsoft's docs: ``outlook.office365.com:993``
(implicit TLS) and ``smtp.office365.com:587`` (STARTTLS). Basic authentication is off for
IMAP in every tenant, and for SMTP AUTH client submission since April 2026: only SASL
XOAUTH2 with a Microsoft sign-in token works. Business mailboxes are on the customer's own
domain, so no consumer domain is declared; only tenants' initial ``*.onmicrosoft.com``
addresses are recognised. Exchange files sent mail in "Sent Items" itself.

Microsoft sign-in (``oauth``) per Microsoft's "Authenticate an IMAP, POP or SMTP connection
using OAuth" and the identity platform v2 endpoints. The tenant is ``organizations`` (any
work or school account); an admin may set the organisation's own tenant id or domain, which
single-tenant app registrations need.
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
from salesinbox.plugins.outlook import OAUTH_REFUSED_HINT  # the same Exchange Online

KEY = "office365"

HINT = (
    "Office 365 and Outlook.com no longer accept passwords over IMAP: "
    "connect with Microsoft sign-in (OAuth2)."
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
    default_tenant="organizations",
    setup_url="https://learn.microsoft.com/entra/identity-platform/quickstart-register-app",
)

#: Exchange's folder names (English mailboxes; localised mailboxes announce SPECIAL-USE)
FOLDER_NAMES: dict[FolderRole, list[str]] = {
    FolderRole.SENT: ["Sent Items", "Sent"],
    FolderRole.DRAFTS: ["Drafts"],
    FolderRole.TRASH: ["Deleted Items", "Deleted"],
    FolderRole.JUNK: ["Junk Email", "Junk E-mail", "Junk"],
    FolderRole.ARCHIVE: ["Archive"],
}


@hookimpl
def salesinbox_providers() -> list[ProviderSpec]:
    """Declare Office 365."""
    return [
        ProviderSpec(
            key=KEY,
            display_name="Office 365",
            imap=ServerEndpoint("outlook.office365.com", 993, Security.SSL),
            smtp=ServerEndpoint("smtp.office365.com", 587, Security.STARTTLS),
            auth_kinds=(AuthKind.XOAUTH2,),
            domains=("onmicrosoft.com",),
            help_url=(
                "https://learn.microsoft.com/exchange/client-developer/legacy-protocols/"
                "how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth"
            ),
            notes=(
                "Sign in with your work account (OAuth2). Your administrator may need to "
                "allow IMAP and SMTP AUTH for the mailbox."
            ),
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
    """``True``: Exchange Online files SMTP-submitted mail in "Sent Items"."""
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
