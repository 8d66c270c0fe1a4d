"""Email address and domain normalisation: the one place that decides when two addresses match.

Matching is case-insensitive on both the local part and the domain, after trimming
(docs/records-and-links.md#address-matching);
internationalised domains are stored in their ASCII (IDNA) form so that ``bücher.example`` and
``xn--bcher-kva.example`` are the same domain.

The strict functions (:func:`normalise_email`, :func:`normalise_domain`) raise a typed
``INVALID_INPUT`` error and are the ones to use before storing or matching. The lenient ones
(:func:`normalise_email_lenient`, :func:`email_domain_lenient`) never raise, for code that
must answer on half-typed input (provider detection while the user types).
"""

from __future__ import annotations

import re

from .errors import SalesInboxError, invalid_input

# RFC 5321 limits: 64 octets of local part, 255 of domain, 254 in all for a usable path.
_MAX_LOCAL = 64
_MAX_ADDRESS = 254
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_LOCAL_FORBIDDEN = re.compile(r"[\s<>(),;:\\\"\[\]]")


def _fold_domain(raw: str) -> str:
    """Trim ``raw``, drop one leading ``@`` and any trailing dots, lower-case it; never raises.

    The first step of :func:`normalise_domain` (before IDNA) and all of
    :func:`email_domain_lenient`, so the strict and lenient domains agree on ASCII input.
    """
    return raw.strip().removeprefix("@").rstrip(".").lower()


def normalise_domain(raw: str, *, field: str = "domain") -> str:
    """Return ``raw`` as a lower-case ASCII domain, or raise ``INVALID_INPUT`` naming ``field``.

    Accepts Unicode (IDN) domains and a leading ``@`` (as users type "@acme.com").
    """
    domain = _fold_domain(raw)
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


def normalise_email_lenient(raw: str) -> str:
    """Return ``raw`` trimmed with its domain lower-cased; never raises, whatever the text.

    For text that may be half-typed or invalid, where an answer matters more than a check.
    The local part keeps its case (it may be case-sensitive on the server), the domain is not
    IDNA-encoded, a trailing dot stays, and text without ``@`` is only trimmed::

        "  Bob@GMAIL.com "  ->  "Bob@gmail.com"
        "bob@"              ->  "bob@"
        "@gmail.com"        ->  "@gmail.com"
        ""                  ->  ""

    Only the last ``@`` splits, as in :func:`normalise_email`. On an address the strict
    function accepts, the two agree: ``normalise_email(normalise_email_lenient(a)) ==
    normalise_email(a)``.
    """
    local, at, domain = raw.strip().rpartition("@")
    return f"{local}{at}{domain.lower()}" if at else raw.strip()


def email_domain_lenient(raw: str) -> str | None:
    """The lower-case domain of ``raw`` without trailing dots, or ``None``; never raises.

    ``None`` when there is no ``@``, nothing before the last ``@``, or nothing after it, so
    half-typed text has no domain::

        "  Bob@GMAIL.com "  ->  "gmail.com"
        "bob@gmail.com."    ->  "gmail.com"
        "bob@"              ->  None
        "@gmail.com"        ->  None
        ""                  ->  None

    The domain is not checked and not IDNA-encoded (``"a@Bücher.example"`` gives
    ``"bücher.example"``, and full-width letters stay as typed). On an address the strict
    :func:`normalise_email` accepts, ``normalise_domain`` of this result is the strict
    domain, and for an ASCII domain this result is the strict domain itself.
    """
    local, at, domain = raw.strip().rpartition("@")
    domain = _fold_domain(domain)
    return domain if at and local and domain else None
