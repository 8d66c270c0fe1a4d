"""The core's answers to the "who handles this?" hooks, used when no provider plugin answers.

Each implementation is marked ``trylast`` so that any plugin's non-``None`` answer wins
(pluggy calls ``firstresult`` hooks until one returns something other than ``None``). A
provider plugin therefore implements only what differs from these defaults.

The defaults live on :class:`CoreDefaults`, an object holding the plugin manager, because
some of them read the provider's own :class:`ProviderSpec`: the facts a provider declares as
data (presets, username format, folder names, whether its SMTP server files sent mail) are
answered here, so a plugin implements a hook only for what it must compute (Zoho's servers
per region).
"""

from __future__ import annotations

from collections.abc import Mapping

import pluggy

from .hookspecs import hookimpl
from .providers import (
    AuthFailureContext,
    AuthKind,
    FolderRole,
    LoginMechanism,
    LoginPlan,
    ProviderEndpoints,
    ProviderSpec,
    UsernameFormat,
    token_mechanism,
)

#: Folder names seen across common IMAP servers (Dovecot, Courier, Exchange, cPanel…), most
#: likely first. Used only when the server announces no SPECIAL-USE flag for the role.
DEFAULT_FOLDER_NAMES: Mapping[FolderRole, tuple[str, ...]] = {
    FolderRole.INBOX: ("INBOX",),
    FolderRole.SENT: ("Sent", "Sent Items", "Sent Messages", "Sent Mail", "INBOX.Sent"),
    FolderRole.DRAFTS: ("Drafts", "Draft", "INBOX.Drafts"),
    FolderRole.TRASH: (
        "Trash",
        "Deleted Items",
        "Deleted Messages",
        "Deleted",
        "Bin",
        "INBOX.Trash",
    ),
    FolderRole.JUNK: ("Junk", "Spam", "Junk E-mail", "Junk Email", "INBOX.Junk", "INBOX.Spam"),
    FolderRole.ARCHIVE: ("Archive", "Archives", "INBOX.Archive"),
}

GENERIC_AUTH_FAILURE_HINT = (
    "The server refused the username or password: check them, and if the account uses "
    "two-factor authentication, use an app-specific password."
)


class CoreDefaults:
    """The ``trylast`` default of every ``firstresult`` hook, registered by the core.

    :param pm: the plugin manager this object is registered in; used to look up the
        :class:`ProviderSpec` a provider plugin declared.
    """

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self._pm = pm

    def _spec(self, provider: str) -> ProviderSpec | None:
        """The spec declared for ``provider`` by any plugin, or ``None`` when none is."""
        for specs in self._pm.hook.salesinbox_providers():
            for spec in specs or ():
                if isinstance(spec, ProviderSpec) and spec.key == provider:
                    return spec
        return None

    @hookimpl(trylast=True)
    def salesinbox_resolve_endpoints(
        self, provider: str, email: str, options: Mapping[str, str]
    ) -> ProviderEndpoints | None:
        """Return the provider's preset servers; ``None`` when it has none (user-supplied)."""
        spec = self._spec(provider)
        if spec is None or spec.imap is None or spec.smtp is None:
            return None
        return ProviderEndpoints(imap=spec.imap, smtp=spec.smtp)

    @hookimpl(trylast=True)
    def salesinbox_login_plan(
        self, provider: str, email: str, auth_kind: AuthKind, protocol: str
    ) -> LoginPlan:
        """For OAuth tokens the mechanism the provider's :class:`OAuthServer` declares
        (XOAUTH2 when it declares none), LOGIN otherwise; username per the spec's format.

        The username is the full email address unless the provider declares
        ``UsernameFormat.LOCAL_PART``. For ``UsernameFormat.CUSTOM`` it is the email address
        as a starting point: the core replaces it with the username the user typed.
        """
        spec = self._spec(provider)
        mechanism = LoginMechanism.LOGIN
        if auth_kind == AuthKind.XOAUTH2:
            declared = spec.oauth.mechanism if spec is not None and spec.oauth is not None else None
            mechanism = token_mechanism(declared)
        username = email
        if spec is not None and spec.username_format == UsernameFormat.LOCAL_PART:
            username = email.rpartition("@")[0] or email
        return LoginPlan(mechanism=mechanism, username=username)

    @hookimpl(trylast=True)
    def salesinbox_folder_names(self, provider: str, role: FolderRole) -> list[str]:
        """The names the provider's spec declares for ``role`` (``ProviderSpec.folder_names``),
        else common names; a fresh list, which callers may change."""
        spec = self._spec(provider)
        declared = spec.folder_names.get(role) if spec is not None else None
        return list(declared or DEFAULT_FOLDER_NAMES.get(role, ()))

    @hookimpl(trylast=True)
    def salesinbox_stores_sent_mail(self, provider: str) -> bool:
        """The spec's ``stores_sent_mail``; ``False`` for an undeclared provider (most SMTP
        servers file no Sent copy, so the core APPENDs one)."""
        spec = self._spec(provider)
        return spec is not None and spec.stores_sent_mail

    @hookimpl(trylast=True)
    def salesinbox_auth_failure_hint(self, context: AuthFailureContext) -> str:
        """A generic hint: check the credentials; with 2FA, use an app-specific password."""
        return GENERIC_AUTH_FAILURE_HINT
