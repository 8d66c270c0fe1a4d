"""Microsoft's mail: Outlook.com (consumer) and Office 365 (business), both on Exchange Online.

One plugin declares both providers because they share everything but the SMTP host, the
domains and the sign-in tenant: the IMAP server, Microsoft sign-in, Exchange's folder names,
Exchange filing sent mail in "Sent Items" itself (so the core must not APPEND a copy), and
the hint that passwords no longer work.

Outlook.com (Hotmail, Live, MSN), per Microsoft's "POP, IMAP, and SMTP settings for
Outlook.com" page: ``outlook.office365.com:993`` (implicit TLS) and
``smtp-mail.outlook.com:587`` (STARTTLS). (The Thunderbird ISPDB lists
``smtp.office365.com:587`` instead; both answer for Outlook.com.) Since September 2024
Outlook.com accepts only Microsoft sign-in (OAuth2, SASL XOAUTH2) over IMAP and SMTP: no
passwords, no app passwords.

Office 365 / Microsoft 365 business mailboxes, per the Thunderbird ISPDB and Microsoft's docs:
``outlook.office365.com:993`` (implicit TLS) and ``smtp.office365.com:587`` (STARTTLS). Basic
authentication is off for IMAP in every tenant, and for SMTP AUTH client submission since
April 2026: only SASL XOAUTH2 with a Microsoft sign-in token works. Business mailboxes are on
the customer's own domain, so no consumer domain is declared; only tenants' initial
``*.onmicrosoft.com`` addresses are recognised.

Microsoft sign-in (``oauth``) per Microsoft's "Authenticate an IMAP, POP or SMTP connection
using OAuth" (which covers Outlook.com users too) and the identity platform v2 endpoints. The
tenant differs: ``consumers`` for Outlook.com (the sign-in page then refuses work accounts,
which belong to the Office 365 preset; an app registration that accepts personal accounts
serves it, the same one as for ``common``), ``organizations`` (any work or school account)
for Office 365. An admin may set another tenant, e.g. the organisation's own tenant id or
domain, which single-tenant app registrations need.
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

OUTLOOK = "outlook"
OFFICE365 = "office365"

HINT = (
    "Office 365 and Outlook.com no longer accept passwords over IMAP: "
    "connect with Microsoft sign-in (OAuth2)."
)

IMAP = ServerEndpoint("outlook.office365.com", 993, Security.SSL)

#: Exchange's folder names (English mailboxes; localised mailboxes announce SPECIAL-USE)
FOLDER_NAMES: dict[FolderRole, tuple[str, ...]] = {
    FolderRole.SENT: ("Sent Items", "Sent"),
    FolderRole.DRAFTS: ("Drafts",),
    FolderRole.TRASH: ("Deleted Items", "Deleted"),
    FolderRole.JUNK: ("Junk Email", "Junk E-mail", "Junk"),
    FolderRole.ARCHIVE: ("Archive",),
}


def sign_in(default_tenant: str) -> OAuthServer:
    """Microsoft identity platform v2 with ``default_tenant`` in its URLs.

    It has no revocation endpoint, and its userinfo endpoint answers only Microsoft Graph
    tokens, so the address comes from the ID token.
    """
    return OAuthServer(
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
        default_tenant=default_tenant,
        setup_url="https://learn.microsoft.com/entra/identity-platform/quickstart-register-app",
    )


#: the main consumer domains, from the Thunderbird ISPDB's Outlook.com entry
OUTLOOK_DOMAINS = (
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
    """Declare Outlook.com, then Office 365."""
    return [
        ProviderSpec(
            key=OUTLOOK,
            display_name="Outlook.com",
            imap=IMAP,
            smtp=ServerEndpoint("smtp-mail.outlook.com", 587, Security.STARTTLS),
            auth_kinds=(AuthKind.XOAUTH2,),
            domains=OUTLOOK_DOMAINS,
            help_url=(
                "https://support.microsoft.com/office/"
                "pop-imap-and-smtp-settings-for-outlook-com-d088b986-291d-42b8-9564-9c414e2aa040"
            ),
            notes="Sign in with your Microsoft account (OAuth2); passwords are not accepted.",
            oauth=sign_in("consumers"),
            folder_names=FOLDER_NAMES,
            stores_sent_mail=True,
        ),
        ProviderSpec(
            key=OFFICE365,
            display_name="Office 365",
            imap=IMAP,
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
            oauth=sign_in("organizations"),
            folder_names=FOLDER_NAMES,
            stores_sent_mail=True,
        ),
    ]


@hookimpl
def salesinbox_auth_failure_hint(context: AuthFailureContext) -> str | None:
    """Passwords cannot work at all: say to use Microsoft sign-in."""
    if context.provider not in (OUTLOOK, OFFICE365):
        return None
    return HINT
