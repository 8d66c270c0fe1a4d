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

from salesinbox.core import AuthFailureContext, AuthKind, ProviderSpec, Security, ServerEndpoint, hookimpl
from salesinbox.plugins.exchange_online import FOLDER_NAMES, IMAP, auth_failure_hint, sign_in

KEY = "outlook"

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
    """Declare Outlook.com."""
    return [
        ProviderSpec(
            key=KEY,
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
        )
    ]


@hookimpl
def salesinbox_auth_failure_hint(context: AuthFailureContext) -> str | None:
    """Passwords cannot work at all: say to use Microsoft sign-in; a refused sign-in token
    is most often a mailbox whose IMAP or SMTP AUTH is off."""
    return auth_failure_hint(context) if context.provider == KEY else None
