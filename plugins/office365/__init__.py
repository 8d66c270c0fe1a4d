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

from salesinbox.core import AuthFailureContext, AuthKind, ProviderSpec, Security, ServerEndpoint, hookimpl
from salesinbox.plugins.exchange_online import FOLDER_NAMES, IMAP, auth_failure_hint, sign_in

KEY = "office365"


@hookimpl
def salesinbox_providers() -> list[ProviderSpec]:
    """Declare Office 365."""
    return [
        ProviderSpec(
            key=KEY,
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
        )
    ]


@hookimpl
def salesinbox_auth_failure_hint(context: AuthFailureContext) -> str | None:
    """Passwords cannot work at all: say to use Microsoft sign-in; a refused sign-in token
    is most often a mailbox whose IMAP or SMTP AUTH is off."""
    return auth_failure_hint(context) if context.provider == KEY else None
