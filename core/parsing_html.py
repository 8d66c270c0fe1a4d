"""Text decoding for the message parser: charsets, encoded words, HTML, snippets.

The compat32 ``email`` API (chosen for speed, NOTES.md) hands back undecoded bytes and header
text; these helpers turn them into ``str`` and never raise. Every guess (an unknown charset,
bytes that are not what the charset says, raw 8-bit header bytes) is reported to a
:class:`Warnings` collector in a short sentence, and the text is still produced.
HTML is read with the standard :mod:`html.parser`: what the CRM needs from mail HTML is readable
text for the snippet and search, not layout.
"""

from __future__ import annotations

import binascii
import codecs
import re
from functools import lru_cache
from html import unescape
from html.parser import HTMLParser
from urllib.parse import unquote_to_bytes

__all__ = ["Warnings", "clean", "decode_bytes", "decode_header_value", "decode_raw_header",
           "header_params", "html_to_text", "make_snippet"]

MAX_WARNINGS = 50


class Warnings:
    """Collects a message's warnings: each once, in order, at most :data:`MAX_WARNINGS`."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: dict[str, None] = {}

    def __call__(self, text: str) -> None:
        if len(self._items) < MAX_WARNINGS:
            self._items[text[:300]] = None
        else:
            self._items.setdefault("more warnings not shown", None)

    def as_tuple(self) -> tuple[str, ...]:
        return tuple(self._items)


_SURROGATE = re.compile("[\ud800-\udfff]")


def clean(text: str, where: str, warn: Warnings) -> str:
    """``text`` fit for any database: NUL characters removed (PostgreSQL refuses them, with a
    warning) and lone surrogates replaced by U+FFFD (they cannot be encoded as UTF-8)."""
    if "\x00" in text:
        text = text.replace("\x00", "")
        warn(f"NUL bytes removed from {where}")
    if not text.isascii() and _SURROGATE.search(text):
        text = _SURROGATE.sub("\ufffd", text)
    return text


# Python codecs that are not character sets: a declared "charset=unicode_escape" is unknown.
_NOT_CHARSETS = frozenset({"undefined", "unicode_escape", "raw_unicode_escape", "idna",
                           "punycode"})
# Labels whose text is in practice written in a superset: decode with the superset.
_SUPERSETS = {"ascii": "utf-8", "gb2312": "gb18030", "gbk": "gb18030", "euc_kr": "cp949",
              "shift_jis": "cp932", "big5": "big5hkscs"}


@lru_cache(maxsize=512)
def _codec(label: str) -> str | None:
    """The Python codec for a MIME charset label ("utf8", "Latin-1", "utf-8*en"), or None."""
    name = label.strip().strip("\"'").split("*", 1)[0].strip()
    if not name or len(name) > 40:
        return None
    try:
        codec = codecs.lookup(name).name
        b"a".decode(codec)  # LookupError for bytes-to-bytes codecs (base64, zlib, rot13 ...)
    except LookupError:
        return None
    except Exception:  # a text codec that dislikes b"a" (utf-16) is still a text codec
        codec = codecs.lookup(name).name
    if codec in _NOT_CHARSETS:
        return None
    return _SUPERSETS.get(codec, codec)


_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}"
                            rb"|[\xf0-\xf4][\x80-\xbf]{3}")


def _strict(data: bytes, codec: str, final: bool) -> str:
    if final:
        return data.decode(codec)
    return codecs.getincrementaldecoder(codec)().decode(data, False)  # drops a cut-off char


def decode_bytes(data: bytes, charset: str | None, where: str, warn: Warnings,
                 *, final: bool = True) -> str:
    """Decode ``data`` declared as ``charset`` (None or "": us-ascii, read as UTF-8).

    When the charset is unknown or the bytes are not valid in it: UTF-8 if they are valid
    UTF-8, else UTF-8 with replacement characters if they contain UTF-8 sequences, else
    latin-1 (which reads any byte); each with a warning naming ``where``. ``final=False``
    means ``data`` was cut short: a character cut in two at the end is dropped silently.
    """
    label = (charset or "").strip()
    codec = _codec(label) if label else "utf-8"
    if codec is not None:
        try:
            return _strict(data, codec, final)
        except Exception:  # UnicodeDecodeError, or a codec's own error (utf-7, iso-2022)
            problem = f"invalid {label or 'us-ascii'} bytes in {where}"
    else:
        problem = f"unknown charset {label[:40]!r} in {where}"
    if codec != "utf-8":
        try:
            text = _strict(data, "utf-8", final)
            warn(f"{problem}: decoded as utf-8")
            return text
        except UnicodeError:
            pass
    if _UTF8_SEQUENCE.search(data):
        warn(f"{problem}: decoded as utf-8 with replacement characters")
        return data.decode("utf-8", "replace")
    warn(f"{problem}: decoded as latin-1")
    return data.decode("latin-1")


def decode_raw_header(value: str, where: str, warn: Warnings) -> str:
    """A raw header value as compat32 gives it (8-bit bytes as surrogate escapes), unfolded,
    with 8-bit bytes read as UTF-8 (RFC 6532), else latin-1 with a warning."""
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


_PARAM = re.compile(r';\s*([^=;\s]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')
_CONTINUATION = re.compile(r"^([^*]+)\*(?:(\d{1,3})\*?)?$")


def header_params(value: str | None, where: str, warn: Warnings) -> tuple[str, dict[str, str]]:
    """``("attachment", {"filename": "naïve.pdf"})`` from a Content-Type/-Disposition value:
    the lower-cased main value and decoded parameters (names lower-cased; RFC 2231
    continuations and charsets, and the RFC 2047 words some clients use, decoded)."""
    if not value:
        return "", {}
    value = decode_raw_header(value, where, warn)
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
        charset, data = "us-ascii", b""
        for index, (_, text, encoded) in enumerate(parts):
            if encoded and index == 0 and text.count("'") >= 2:
                charset, _, text = text.split("'", 2)
            data += unquote_to_bytes(text) if encoded else text.encode("utf-8")
        params[name] = decode_bytes(data, charset or "us-ascii", f"{where} parameter", warn)
    for name, text in params.items():
        if "=?" in text:
            params[name] = _decode_words(text, f"{where} parameter", warn)
    return main, params


# Elements whose content is never visible text.
_SKIP = frozenset({"script", "style", "head", "title", "template", "noscript", "xml"})
# Elements that end a paragraph (a blank line) or a line.
_PARAGRAPH = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol",
                        "blockquote", "pre", "hr", "dl"})
_LINE = frozenset({"br", "div", "li", "tr", "dd", "dt", "section", "article", "header",
                   "footer", "address", "center", "caption", "form", "fieldset"})
_VOID = frozenset({"br", "hr", "img", "meta", "link", "input", "col", "area", "base", "wbr"})
_NEWLINE, _PARA = object(), object()


class _TextExtractor(HTMLParser):
    """Collects visible text as (text, quote depth) pieces with line/paragraph marks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pieces: list[tuple[object, int]] = []
        self.skip = 0
        self.quote = 0
        self.pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skip += 1
        elif tag in _PARAGRAPH:
            self.pieces.append((_PARA, self.quote))
        elif tag in _LINE:
            self.pieces.append((_NEWLINE, self.quote))
        if tag == "blockquote":
            self.quote += 1
        elif tag == "pre":
            self.pre += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID:  # <br/> is one line break, not a start and an end tag
            if tag == "br":
                self.pieces.append((_NEWLINE, self.quote))
            elif tag == "hr":
                self.pieces.append((_PARA, self.quote))
        else:
            self.handle_starttag(tag, attrs)
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag == "blockquote":
            self.quote = max(0, self.quote - 1)
            self.pieces.append((_PARA, self.quote))
        elif tag in _PARAGRAPH:
            if tag == "pre":
                self.pre = max(0, self.pre - 1)
            self.pieces.append((_PARA, self.quote))
        elif tag in _LINE:
            self.pieces.append((_NEWLINE, self.quote))

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        if self.pre:  # preformatted: its line breaks are real
            first = True
            for line in data.split("\n"):
                if not first:
                    self.pieces.append((_NEWLINE, self.quote))
                self.pieces.append((line, self.quote))
                first = False
        else:
            self.pieces.append((data, self.quote))

    def text(self) -> str:
        """The collected text: whitespace collapsed per line, quoted lines prefixed "> "."""
        lines: list[str] = []
        current: list[str] = []
        depth = 0

        def flush(paragraph: bool) -> None:
            line = " ".join("".join(current).split())
            current.clear()
            if line:
                lines.append("> " * depth + line)
            if paragraph and lines and lines[-1]:
                lines.append("")

        for piece, quote in self.pieces:
            if piece is _NEWLINE or piece is _PARA:
                flush(piece is _PARA)
            else:
                if not current:
                    depth = quote
                current.append(piece)  # type: ignore[arg-type]
        flush(False)
        while lines and not lines[-1]:
            lines.pop()
        return "\n".join(lines)


