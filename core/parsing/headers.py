"""Header text: 8-bit bytes, RFC 2047 encoded words, RFC 2231 parameters, address lists and
subjects.

The compat32 ``email`` API (chosen for speed:
docs/measurements.md#the-compat32-parser) hands back raw header text; these
helpers decode it and never raise. Every guess is reported to a
:class:`~.parse_warnings.Warnings` collector, and the text is still produced.
"""

from __future__ import annotations

import binascii
import re
from email.utils import getaddresses
from urllib.parse import unquote_to_bytes

from .charsets import clean, decode_bytes
from .parse_warnings import Warnings

__all__ = ["cut_between", "decode_header_value", "decode_raw_header", "header_params",
           "normalise_subject", "split_mailboxes", "strip_comments"]


def decode_raw_header(value: str, where: str, warn: Warnings) -> str:
    """A raw header value as compat32 gives it (8-bit bytes as surrogate escapes), unfolded,
    with 8-bit bytes read as UTF-8 (RFC 6532), else latin-1 with a warning."""
    if "\n" in value or "\r" in value:  # folded
        value = value.replace("\r", "").replace("\n", "")
    if value.isascii():
        return value
    return decode_bytes(value.encode("utf-8", "surrogateescape"), "utf-8",
                        f"{where} header", warn)


# RFC 2047 encoded word; encoded-text may not contain "?" (spaces are tolerated: some encoders).
_WORD = re.compile(r"=\?([^?\s]*)\?([qQbB])\?([^?]*)\?=")


def _decode_words(text: str, where: str, warn: Warnings) -> str:
    out: list[str] = []
    run, run_charset = b"", None  # adjacent words in one charset are decoded together, as
    last, previous_was_word = 0, False  # encoders split multi-byte characters across them

    def flush() -> None:
        nonlocal run, run_charset
        if run_charset is not None:
            out.append(decode_bytes(run, run_charset, where, warn))
        run, run_charset = b"", None

    for match in _WORD.finditer(text):
        gap = text[last:match.start()]
        if not (previous_was_word and (not gap or gap.isspace())):  # RFC 2047 6.2
            flush()
            out.append(gap)
        charset, encoding, encoded = match.groups()
        last = match.end()
        try:
            raw = encoded.encode("utf-8", "replace")
            if encoding in "qQ":
                data = binascii.a2b_qp(raw, header=True)
            else:
                data = binascii.a2b_base64(raw + b"=" * (-len(raw) % 4))
        except (binascii.Error, ValueError):
            warn(f"invalid encoded word in {where}: kept as is")
            flush()
            out.append(match.group(0))
            previous_was_word = False
            continue
        charset = charset.lower()
        if charset != run_charset:
            flush()
            run_charset = charset
        run += data
        previous_was_word = True
    flush()
    out.append(text[last:])
    return "".join(out)


def decode_header_value(value: str, where: str, warn: Warnings) -> str:
    """A header text (raw, or a display name from ``getaddresses``) decoded: 8-bit bytes,
    RFC 2047 encoded words, whitespace collapsed, NULs removed."""
    value = decode_raw_header(value, where, warn)
    if "=?" in value:
        value = _decode_words(value, f"{where} header", warn)
    return clean(" ".join(value.split()), f"{where} header", warn)


