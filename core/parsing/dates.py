"""The Date header as a timezone-aware UTC datetime (RFC 5322 §3.3, and §4.3 for the
obsolete forms): comments and white space around the time's colons are allowed, a two-digit
year 00-49 is 2000-2049 and 50-99 is 1950-1999, a three-digit year is 1900 plus it
(docs/sync.md#what-is-stored)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from .headers import decode_raw_header, strip_comments
from .parse_warnings import Warnings

__all__ = ["decode_date"]

# "21 Nov 97": the day, the month name, and a year of two or three digits (obs-year).
_SHORT_YEAR = re.compile(r"(?<!\d)(\d{1,2}[\s-]+[A-Za-z]{3,9}\.?[\s-]+)(\d{2,3})(?!\d)")
_SPACED_COLON = re.compile(r"\s*:\s*")  # obs-FWS around the time's colons: "09 : 55"


def _full_year(match: re.Match[str]) -> str:
    year = int(match.group(2))
    if len(match.group(2)) == 3:
        year += 1900
    else:
        year += 2000 if year < 50 else 1900
    return f"{match.group(1)}{year}"


def decode_date(value: str, warn: Warnings) -> datetime | None:
    """A Date header as timezone-aware UTC; None if empty, or unreadable (with a warning).
    Python's own reading of two-digit years (69-99: 19xx) and three-digit years (year 105)
    differs from the RFC: the year is rewritten to four digits before it is read."""
    if not (value := " ".join(decode_raw_header(value, "Date", warn).split())):
        return None
    shown = value
    if "(" in value:
        value = " ".join(strip_comments(value).split())
    if " :" in value or ": " in value:
        value = _SPACED_COLON.sub(":", value)
    value = _SHORT_YEAR.sub(_full_year, value, count=1)
    try:
        parsed = parsedate_to_datetime(value)
        if parsed.tzinfo is None:  # "-0000": the time is UTC, its zone unknown (RFC 5322 3.3)
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except Exception:  # noqa: BLE001 - hostile input; ValueError, TypeError, OverflowError: garbage or out of range
        warn(f"invalid Date {shown[:60]!r}: ignored")
        return None