_SCRIPT_STYLE = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.I | re.S)
_TAG = re.compile(r"<[^>]*>")


def html_to_text(html: str) -> str:
    """Return the visible text of ``html``; never raises.

    Scripts, styles and the head are dropped, entities unescaped, block elements become line
    breaks (paragraphs a blank line), whitespace is collapsed within lines, and text inside
    ``<blockquote>`` (quoted replies) is prefixed with ``"> "`` per level, as a mail client
    quotes, so that the snippet can leave it out.
    """
    extractor = _TextExtractor()
    try:
        extractor.feed(html)
        extractor.close()
        return extractor.text()
    except Exception:  # html.parser can still trip on some malformed markup: strip tags crudely
        stripped = _TAG.sub(" ", _SCRIPT_STYLE.sub(" ", html))
        lines = (" ".join(line.split()) for line in unescape(stripped).splitlines())
        return "\n".join(line for line in lines if line)


SNIPPET_CHARS = 200
_SNIPPET_SCAN = 65_536  # characters of the body looked at: a snippet never needs more
# "On <date>, <name> wrote:", "Le ..., <name> a écrit :", "Am <date> schrieb <name>:" ...
_ATTRIBUTION = re.compile(r"\b(?:(?:wrote|a\s+écrit|escribió|ha\s+scritto|skrev)\s*"
                          r"|(?:schrieb|schreef)\b.*):$", re.IGNORECASE)