def cut_between(value: str, limit: int, separator: str) -> str:
    """``value`` cut to ``limit`` characters, at the last ``separator`` in its second half if
    any: between words or addresses, not inside one."""
    if len(value) <= limit:
        return value
    cut = value.rfind(separator, limit // 2, limit)
    return value[:cut if cut > 0 else limit]


_PARAM = re.compile(r';\s*([^=;\s]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')
_CONTINUATION = re.compile(r"^([^*]+)\*(?:(\d{1,3})\*?)?$")


def header_params(value: str | None, where: str, warn: Warnings) -> tuple[str, dict[str, str]]:
    """``("attachment", {"filename": "naïve.pdf"})`` from a Content-Type/-Disposition value:
    the lower-cased main value and decoded parameters (names lower-cased; RFC 2231
    continuations and charsets, and the RFC 2047 words some clients use, decoded)."""
    if not value:
        return "", {}
    value = decode_raw_header(value[:65_536], where, warn)  # longer is no real header
    main = value.split(";", 1)[0].strip().lower()
    params: dict[str, str] = {}
    pieces: dict[str, list[tuple[int, str, bool]]] = {}
    for match in _PARAM.finditer(value):
        name, text = match.group(1).lower(), match.group(2).strip()
        if text[:1] == '"':
            text = text[1:-1] if text.endswith('"') and len(text) > 1 else text[1:]
            if "\\" in text:
                text = re.sub(r"\\(.)", r"\1", text)
        continued = _CONTINUATION.match(name) if "*" in name else None
        if continued:  # RFC 2231: name*=charset'lang'%xx, name*0*=..., name*1=...
            number = int(continued.group(2) or 0)
            pieces.setdefault(continued.group(1), []).append((number, text, name.endswith("*")))
        else:
            params.setdefault(name, text)
    for name, parts in pieces.items():
        parts.sort(key=lambda part: part[0])
        charset, data = "us-ascii", []
        for index, (_, text, encoded) in enumerate(parts):
            if encoded and index == 0 and text.count("'") >= 2:
                charset, _, text = text.split("'", 2)
            data.append(unquote_to_bytes(text) if encoded else text.encode("utf-8"))
        params[name] = decode_bytes(b"".join(data), charset or "us-ascii", f"{where} parameter",
                                    warn)
    for name, text in params.items():
        if "=?" in text:
            params[name] = _decode_words(text, f"{where} parameter", warn)
    return main, params


_COMMENT_SYNTAX = re.compile(r'[()"\\\[\]]')


def strip_comments(text: str) -> str:
    """``text`` with each RFC 5322 comment (§3.2.2: parenthesised, nested, with quoted-pairs)
    replaced by one space. Parentheses inside quoted strings and domain literals are text;
    an unterminated comment is kept as it is. Linear: only the special characters are looked
    at one by one."""
    if "(" not in text:
        return text
    out: list[str] = []
    kept = 0  # text[kept:] is not copied yet
    depth, comment_start, escaped = 0, 0, -1
    quoted = literal = False
    for match in _COMMENT_SYNTAX.finditer(text):
        i, char = match.start(), match.group()
        if i == escaped:  # the character after a backslash is never syntax
            continue
        if char == "\\":
            escaped = i + 1
        elif quoted:
            quoted = char != '"'
        elif depth:
            depth += {"(": 1, ")": -1}.get(char, 0)
            if not depth:
                out.append(" ")
                kept = i + 1
        elif literal:
            literal = char != "]"
        elif char == "(":
            out.append(text[kept:i])
            depth, comment_start = 1, i
        else:
            quoted, literal = char == '"', char == "["
    out.append(text[comment_start if depth else kept:])
    return "".join(out)


_NOT_SIMPLE = re.compile(r'["();:\\\[\]]')  # quotes, comments, groups, escapes, literals


def split_mailboxes(raw: str) -> list[tuple[str, str]]:
    """``getaddresses([raw])`` (names up to whitespace), with a fast path for the common
    ``Name <a@b>, c@d`` lists: ``getaddresses`` is a pure-Python tokenizer, and was ~10 % of
    the parse time. Plain string operations only: linear whatever the input."""
    if not _NOT_SIMPLE.search(raw):
        found = []
        for item in raw.split(","):
            name, lt, address = item.strip().rpartition("<")
            if lt and address.endswith(">") and "<" not in name and ">" not in name:
                address = address[:-1].strip()
            elif not lt and ">" not in address:
                name = ""
            else:
                break
            if address and len(address.split()) > 1 or not address and name:
                break  # "a b@c", "Name <>": getaddresses has its own reading
            if address:
                found.append((" ".join(name.split()), address))
        else:
            return found
    return getaddresses([raw])


_PREFIX = re.compile(r"^(?:\s*(?:re|fwd?|aw|sv|wg|vs|tr|antw|rif|res|enc|odp)\s*"
                     r"(?:(?:\[\d+\]|\(\d+\))\s*)?[:：])+", re.IGNORECASE)


def normalise_subject(subject: str) -> str:
    """``subject`` without reply/forward prefixes (Re:, Fwd:, AW:, SV:, WG:, Re[2]: ...),
    case-folded and whitespace-collapsed: the same for a message and its replies."""
    return " ".join(_PREFIX.sub("", subject).split()).casefold()
