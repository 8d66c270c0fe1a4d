"""One mail server's login and the deployment's connect policy, and planning a connection
with them (the security setting checked, the host resolved through the SSRF guard).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..credentials import Secret
from ..errors import invalid_input
from ..plugin_host.providers import LoginMechanism, Security
from ..settings import Settings
from .netguard import Address, normalise_host, resolve_mail_host

__all__ = ["ConnectPolicy", "ServerLogin", "check_security", "plan_connection"]


@dataclass(frozen=True, slots=True)
class ServerLogin:
    """One mail server and the credentials to log in to it.

    :param host: the server name as the user gave it (or an IP literal).
    :param port: TCP port.
    :param security: SSL (implicit TLS), STARTTLS, or NONE (refused unless allowed).
    :param username: the login name (usually the email address).
    :param secret: the password, app password or OAuth2 access token; never shown.
    :param mechanism: LOGIN (username + password) or XOAUTH2 (username + access token).
    """

    host: str
    port: int
    security: Security
    username: str
    secret: Secret = field(repr=False)
    mechanism: LoginMechanism = LoginMechanism.LOGIN

    @property
    def endpoint(self) -> str:
        """``host:port`` for messages (``[v6]:port`` for an IPv6 literal)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def refused_credentials(login: ServerLogin) -> str:
    """What a server refused, for a message: a password, or a sign-in (OAuth2) token."""
    if login.mechanism == LoginMechanism.LOGIN:
        return "the username or password"
    return "the sign-in token (OAuth2)"


@dataclass(frozen=True, slots=True)
class ConnectPolicy:
    """Deployment rules for outgoing mail connections (from :class:`Settings`).

    :param timeout: seconds allowed for each network step (connect, TLS handshake, each reply).
    :param allow_private_hosts: allow servers on loopback/private addresses (SSRF guard off).
    :param allow_plaintext: allow ``Security.NONE``.
    :param extra_ca_file: a PEM CA bundle trusted besides the system store.
    """

    timeout: float = 20.0
    allow_private_hosts: bool = False
    allow_plaintext: bool = False
    extra_ca_file: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectPolicy:
        """The policy configured by ``SALESINBOX_MAIL_TIMEOUT``, ``_ALLOW_PRIVATE_HOSTS``,
        ``_ALLOW_PLAINTEXT`` and ``_EXTRA_CA_FILE``."""
        return cls(
            timeout=settings.mail_timeout,
            allow_private_hosts=settings.allow_private_hosts,
            allow_plaintext=settings.allow_plaintext,
            extra_ca_file=settings.extra_ca_file,
        )


def check_security(login: ServerLogin, policy: ConnectPolicy) -> None:
    """Refuse ``Security.NONE`` unless the policy allows plaintext.

    :raises SalesInboxError: ``INVALID_INPUT`` (field ``security``).
    """
    if login.security is Security.NONE and not policy.allow_plaintext:
        raise invalid_input(
            "Connections without encryption are not allowed: choose SSL or STARTTLS. An "
            "administrator can allow them with SALESINBOX_ALLOW_PLAINTEXT=true.",
            field="security",
        )


def plan_connection(login: ServerLogin, policy: ConnectPolicy) -> tuple[str, list[Address]]:
    """Check the security setting, normalise the host and resolve it through the SSRF guard.

    :returns: the normalised host (for TLS server-name checks) and the vetted addresses.
    """
    check_security(login, policy)
    host = normalise_host(login.host)
    return host, resolve_mail_host(host, login.port, policy)