_ATTRIBUTION_START = re.compile(r"^(?:on|am|le|el|il|den|op)\s", re.IGNORECASE)
_QUOTE_END = re.compile(r"^(?:-{2,}\s*original message\s*-{2,}|_{10,}|-- ?)$", re.IGNORECASE)


def make_snippet(text: str) -> str:
    """The first ~200 characters of ``text``, whitespace-collapsed, without quoted lines
    ("> ..."), the "On ... wrote:" line introducing them, or what follows an Outlook
    "-----Original Message-----" separator or a "-- " signature delimiter."""
    kept: list[str] = []
    length, start, end = 0, 0, min(len(text), _SNIPPET_SCAN)
    while start < end and length <= SNIPPET_CHARS * 4:  # line by line, never the whole body
        newline = text.find("\n", start, end)
        stop = end if newline < 0 else newline
        stripped = text[start:stop].strip()
        start = stop + 1
        if not stripped or stripped[0] == ">":
            continue
        if stripped[0] in "-_" and _QUOTE_END.match(stripped):
            break
        if stripped[-1] == ":" and _ATTRIBUTION.search(stripped):
            # "On Mon, 5 Jan 2026, Bob <bob@x>\nwrote:" is often wrapped onto two lines.
            if (not _ATTRIBUTION_START.match(stripped) and kept
                    and _ATTRIBUTION_START.match(kept[-1])):
                length -= len(kept.pop()) + 1
            continue
        kept.append(stripped)
        length += len(stripped) + 1
    return " ".join(" ".join(kept).split())[:SNIPPET_CHARS].rstrip()
