"""The header-reading rules of issue 13 in isolation: the header block repair, comments,
obsolete routes, RFC 5322 §4.3 years, and their cost on hostile input (linear, never
quadratic). Whole messages for each rule are in tests/corpus/ (tests/test_corpus.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from salesinbox.core.parsing.addresses import Address, read_addresses
from salesinbox.core.parsing.dates import decode_date
from salesinbox.core.parsing.header_block import repair_header_block
from salesinbox.core.parsing.headers import strip_comments
from salesinbox.core.parsing.message_parser import parse_message
from salesinbox.core.parsing.parse_warnings import Warnings

HEAD = b"From: a@example.com\r\nDate: Mon, 2 Jan 2006 15:04:05 +0000\r\n"


def test_a_block_without_odd_lines_is_returned_as_is() -> None:
    raw = HEAD + b"Subject: x\r\n\r\nbody line without: a colon rule\r\nno colon\r\n"
    warn = Warnings()
    assert repair_header_block(raw, warn) is raw
    assert warn.as_tuple() == ()


def test_repairs_keep_every_byte_where_it_was() -> None:
    raw = HEAD + b"Subject \t: x\r\nbroken line\r\nTo: b@example.com\r\n\r\nbody\r\n"
    warn = Warnings()
    repaired = repair_header_block(raw, warn)
    assert len(repaired) == len(raw)
    assert repaired == raw.replace(b"Subject \t:", b"Subject: \t").replace(b"broken", b":roken")
    assert warn.as_tuple() == ("malformed header line skipped: 'broken line'",)


def test_a_line_with_a_space_in_its_name_is_no_field() -> None:
    parsed = parse_message(HEAD + b"Not A Field: x\r\nTo: b@example.com\r\n\r\nbody\r\n")
    assert parsed.to == (Address("", "b@example.com"),)
    assert parsed.warnings == ("malformed header line skipped: 'Not A Field: x'",)


def test_lines_after_the_last_field_start_the_body() -> None:
    """Without the empty separator line, the body's first lines are not skipped as headers."""
    parsed = parse_message(HEAD + b"To: b@example.com\r\nDear Ann,\r\nthanks.\r\n\r\nBob\r\n")
    assert parsed.to == (Address("", "b@example.com"),)
    assert parsed.text.split() == ["Dear", "Ann,", "thanks.", "Bob"]


def test_the_body_is_never_repaired() -> None:
    raw = HEAD + b"\r\nSubject : in the body\r\nbroken\r\nTo: x@example.com\r\n"
    assert parse_message(raw).text.splitlines() == ["Subject : in the body", "broken", "To: x@example.com"]


@pytest.mark.parametrize(("text", "stripped"), [
    ("dana(CFO)@example.com", "dana @example.com"),
    ("a(b(c)d)e", "a e"),
    ('"Smith (Sales)" <s@x>', '"Smith (Sales)" <s@x>'),  # quoted: no comment
    ("x@[1.2(3]", "x@[1.2(3]"),  # in a domain literal: no comment
    (r"a(b\)c)d", "a d"),  # a quoted-pair inside a comment
    (r"a\(b", r"a\(b"),  # an escaped parenthesis opens nothing
    ("a(b)c(unterminated", "a c(unterminated"),  # kept as it is
])
def test_comments_are_stripped(text: str, stripped: str) -> None:
    assert strip_comments(text) == stripped


def test_routes_and_legacy_names() -> None:
    warn = Warnings()
    found = read_addresses(["Mary <@relay.example,@b.example:mary@x.test>, joe@x.test (Joe (Jr.)),"
                            " ann@x.test (Ann \\(A\\))"], "To", warn)
    assert found == (Address("Mary", "mary@x.test"), Address("", "joe@x.test"), Address("Ann (A)", "ann@x.test"))
    assert warn.as_tuple() == ()


@pytest.mark.parametrize(("value", "year"), [
    ("1 Jan 00 00:00 +0000", 2000), ("1 Jan 49 00:00 +0000", 2049), ("1 Jan 50 00:00 +0000", 1950),
    ("1 Jan 99 00:00 +0000", 1999), ("1 Jan 68 00:00 +0000", 1968), ("1 Jan 69 00:00 +0000", 1969),
    ("1 Jan 100 00:00 +0000", 2000), ("1 Jan 999 00:00 +0000", 2899), ("1 Jan 2049 00:00 +0000", 2049),
    ("Sat, 01-Jan-55 00:00:00 GMT", 1955),
])
def test_rfc_5322_years(value: str, year: int) -> None:
    assert decode_date(value, Warnings()) == datetime(year, 1, 1, tzinfo=UTC)


# Hostile input: each must take well under a second (quadratic work would take minutes).
HOSTILE = {
    "many malformed lines, then a field": HEAD + b"x\r\n" * 100_000 + b"To: a@b.example\r\n\r\nbody",
    "no empty line, long body": HEAD + b"Subject: x\r\nbroken\r\n" + b"line\r\n" * 200_000,
    "deeply nested comment": b"To: " + b"(" * 100_000 + b"a@b.example\r\n\r\n",
    "many comments": b"To: " + b"a@b.example (c), " * 10_000 + b"\r\n\r\n",
    "at signs for the legacy form": b"To: " + b"a@" * 90_000 + b" (c)\r\n\r\n",
    "a long route": b"To: <" + b"@a.example," * 15_000 + b":a@b.example>\r\n\r\n",
    "a date of comments": b"Date: " + b"(x" * 50_000 + b"\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_headers_are_read_in_linear_time(name: str) -> None:
    start = time.perf_counter()
    parse_message(HOSTILE[name])
    assert time.perf_counter() - start < 2.0
