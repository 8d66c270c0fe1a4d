"""Zoho Mail: servers per data-centre region, and per personal vs organisation account.

Hosts, checked against Zoho's "Access via IMAP" and SMTP help pages and the Thunderbird ISPDB:
personal accounts (and free organisations for SMTP) use ``imap.zoho.<region>`` and
``smtp.zoho.<region>``; paid organisation accounts on their own domain use
``imappro.zoho.<region>`` and ``smtppro.zoho.<region>``. Canada is the exception to the
``zoho.<region>`` naming: ``imap.zohocloud.ca``, ``imappro.zohocloud.ca``… IMAP on 993 and
SMTP on 465, both implicit TLS. IMAP Access must first be turned on in Zoho Mail's settings.
"""

from __future__ import annotations

from collections.abc import Mapping

from salesinbox.core import (
    AuthFailureContext,
    AuthKind,
    FolderRole,
    ProviderEndpoints,
    ProviderOption,
    ProviderSpec,
    Security,
    ServerEndpoint,
    hookimpl,
)

KEY = "zoho_mail"

#: region option value -> the domain its servers live under
REGION_DOMAINS: dict[str, str] = {
    "com": "zoho.com",
    "eu": "zoho.eu",
    "in": "zoho.in",
    "com.au": "zoho.com.au",
    "jp": "zoho.jp",
    "ca": "zohocloud.ca",
}
REGION = ProviderOption(
    name="region",
    label="Data centre region",
    choices=(
        ("com", "United States (zoho.com)"),
        ("eu", "Europe (zoho.eu)"),
        ("in", "India (zoho.in)"),
        ("com.au", "Australia (zoho.com.au)"),
        ("jp", "Japan (zoho.jp)"),
        ("ca", "Canada (zohocloud.ca)"),
    ),
    default="com",
)
ACCOUNT_TYPE = ProviderOption(
    name="account_type",
    label="Account type",
    choices=(
        ("personal", "Personal (@zohomail.com) or free organisation"),
        ("organisation", "Organisation on its own domain (paid plan)"),
    ),
    default="personal",
)

#: Zoho's own address domains (organisation accounts are on the customer's domain)
DOMAINS = ("zoho.com", "zohomail.com", "zoho.eu", "zohomail.eu", "zoho.in", "zohomail.in")
APP_PASSWORD_URL = (
    "https://help.zoho.com/portal/kb/articles/manage-application-specific-passwords"
)

IMAP_PORT = 993
SMTP_PORT = 465

HINT = (
    "Zoho Mail refused the login: turn on IMAP Access in Zoho Mail (Settings > Mail Accounts "
    "> IMAP), and if two-factor authentication is on, use an app-specific password. Also check "
    "that the region and account type match your Zoho account; an organisation's policy may "
    "also disable IMAP."
)

#: Zoho's own folder names; Zoho calls the junk folder "Spam"
FOLDER_NAMES: dict[FolderRole, tuple[str, ...]] = {
    FolderRole.SENT: ("Sent",),
    FolderRole.DRAFTS: ("Drafts",),
    FolderRole.TRASH: ("Trash",),
    FolderRole.JUNK: ("Spam",),
}


def endpoints_for(region: str, account_type: str) -> ProviderEndpoints:
    """The servers of a Zoho account in ``region`` of ``account_type``."""
    domain = REGION_DOMAINS[region]
    suffix = "pro" if account_type == "organisation" else ""
    return ProviderEndpoints(
        imap=ServerEndpoint(f"imap{suffix}.{domain}", IMAP_PORT, Security.SSL),
        smtp=ServerEndpoint(f"smtp{suffix}.{domain}", SMTP_PORT, Security.SSL),
    )


_DEFAULT_ENDPOINTS = endpoints_for(REGION.default, ACCOUNT_TYPE.default)


@hookimpl
def salesinbox_providers() -> list[ProviderSpec]:
    """Declare Zoho Mail, with the region and account-type questions."""
    return [
        ProviderSpec(
            key=KEY,
            display_name="Zoho Mail",
            imap=_DEFAULT_ENDPOINTS.imap,
            smtp=_DEFAULT_ENDPOINTS.smtp,
            auth_kinds=(AuthKind.PASSWORD, AuthKind.APP_PASSWORD),
            domains=DOMAINS,
            options=(REGION, ACCOUNT_TYPE),
            app_password_url=APP_PASSWORD_URL,
            help_url="https://www.zoho.com/mail/help/imap-access.html",
            notes=(
                "Turn on IMAP Access in Zoho Mail first (Settings > Mail Accounts > IMAP). "
                "With two-factor authentication on, use an app-specific password."
            ),
            folder_names=FOLDER_NAMES,
        )
    ]


@hookimpl
def salesinbox_resolve_endpoints(
    provider: str, email: str, options: Mapping[str, str]
) -> ProviderEndpoints | None:
    """Pick the servers from the region and account type (defaults: com, personal)."""
    if provider != KEY:
        return None
    region = options.get(REGION.name) or REGION.default
    account_type = options.get(ACCOUNT_TYPE.name) or ACCOUNT_TYPE.default
    return endpoints_for(region, account_type)


@hookimpl
def salesinbox_auth_failure_hint(context: AuthFailureContext) -> str | None:
    """Point at the two usual causes: IMAP Access off, or 2FA without an app password."""
    if context.provider != KEY:
        return None
    return HINT
