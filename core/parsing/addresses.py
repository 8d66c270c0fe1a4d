"""Address headers (From, To, Cc, Bcc, Reply-To, Sender) read into :class:`Address` values.

RFC 5322 §3.4 mailboxes and groups, and the §4.4 obsolete route (dropped); comments (§3.2.2) are dropped first, so that
``dana(CFO)@example.com`` is ``dana@example.com`` without a display name: a comment is no
name, but for the legacy form RFC 5322 §3.4 describes, a bare address followed by a comment
(``joe@example.com (Joe Public)``), whose comment legacy readers take for the name. Each address is normalised by
:func:`~..address_normalisation.normalise_email`, which keeps quoted local parts and domain
literals and compares them by their RFC 5321 meaning (``"john.doe"@x`` is ``john.doe@x``):
docs/records-and-links.md#address-matching.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from ..address_normalisation import normalise_email
from ..errors import SalesInboxError
from .headers import cut_between, decode_header_value, decode_raw_header, split_mailboxes, strip_comments
from .parse_warnings import Warnings

__all__ = ["MAX_ADDRESSES", "Address", "normalised_address", "normalised_set", "read_addresses"]

MAX_ADDRESSES = 1000  # per header: a mailing-list blast is not a CRM conversation
MAX_ADDRESS_HEADER_CHARS = 200_000  # ~1000 addresses with names
MAX_NAME_CHARS = 500  # message_address.name, attachment.filename


@dataclass(frozen=True, slots=True)
class Address:
    """One mailbox: ``name`` decoded for display ("" if none), ``address`` normalised."""

    name: str
    address: str


# The legacy form: a bare addr-spec then one (unnested) comment, ending the mailbox. The
# classes exclude "@" and the separators, so the match is linear.
_LEGACY = re.compile(r'(^|[,:])(\s*)([^\s@",:;<>()\[\]]+@[^\s@",:;<>()\[\]]+)\s*'
                     r'\(((?:[^()\\]|\\.)*)\)(?=\s*(?:[,;]|$))')


# RFC 5322 §4.4 obs-route, "<@relay.example,@other.example:mary@x.test>": the route goes.
_ROUTE = re.compile(r'<(?:[\s,]*@[^\s,@<>:"]+)+[\s,]*:')


def _legacy_name(match: re.Match[str]) -> str:
    name = re.sub(r"\\(.)", r"\1", match.group(4)).replace("\\", "\\\\").replace('"', '\\"')
    return f'{match.group(1)}{match.group(2)}"{name}" <{match.group(3)}>'


@lru_cache(maxsize=8192)  # the same few addresses recur in every message; IDNA is slow
def normalised_address(address: str) -> str | None:
    """``normalise_email(address)``, or None when it is no address."""
    try:
        return normalise_email(address)
    except SalesInboxError:  # INVALID_INPUT: not an address
        return None


def normalised_set(addresses: set[str]) -> set[str]:
    """``addresses`` normalised (one that does not normalise: trimmed and lower-cased)."""
    return {normalised_address(a) or a.strip().lower() for a in addresses}


def read_addresses(values: list[str] | None, label: str, warn: Warnings) -> tuple[Address, ...]:
    """The mailboxes of one header's raw ``values`` (all of them when it occurs several
    times), each address once, in order (the first display name wins). Group names and empty
    groups give nothing; an address that does not normalise is dropped with a warning; at
    most :data:`MAX_ADDRESSES`, from at most ``MAX_ADDRESS_HEADER_CHARS`` characters."""
    if not values:
        return ()
    raw = decode_raw_header(", ".join(values), label, warn)
    if len(raw) > MAX_ADDRESS_HEADER_CHARS:
        raw = cut_between(raw, MAX_ADDRESS_HEADER_CHARS, ",")
        warn(f"{label} header longer than {MAX_ADDRESS_HEADER_CHARS} characters: truncated")
    found: dict[str, Address] = {}
    if "(" in raw:
        raw = strip_comments(_LEGACY.sub(_legacy_name, raw))
    if "<" in raw and ":" in raw:
        raw = _ROUTE.sub("<", raw)
    for display, address in split_mailboxes(raw):
        if not address:  # empty groups, "undisclosed-recipients:;"
            continue
        if len(found) >= MAX_ADDRESSES:
            warn(f"more than {MAX_ADDRESSES} addresses in {label}: the rest ignored")
            break
        normalised = normalised_address(address)
        if normalised is None and "=?" in address:  # encoded words are not allowed there,
            address = decode_header_value(address, label, warn)  # but generators write them
            normalised = normalised_address(address)
        if normalised is None:
            warn(f"invalid address {address[:80]!r} in {label}: dropped")
        elif normalised not in found:
            display = decode_header_value(display, label, warn)[:MAX_NAME_CHARS]
            found[normalised] = Address(display, normalised)
    return tuple(found.values())
