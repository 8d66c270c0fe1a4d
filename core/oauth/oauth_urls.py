"""The rules for OAuth2 URLs and tenants: what a plugin may declare and an admin may set.

An authorisation server's endpoints are where the server posts client secrets, codes and
refresh tokens, so they must be ``https://`` (a test identity provider on the loopback
interface is the one exception an operator may allow, see :func:`check_admin_url`). A
Microsoft-style URL holds a ``{tenant}`` placeholder, filled in by :func:`fill_tenant` with
a value that cannot change the URL's shape (no ``/``, ``?``, ``#``, ``%``).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import SplitResult, urlsplit

from ..errors import invalid_input
from ..plugin_host.providers import TENANT_PLACEHOLDER
from ..settings import Settings
from ..transport.netguard import is_public_address

#: the longest URL stored (browsers and identity providers accept far longer; admins type these)
MAX_URL_LENGTH = 2000
#: a tenant: ``common``, ``organizations``, ``consumers``, a GUID or a domain name
TENANT_PATTERN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,126}[A-Za-z0-9])?")
#: parameters of the consent URL that the core sets itself: a plugin may not declare them
RESERVED_AUTHORIZATION_PARAMS = frozenset({
    "client_id", "redirect_uri", "response_type", "scope", "state", "nonce",
    "code_challenge", "code_challenge_method",
})
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def split_url(url: str) -> SplitResult | None:
    """Parse an absolute ``http(s)`` URL with a host, no credentials and no fragment.

    ``{tenant}`` is accepted anywhere in the path or query (it is filled in before use); any
    other brace is not. Returns ``None`` when ``url`` is not such a URL.
    """
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        return None
    probe = url.replace(TENANT_PLACEHOLDER, "tenant")
    if any(c.isspace() or ord(c) < 0x21 or c in "{}\\" for c in probe):
        return None
    try:
        parts = urlsplit(probe)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return None
    if parts.scheme not in {"http", "https"} or not parts.hostname or parts.fragment:
        return None
    if "@" in parts.netloc or TENANT_PLACEHOLDER in url.split("/", 3)[2]:
        return None  # credentials in the URL, or a tenant in the host name
    return parts


def declared_url_problem(url: str) -> str | None:
    """Why a URL a plugin declares is unusable, or ``None`` when it is fine (https only)."""
    parts = split_url(url)
    if parts is None:
        return f"{url!r} is not an absolute URL with a host (and no credentials or fragment)"
    if parts.scheme != "https":
        return f"{url!r} must use https://"
    return None


def check_tenant(tenant: str, *, field: str = "tenant") -> str:
    """Return ``tenant`` trimmed, or raise ``INVALID_INPUT`` when it is not a tenant name."""
    value = tenant.strip() if isinstance(tenant, str) else ""
    if not TENANT_PATTERN.fullmatch(value):
        raise invalid_input(
            f"{tenant!r} is not a tenant: give common, organizations, consumers, your tenant "
            "id (a GUID) or your tenant's domain (contoso.onmicrosoft.com).",
            field=field,
        )
    return value


def fill_tenant(url: str | None, tenant: str | None) -> str | None:
    """``url`` with ``{tenant}`` replaced by ``tenant`` (checked: it cannot alter the URL)."""
    if url is None or TENANT_PLACEHOLDER not in url:
        return url
    if tenant is None:
        raise ValueError(f"{url!r} needs a tenant")
    return url.replace(TENANT_PLACEHOLDER, check_tenant(tenant))


def _is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_admin_url(url: str, *, field: str, settings: Settings) -> str:
    """Check an endpoint URL an admin sets (override of a provider's declaration).

    It must be ``https://``. Two operator settings relax this, as they do for mail servers:
    ``SALESINBOX_ALLOW_PLAINTEXT`` accepts ``http://`` anywhere, and
    ``SALESINBOX_ALLOW_PRIVATE_HOSTS`` accepts ``http://`` on the loopback interface (a
    test or local identity provider: the traffic never leaves the machine) and IP literals
    of private networks. Host names are not resolved here: the request that uses the URL is
    guarded when it is made.

    :return: the URL, trimmed.
    :raises SalesInboxError: ``INVALID_INPUT`` on ``field``, naming what to change.
    """
    text = url.strip() if isinstance(url, str) else ""
    parts = split_url(text)
    if parts is None:
        raise invalid_input(
            f"Give an absolute https:// URL with a host and no user name, password or "
            f"#fragment (up to {MAX_URL_LENGTH} characters), e.g. "
            "https://login.example.com/oauth2/token.",
            field=field,
        )
    host = parts.hostname or ""
    if parts.scheme == "http" and not settings.allow_plaintext and not (
        settings.allow_private_hosts and _is_loopback(host)
    ):
        raise invalid_input(
            f"{text} must use https://: client secrets and tokens are sent to it. (Plain "
            "http:// is accepted only on the loopback interface with "
            "SALESINBOX_ALLOW_PRIVATE_HOSTS=true, or anywhere with SALESINBOX_ALLOW_PLAINTEXT=true.)",
            field=field,
        )
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None and not settings.allow_private_hosts and not is_public_address(address):
        raise invalid_input(
            f"{text} points to a private or local address: use the identity provider's public "
            "name, or set SALESINBOX_ALLOW_PRIVATE_HOSTS=true for a self-hosted one.",
            field=field,
        )
    return text


def check_frontend_url(url: str, *, field: str) -> str:
    """Check the page the browser returns to after the consent: an absolute http(s) URL.

    Plain ``http://`` is accepted (a frontend on an intranet or a developer's machine): the
    browser only lands there, no secret travels with it.
    """
    text = url.strip() if isinstance(url, str) else ""
    if "{" in text or "}" in text or split_url(text) is None:
        raise invalid_input(
            "Give the frontend page as an absolute URL without user name, password or "
            "#fragment, e.g. https://crm.example.com/settings/mail.",
            field=field,
        )
    return text
