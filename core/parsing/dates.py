"""The Date header as a timezone-aware UTC datetime."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from .headers import decode_raw_header
from .parse_warnings import Warnings

__all__ = ["decode_date"]


def decode_date(value: str, warn: Warnings) -> datetime | None:
    """A Date header as timezone-aware UTC; None if empty, or unreadable (with a warning)."""
    if not (value := " ".join(decode_raw_header(value, "Date", warn).split())):
        return None
    try:
        parsed = parsedate_to_datetime(value)
        if parsed.tzinfo is None:  # "-0000": the time is UTC, its zone unknown (RFC 5322 3.3)
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except Exception:  # noqa: BLE001 - hostile input; ValueError, TypeError, OverflowError: garbage or out of range
        warn(f"invalid Date {value[:60]!r}: ignored")
        return None
