"""Parsing made faster without changing what it reads: core/parsing/feed_parser.py gives the
same compat32 tree as the standard library's parser (multipart boundaries matched without a
regular expression compiled per boundary); base64_runs' possessive pattern finds the same runs."""

from __future__ import annotations

import re
import sys
from email.feedparser import BytesFeedParser
from email.message import Message
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from salesinbox.core.parsing import base64_runs, feed_parser
from salesinbox.core.parsing.feed_parser import BOUNDARY_SHIM_ACTIVE, FastBytesFeedParser

from .servers.messages import generate_messages

CORPUS = Path(__file__).parent / "corpus"


def _tree(msg: Message) -> object:
    """Everything compat32 parsed: headers as received, preamble, epilogue, payloads,
    defects, the unixfrom line; nested parts recursively."""
    payload = msg._payload  # type: ignore[attr-defined]
    body = [_tree(part) for part in payload] if isinstance(payload, list) else payload
    return (type(msg).__name__, msg.get_unixfrom(), list(msg.raw_items()),
            msg.preamble, msg.epilogue, [type(d).__name__ for d in msg.defects], body)


def _parse(cls: type[BytesFeedParser], raw: bytes) -> object:
    (parser := cls()).feed(raw)
    return _tree(parser.close())


def _assert_same(raw: bytes) -> None:
    assert _parse(FastBytesFeedParser, raw) == _parse(BytesFeedParser, raw)


def test_the_shim_is_used_on_this_python() -> None:
    # a silent fallback to the stock parser would make the tests below pass vacuously
    assert sys.version_info[:2] == (3, 11)
    assert BOUNDARY_SHIM_ACTIVE
    assert FastBytesFeedParser._parsegen is not BytesFeedParser._parsegen  # type: ignore[attr-defined]


def test_no_regex_is_compiled_per_boundary(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled: list[str] = []
    real = re.compile

    def counting(pattern: str, flags: int = 0) -> re.Pattern[str]:
        compiled.append(pattern)
        return real(pattern, flags)

    monkeypatch.setattr(re, "compile", counting)
    raw = (b"Content-Type: multipart/mixed; boundary=\"a.b*c\"\r\n\r\n--a.b*c\r\n\r\nx\r\n"
           b"--a.b*c--\r\n")
    (parser := FastBytesFeedParser()).feed(raw)
    assert parser.close().get_payload(0).get_payload() == "x"
    assert compiled == []


def test_corpus_messages_parse_to_the_same_tree() -> None:
    files = sorted(CORPUS.glob("*.eml"))
    assert len(files) > 80
    for path in files:
        raw = path.read_bytes()
        _assert_same(raw)
        _assert_same(raw.replace(b"\r\n", b"\n"))


def test_generated_messages_parse_to_the_same_tree() -> None:
    for raw in generate_messages(300, seed=11):
        _assert_same(raw)


def _multipart(boundary: str, lines: list[str], linesep: str) -> bytes:
    head = f'Content-Type: multipart/mixed; boundary="{boundary}"{linesep}{linesep}'
    return (head + linesep.join(lines)).encode("utf-8", "surrogateescape")


# Boundaries with regular-expression metacharacters, and every way a line can almost be one.
_BOUNDARIES = ["b", "a.b", "(x)+[y]*?", "b\\d", "b$", "^b", "b|c", "b{2}", "  b  ", "é-ü", "--b"]
_LINE_SHAPES = ["--{b}", "--{b}--", "--{b} \t", "--{b}-- ", "--{b}x", "--{b}--x", " --{b}", "-{b}",
                "--{b}\r", "--{b}---", "--{B}", "text", "", "Content-Type: text/plain", "--{b}--\r\r",
                "--other", "--{b}{b}"]


@pytest.mark.parametrize("boundary", _BOUNDARIES)
@pytest.mark.parametrize("linesep", ["\r\n", "\n", "\r"])
def test_boundary_lines_of_every_shape(boundary: str, linesep: str) -> None:
    for shape in _LINE_SHAPES:
        line = shape.format(b=boundary, B=boundary.upper())
        lines = ["preamble", f"--{boundary}", "", "one", line, "two", f"--{boundary}", "X: y", "",
                 "three", line, f"--{boundary}--", "epilogue", line]
        _assert_same(_multipart(boundary, lines, linesep))
        _assert_same(_multipart(boundary, [line, "body", f"--{boundary}--"], linesep))
        # nested: the outer boundary ends the inner multipart too (RFC 2046 §5.1.2)
        inner = f'Content-Type: multipart/alternative; boundary="{boundary}i"'
        _assert_same(_multipart(boundary, [f"--{boundary}", inner, "", f"--{boundary}i", "",
                                           "in", line, f"--{boundary}", "", "out", line,
                                           f"--{boundary}--"], linesep))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["b", "x.y", "+"]),
       st.lists(st.one_of(st.sampled_from(_LINE_SHAPES), st.text(max_size=12)), max_size=25),
       st.sampled_from(["\r\n", "\n", "\r"]))
def test_random_multiparts_parse_to_the_same_tree(boundary: str, shapes: list[str],
                                                  linesep: str) -> None:
    lines = [s.replace("{b}", boundary).replace("{B}", boundary.upper()) for s in shapes]
    _assert_same(_multipart(boundary, lines, linesep))


def test_an_unexpected_stdlib_pattern_is_refused() -> None:
    with pytest.raises(AssertionError):
        feed_parser._ReForParsegen.compile("(?P<sep>--b)$")


def test_possessive_run_pattern_finds_what_the_backtracking_one_found() -> None:
    plain = re.compile(base64_runs._RUN.pattern.replace(b"++", b"+").replace(b",}+", b",}"))
    assert plain.pattern != base64_runs._RUN.pattern
    line = b"QUJD" * 19
    shapes = [raw for raw in generate_messages(300, seed=5) if b"ase64" in raw] + [
        b"x\n" + (line + b"\r\n") * 40 + b"--b\r\n",
        b"x\n" + (line + b"\n") * 31 + b"!\n" + (line + b"\n") * 33,
        b"x\n" + (line + b"\r\n") * 20 + (line + b"\r\r\n") + (line + b"\n") * 40 + line,
        b"x\n" + (line + b" \n") * 40 + (line + b"\n") * 32 + b"\n",
    ]
    assert sum(1 for raw in shapes if base64_runs._RUN.search(raw)) > 30
    for raw in shapes:
        assert ([m.span(1) for m in base64_runs._RUN.finditer(raw)]
                == [m.span(1) for m in plain.finditer(raw)])
