"""Email address and domain normalisation: the one place that decides when two addresses match.

Matching is case-insensitive on both the local part and the domain, after trimming
(docs/records-and-links.md#address-matching);
internationalised domains are stored in their ASCII (IDNA) form so that ``bücher.example`` and
``xn--bcher-kva.example`` are the same domain. A quoted local part is compared by its RFC 5321
meaning (§4.1.2: the quotes are not part of it), so ``"John.Doe"@x`` and ``john.doe@x`` match
and ``"sales team"@x`` keeps its quotes; a domain literal (``[192.0.2.10]``,
``[IPv6:2001:db8::1]``) is kept, its address in canonical form.

The strict functions (:func:`normalise_email`, :func:`normalise_domain`) raise a typed
``INVALID_INPUT`` error and are the ones to use before storing or matching. The lenient ones
(:func:`normalise_email_lenient`, :func:`email_domain_lenient`) never raise, for code that
must answer on half-typed input (provider detection while the user types).
"""

from __future__ import annotations

import ipaddress
import re

from .errors import SalesInboxError, invalid_input

# RFC 5321 limits: 64 octets of local part, 255 of domain, 254 in all for a usable path.
_MAX_LOCAL = 64
_MAX_ADDRESS = 254
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_LOCAL_FORBIDDEN = re.compile(r"[\s<>(),;:\\\"\[\]]")
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
_QUOTED_CONTENT = re.compile(r'(?:[^"\\]|\\.)*', re.DOTALL)
_QUOTED_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f]")  # RFC 5321 qtextSMTP / quoted-pairSMTP


def _canonical_local(local: str) -> str | None:
    """``local`` lower-cased, in its RFC 5321 canonical form, or None if it is not valid.

    A quoted string (``"Sales Team"``) means its content, quoted-pairs undone: written
    without quotes when it can be (``"john.doe"`` is ``john.doe``), else in quotes with only
    ``"`` and ``\\`` escaped. An unquoted local part is taken as before (no white space,
    no specials)."""
    if len(local) >= 2 and local[0] == local[-1] == '"':
        if not _QUOTED_CONTENT.fullmatch(local[1:-1]):  # a bare '"' inside
            return None
        content = _QUOTED_PAIR.sub(r"\1", local[1:-1]).lower()
        if not content or _QUOTED_FORBIDDEN.search(content):
            return None
        if not _LOCAL_FORBIDDEN.search(content) and "@" not in content:
            return content
        return '"' + content.replace("\\", "\\\\").replace('"', '\\"') + '"'
    local = local.lower()
    return None if _LOCAL_FORBIDDEN.search(local) or "@" in local else local


def _domain_literal(domain: str) -> str | None:
    """``[192.0.2.10]`` or ``[IPv6:2001:db8::1]`` (RFC 5321 §4.1.3) in canonical form, or None."""
    inner = domain[1:-1].strip()
    try:
        if inner[:5].lower() == "ipv6:":
            return f"[IPv6:{ipaddress.IPv6Address(inner[5:]).compressed}]"
        return f"[{ipaddress.IPv4Address(inner)}]"
    except ValueError:
        return None


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
    """Return ``raw`` trimmed and lower-cased with an ASCII domain, or raise ``INVALID_INPUT``.

    A quoted local part and a domain literal are kept in canonical form (see the module)."""
    address = raw.strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise invalid_input(
            f"{address!r} is not a valid email address: expected name@domain.com.", field=field
        )
    canonical = _canonical_local(local)
    if canonical is None or len(canonical) > _MAX_LOCAL:
        raise invalid_input(f"{address!r} is not a valid email address.", field=field)
    local = canonical
    try:
        if domain.startswith("[") and domain.endswith("]"):
            if (literal := _domain_literal(domain)) is None:
                raise invalid_input(f"{domain!r} is not an address literal.", field=field)
            ascii_domain = literal
        else:
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
    :func:`normalise_email` accepts with a domain name (not a literal like ``[192.0.2.1]``),
    ``normalise_domain`` of this result is the strict domain, and for an ASCII domain this
    result is the strict domain itself.
    """
    local, at, domain = raw.strip().rpartition("@")
    domain = _fold_domain(domain)
    return domain if at and local and domain else None
