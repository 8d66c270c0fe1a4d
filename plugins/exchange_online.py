"""Exchange Online: what Outlook.com and Office 365 share (not a plugin itself).

Both products run on Exchange Online: one IMAP server, Microsoft sign-in (identity platform
v2; only the default tenant differs), Exchange's folder names, Exchange filing sent mail in
"Sent Items" itself (so the core must not APPEND a copy), and the same answers when a login
is refused. The two built-in plugins ``outlook`` and ``office365`` declare their providers
from these facts, so that each stays one plugin (blocked or replaced on its own) without two
copies of them. Like any plugin, this module imports only what ``salesinbox.core`` exports.
"""

from __future__ import annotations

from salesinbox.core import (
    AuthFailureContext,
    AuthKind,
    FolderRole,
    OAuthMechanism,
    OAuthServer,
    Security,
    ServerEndpoint,
)

#: a password refused: none can work
PASSWORD_HINT = (
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


#: Exchange Online refuses a live token with a bare "AUTHENTICATE failed" when the mailbox
#: may not use IMAP or SMTP AUTH (switched off per mailbox or for the whole tenant)
OAUTH_REFUSED_HINT = (
    "Microsoft refused the sign-in token for this mailbox. If the sign-in just succeeded, "
    "IMAP or SMTP AUTH is switched off for it: an Exchange admin can allow both "
    "(Set-CASMailbox <address> -ImapEnabled $true -SmtpClientAuthenticationDisabled $false, or "
    "the tenant-wide SMTP AUTH setting), and the app registration needs the "
    "IMAP.AccessAsUser.All and SMTP.Send permissions. Otherwise connect again with Microsoft sign-in."
)


def auth_failure_hint(context: AuthFailureContext) -> str:
    """The fix for a refused login: Microsoft sign-in instead of a password; for a refused
    token, IMAP/SMTP AUTH being off for the mailbox (or the grant being gone)."""
    return OAUTH_REFUSED_HINT if context.auth_kind == AuthKind.XOAUTH2 else PASSWORD_HINT
