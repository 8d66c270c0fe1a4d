"""Email address and domain normalisation: the one place that decides when two addresses match.

Matching is case-insensitive on both the local part and the domain, after trimming (SPEC §2);
internationalised domains are stored in their ASCII (IDNA) form so that ``bücher.example`` and
``xn--bcher-kva.example`` are the same domain.
"""

from __future__ import annotations

import re

from .errors import SalesInboxError, invalid_input

# RFC 5321 limits: 64 octets of local part, 255 of domain, 254 in all for a usable path.
_MAX_LOCAL = 64
_MAX_ADDRESS = 254
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_LOCAL_FORBIDDEN = re.compile(r"[\s<>(),;:\\\"\[\]]")


def normalise_domain(raw: str, *, field: str = "domain") -> str:
    """Return ``raw`` as a lower-case ASCII domain, or raise ``INVALID_INPUT`` naming ``field``.

    Accepts Unicode (IDN) domains and a leading ``@`` (as users type "@acme.com").
    """
    domain = raw.strip().removeprefix("@").rstrip(".").lower()
    if not domain:
        raise invalid_input("A domain is required, like acme.com.", field=field)
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise invalid_input(f"{raw.strip()!r} is not a valid domain name.", field=field) from None
    labels = ascii_domain.split(".")
    if len(ascii_domain) > 253 or len(labels) < 2 or not all(_LABEL.match(p) for p in labels):
        raise invalid_input(
            f"{raw.strip()!r} is not a valid domain name: expected something like acme.com.",
            field=field,
        )
    return ascii_domain


def normalise_email(raw: str, *, field: str = "email") -> str:
    """Return ``raw`` trimmed and lower-cased with an ASCII domain, or raise ``INVALID_INPUT``."""
    address = raw.strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise invalid_input(
            f"{address!r} is not a valid email address: expected name@domain.com.", field=field
        )
    local = local.lower()
    if len(local) > _MAX_LOCAL or _LOCAL_FORBIDDEN.search(local) or "@" in local:
        raise invalid_input(f"{address!r} is not a valid email address.", field=field)
    try:
        ascii_domain = normalise_domain(domain, field=field)
    except SalesInboxError:
        raise invalid_input(
            f"{address!r} is not a valid email address: its domain {domain!r} is not valid.",
            field=field,
        ) from None
    normalised = f"{local}@{ascii_domain}"
    if len(normalised) > _MAX_ADDRESS:
        raise invalid_input(f"{address!r} is longer than an email address may be.", field=field)
    return normalised


def normalise_optional_email(raw: str | None, *, field: str) -> str | None:
    """Like :func:`normalise_email`, but ``None`` or blank means "no address"."""
    if raw is None or not raw.strip():
        return None
    return normalise_email(raw, field=field)


def domain_of(address: str) -> str:
    """Return the domain part of an already normalised address."""
    return address.rpartition("@")[2]
