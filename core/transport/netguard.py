"""SSRF guard for user-supplied mail servers: validate, resolve, vet, then connect pinned.

Users type IMAP/SMTP host names, and the server connects to them: without a guard anyone
could make it probe ``127.0.0.1:6379``, the cloud metadata service or the office LAN. So a
host is resolved once, every address it resolves to must be public (any private one is
enough to refuse: a name with a mix of public and private answers is a rebinding trick or a
misconfiguration), and the connection goes to an address that was checked — never to the
name again, which a hostile DNS server could re-point between check and connect.

Administrators of self-hosted setups switch the check off with
``SALESINBOX_ALLOW_PRIVATE_HOSTS=true``.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ErrorCode, SalesInboxError, invalid_input

if TYPE_CHECKING:
    from .server_login import ConnectPolicy

__all__ = [
    "Address",
    "connect_pinned",
    "is_public_address",
    "normalise_host",
    "resolve_mail_host",
    "validate_port",
]

log = logging.getLogger(__name__)

#: ``(family, sockaddr)`` as ``socket.getaddrinfo`` gives them, ready for ``connect``.
Address = tuple[int, Any]

_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: embeds an IPv4 address
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")  # shared address space (RFC 6598)


def normalise_host(host: str) -> str:
    """Return ``host`` as a lower-case ASCII name or an IP literal (brackets removed).

    International names are converted to their ``xn--`` form, so the same string serves DNS
    and the TLS server-name check.

    :raises SalesInboxError: ``INVALID_INPUT`` (field ``host``) for anything that is not a
        bare host name: spaces, a scheme (``imaps://``), a path, a port (``:993``), ``@``.
    """
    if not isinstance(host, str):
        raise invalid_input("The server name must be text.", field="host")
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if not text:
        raise invalid_input("Give the server name, e.g. imap.example.com.", field="host")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if "://" in text or "/" in text:
        raise invalid_input(
            f"Give only the server name (e.g. imap.example.com), not a URL: {host!r}.", field="host"
        )
    if ":" in text:
        raise invalid_input(
            f"Give the server name without a port ({host!r}): the port has its own field.",
            field="host",
        )
    if any(c.isspace() for c in text) or "@" in text:
        raise invalid_input(f"{host!r} is not a server name: remove spaces and '@'.", field="host")
    name = text.rstrip(".").lower()
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError:
        raise invalid_input(f"{host!r} is not a valid server name.", field="host") from None
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise invalid_input(f"{host!r} is not a valid server name.", field="host")
    return name


def validate_port(port: int) -> int:
    """Return ``port`` if it is a TCP port number (1-65535).

    :raises SalesInboxError: ``INVALID_INPUT`` (field ``port``) otherwise.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise invalid_input(f"The port must be a number from 1 to 65535, not {port!r}.", field="port")
    return port


def is_public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address | str) -> bool:
    """Whether ``address`` is a public unicast address a mail server may have.

    False for loopback, private (RFC 1918, IPv6 ULA), link-local, CGNAT ``100.64/10``,
    multicast, reserved, unspecified, documentation/benchmark ranges, and for IPv6 forms that
    embed such an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4,
    Teredo).
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0] if isinstance(address, str) else address)
    if isinstance(ip, ipaddress.IPv6Address):
        embedded: list[ipaddress.IPv4Address] = []
        if ip.ipv4_mapped is not None:
            embedded.append(ip.ipv4_mapped)
        if ip in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.sixtofour is not None:
            embedded.append(ip.sixtofour)
        if ip.teredo is not None:
            embedded.extend(ip.teredo)
        if any(not is_public_address(v4) for v4 in embedded):
            return False
        if ip.ipv4_mapped is not None or ip in _NAT64:  # judged by the IPv4 address alone
            return True
    elif ip in _CGNAT:
        return False
    # is_global misses multicast (224.0.0.1 counts as "global"), so test the rest explicitly.
    return ip.is_global and not (
        ip.is_multicast or ip.is_loopback or ip.is_link_local or ip.is_private
        or ip.is_reserved or ip.is_unspecified
    )


def resolve_mail_host(host: str, port: int, policy: ConnectPolicy) -> list[Address]:
    """Resolve ``host`` once and return the addresses to connect to, in resolver order.

    Unless ``policy.allow_private_hosts``, refuse the host when ANY address is not public
    (see :func:`is_public_address`). Connect only to the returned addresses (with
    :func:`connect_pinned`), never to the name again.

    :raises SalesInboxError: ``INVALID_INPUT`` for a malformed host or port (field ``host``/
        ``port``); ``CONNECTION_FAILED`` when the name does not resolve; ``HOST_NOT_ALLOWED``
        for a private or local address. Messages never show the resolved addresses (that
        would map internal DNS for the asker); they are logged for administrators.
    """
    name = normalise_host(host)
    validate_port(port)
    try:
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_AGAIN:
            detail = "the name lookup failed temporarily; try again in a moment"
        else:
            detail = "check the server name"
        raise SalesInboxError(
            ErrorCode.CONNECTION_FAILED, f"Cannot find the server {name}: {detail}.", field="host"
        ) from None
    addresses: list[Address] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6) and (family, sockaddr) not in addresses:
            addresses.append((family, sockaddr))
    if not addresses:
        raise SalesInboxError(
            ErrorCode.CONNECTION_FAILED,
            f"Cannot find the server {name}: it has no IP address.",
            field="host",
        )
    if not policy.allow_private_hosts:
        blocked = [sockaddr[0] for _f, sockaddr in addresses if not is_public_address(sockaddr[0])]
        if blocked:
            log.warning("refused mail server %s:%s: non-public addresses %s", name, port, blocked)
            raise SalesInboxError(
                ErrorCode.HOST_NOT_ALLOWED,
                f"The server {name} is on a private or local network address, which this "
                "server may not connect to. Use the mail provider's public server name; an "
                "administrator can allow private servers with SALESINBOX_ALLOW_PRIVATE_HOSTS=true.",
                field="host",
            )
    return addresses


def connect_pinned(addresses: Sequence[Address], timeout: float) -> socket.socket:
    """Open a TCP connection to the first of ``addresses`` that accepts; return the socket.

    The whole attempt takes at most ``timeout`` seconds; every address but the last gets
    half of the time left, so one black-holed address (say, broken IPv6) still leaves time
    for the next. The returned socket has ``timeout`` set for later reads and writes.

    :raises OSError: the last address's error (``TimeoutError`` when time ran out).
    """
    deadline = time.monotonic() + timeout
    last_error: OSError | None = None
    for index, (family, sockaddr) in enumerate(addresses):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.settimeout(left if index == len(addresses) - 1 else left / 2)
            sock.connect(sockaddr)
            # Commands are small writes answered at once: Nagle would only add latency.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(timeout)
        except OSError as exc:
            sock.close()
            last_error = exc
            log.debug("connect to %s failed: %s", sockaddr, exc)
            continue
        return sock
    raise last_error or TimeoutError(f"no address answered within {timeout:g} s")
