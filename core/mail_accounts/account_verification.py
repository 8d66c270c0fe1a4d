"""Verifying an account's servers before anything is saved (docs/accounts.md#verification).

Both logins are tried at once (IMAP: connect, TLS, login, CAPABILITY, LIST; SMTP: connect,
EHLO, TLS, AUTH). A refused login comes back with the provider plugin's hint, which names
the fix (an app password, enabling IMAP, signing in with Microsoft…). A failure to reach a
provider's preset server names the provider and points at this machine's network, not at a
form field: the user never typed that server.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ErrorCode
from ..plugin_host.provider_registry import ProviderRegistry
from ..plugin_host.providers import AuthFailureContext, AuthKind, FolderRole
from ..transport.imap import ImapProbe, probe_imap
from ..transport.server_errors import MailServerError
from ..transport.server_login import ConnectPolicy, ServerLogin
from ..transport.smtp import SmtpProbe, probe_smtp

if TYPE_CHECKING:
    from .stored_logins import AccountServers


@dataclass(frozen=True)
class VerifiedServers:
    """What the servers told us while verifying: capabilities and the Sent folder."""

    imap: ImapProbe
    smtp: SmtpProbe
    sent_folder: str | None

    @property
    def capabilities(self) -> list[str]:
        """The IMAP capabilities to store, with the pre-login ``AUTH=`` mechanisms."""
        announced = {c.upper() for c in self.imap.capabilities}
        announced |= {f"AUTH={m.upper()}" for m in self.imap.auth_mechanisms}
        return sorted(announced)


def find_sent_folder(registry: ProviderRegistry, provider: str, probe: ImapProbe) -> str | None:
    """The Sent folder: by SPECIAL-USE ``\\Sent``, else the first provider-named folder present."""
    if probe.sent_folder:
        return probe.sent_folder
    existing = {folder.name for folder in probe.folders}
    lowered = {name.lower(): name for name in existing}
    for candidate in registry.folder_names(provider, FolderRole.SENT):
        if candidate in existing:
            return candidate
        if candidate.lower() in lowered:
            return lowered[candidate.lower()]
    return None


async def verify_servers(
    registry: ProviderRegistry,
    provider: str,
    auth_kind: AuthKind,
    servers: AccountServers,
    policy: ConnectPolicy,
) -> VerifiedServers:
    """Log in to both servers (in worker threads, concurrently) and report what they offer.

    Raises the first failure as a :class:`MailServerError`; an authentication failure's
    message carries the provider's hint.
    """
    results = await asyncio.gather(
        asyncio.to_thread(probe_imap, servers.imap, policy),
        asyncio.to_thread(probe_smtp, servers.smtp, policy),
        return_exceptions=True,
    )
    for result, login in zip(results, (servers.imap, servers.smtp), strict=True):
        # IMAP first: its error is the more useful one
        if isinstance(result, MailServerError):
            if result.protocol in servers.preset:
                result = _about_preset(result, registry.get(provider).display_name, login, policy)
            raise _with_hint(registry, provider, auth_kind, result)
        if isinstance(result, BaseException):
            raise result
    imap_probe, smtp_probe = results
    assert isinstance(imap_probe, ImapProbe) and isinstance(smtp_probe, SmtpProbe)
    return VerifiedServers(imap_probe, smtp_probe, find_sent_folder(registry, provider, imap_probe))


def _about_preset(
    error: MailServerError, provider_name: str, login: ServerLogin, policy: ConnectPolicy
) -> MailServerError:
    """``error`` about a provider's preset server, told as such: naming the provider and this
    machine's network, without a form field (the user typed neither host nor port)."""
    server = f"{provider_name}'s {error.protocol.upper()} server {login.host}"
    messages = {
        ErrorCode.CONNECTION_FAILED:
            f"Cannot reach {server}: check this machine's network connection and DNS, then try again.",
        ErrorCode.TIMEOUT:
            f"No answer from {server} (port {login.port}) within {policy.timeout:g} s: check this "
            f"machine's network connection (a firewall may block port {login.port}), then try again.",
        ErrorCode.HOST_NOT_ALLOWED:
            f"{server} resolves to a private or local network address on this machine: check this "
            "machine's DNS, which should give the provider's public address.",
        ErrorCode.TLS_FAILED:
            f"Cannot set up a trusted TLS connection with {server}: a proxy or firewall on this "
            "machine's network may intercept it (an administrator can trust its certificate "
            "authority with SALESINBOX_EXTRA_CA_FILE), or this machine's clock may be wrong.",
    }
    if error.code not in messages:  # the login itself was refused, IMAP is off…: as it is
        return error
    return MailServerError(error.code, messages[error.code], protocol=error.protocol,
                           server_message=error.server_message)


def _with_hint(
    registry: ProviderRegistry, provider: str, auth_kind: AuthKind, error: MailServerError
) -> MailServerError:
    if error.code != ErrorCode.AUTHENTICATION_FAILED:
        return error
    hint = registry.auth_failure_hint(
        AuthFailureContext(
            provider=provider,
            auth_kind=auth_kind,
            protocol=error.protocol,
            server_message=error.server_message,
        )
    )
    return error.with_message(f"{error.message} {hint}")
