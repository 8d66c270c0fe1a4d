"""Turn one raw RFC 5322 message into the values the store saves (SPEC §2 Message, §4).

Parsing is what a sync spends its time on (NOTES.md), so the MIME structure comes from the
standard ``email`` package with its default compat32 policy, about 3.3 times faster than
``policy.default``. compat32 leaves charsets, encoded words and 8-bit headers to the caller:
:mod:`salesinbox.core.parsing_html` decodes text, this module reads headers and walks the parts.
The rule throughout: never raise. What cannot be read gets its best reading and a short
human-readable line in ``ParsedMessage.warnings``; the message is stored anyway.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from email.feedparser import BytesFeedParser
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import getaddresses, parsedate_to_datetime
from functools import lru_cache
from typing import TypeVar

from .addresses import normalise_email
from .parsing_html import (Warnings, clean, decode_bytes, decode_header_value, decode_raw_header,
                           header_params, html_to_text, make_snippet)

__all__ = ["Address", "AttachmentInfo", "ParsedMessage", "counterparties", "direction_for",
           "parse_message"]

MAX_ADDRESSES = 1000  # per header: a mailing-list blast is not a CRM conversation
MAX_ADDRESS_HEADER_CHARS = 200_000  # ~1000 addresses with names; getaddresses is pure Python
MAX_SUBJECT_CHARS = 2000
MAX_NAME_CHARS = 500  # message_address.name, message.from_name
MAX_ID_CHARS = 998  # message.message_id: RFC 5322's line limit
MAX_REFERENCES = 500
MAX_BODY_BYTES = 2 * 1024 * 1024  # per stored text and HTML body, in UTF-8
MAX_PARTS = 500
MAX_DEPTH = 32  # nesting of multiparts walked
T = TypeVar("T")
_ADDRESS_HEADERS = ("from", "to", "cc", "bcc", "reply-to", "sender")
_WANTED = frozenset(_ADDRESS_HEADERS + ("message-id", "in-reply-to", "references", "subject",
                                        "date"))


@dataclass(frozen=True, slots=True)
class Address:
    """One mailbox: ``name`` decoded for display ("" if none), ``address`` normalised."""

    name: str
    address: str


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    """One attachment's metadata: ``size`` is the decoded size in bytes; ``content_id`` is
    without angle brackets (as ``cid:`` URLs in the HTML name it); ``is_inline`` marks a part
    the HTML shows in place (it has a Content-ID and is not ``Content-Disposition: attachment``).
    """

    filename: str
    content_type: str
    size: int
    content_id: str | None
    is_inline: bool


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """What :func:`parse_message` could read from one message (see its docstring)."""

    message_id: str | None
    in_reply_to: str | None
    references: tuple[str, ...]
    thread_key: str
    subject: str
    from_: tuple[Address, ...]
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    bcc: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    date: datetime | None
    text: str
    html: str
    snippet: str
    attachments: tuple[AttachmentInfo, ...]
    has_attachments: bool
    size: int
    warnings: tuple[str, ...]


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse ``raw`` (one RFC 5322 message as fetched by IMAP); never raises.

    - Message-ID, In-Reply-To, References: ``<...>`` msg-ids, whitespace removed; ``thread_key``
      is the first References id, else In-Reply-To, else the own Message-ID, else
      ``"subject:" + sha1(subject without Re:/Fwd: prefixes + sorted From/To/Cc addresses)``.
    - Subject and display names are RFC 2047-decoded and whitespace-collapsed; addresses are
      normalised with :func:`~salesinbox.core.addresses.normalise_email` (an address that does
      not normalise is dropped with a warning), de-duplicated within each header.
    - ``date`` is timezone-aware UTC, or None (with a warning when the header was unreadable).
    - ``text``/``html`` are the decoded bodies (text derived from the HTML when there is no
      text/plain), newlines normalised to ``\\n``, each capped at 2 MB of UTF-8;
      ``attachments`` lists every other leaf part (see :class:`_Body` for the rules).
    - ``warnings`` lists, in short sentences, everything that could not be read as declared.
    """
    warn = Warnings()
    if not isinstance(raw, bytes):
        try:
            raw = bytes(raw)  # bytearray, memoryview
        except Exception:
            warn(f"input is {type(raw).__name__}, not bytes: nothing parsed")
            raw = b""
    if not raw.strip():
        warn("empty message")
    msg = _parse_mime(raw, warn)
    headers: dict[str, list[str]] = {}
    for name, value in msg.raw_items():
        key = name.strip().lower()
        if key in _WANTED:
            headers.setdefault(key, []).append(value if isinstance(value, str) else str(value))

    message_id, in_reply_to, references = _guard(warn, "ids", (None, None, ()), _ids, headers)
    subject = _guard(warn, "Subject", "", _subject, headers)
    addresses = {name: _guard(warn, name.title(), (), _address_header, headers, name)
                 for name in _ADDRESS_HEADERS}
    from_ = addresses["from"]
    if not from_ and addresses["sender"]:
        from_ = addresses["sender"]
        warn("no From address: the Sender header is used")
    date = _guard(warn, "Date", None, _date, headers)
    text, html, attachments = _guard(warn, "body", ("", "", ()), _read_body, msg)
    snippet = _guard(None, "snippet", "", make_snippet, text)
    thread_key = references[0] if references else in_reply_to or message_id or _subject_key(
        subject, from_ + addresses["to"] + addresses["cc"])
    return ParsedMessage(
        message_id=message_id, in_reply_to=in_reply_to, references=references,
        thread_key=thread_key, subject=subject, from_=from_, to=addresses["to"],
        cc=addresses["cc"], bcc=addresses["bcc"], reply_to=addresses["reply-to"], date=date,
        text=text, html=html, snippet=snippet, attachments=attachments,
        has_attachments=any(not a.is_inline for a in attachments), size=len(raw),
        warnings=warn.as_tuple(),
    )


def direction_for(parsed: ParsedMessage, own_addresses: set[str], folder_is_sent: bool) -> str:
    """``"SENT"`` when the message is in the Sent folder or is From one of ``own_addresses``
    (the account address and its From addresses, compared normalised), else ``"RECEIVED"``."""
    if folder_is_sent:
        return "SENT"
    own = _normalised_set(own_addresses)
    return "SENT" if any(a.address in own for a in parsed.from_) else "RECEIVED"


def counterparties(parsed: ParsedMessage, own_addresses: set[str]) -> list[Address]:
    """Every From/To/Cc/Bcc address that is not one of ``own_addresses`` (SPEC §2), each once,
    in order of appearance (the first occurrence's display name wins)."""
    own = _normalised_set(own_addresses)
    seen: dict[str, Address] = {}
    for address in parsed.from_ + parsed.to + parsed.cc + parsed.bcc:
        if address.address not in own and address.address not in seen:
            seen[address.address] = address
    return list(seen.values())


# --------------------------------------------------------------------------- helpers

def _guard(warn: Warnings | None, what: str, default: T, fn: Callable[..., T],
           *args: object) -> T:
    """``fn(*args, warn)``, or ``default`` and a warning if it raises: an input that no rule
    foresaw must cost one field, not the whole message (nor the sync)."""
    try:
        return fn(*args, warn) if warn is not None else fn(*args)
    except Exception as exc:
        if warn is not None:
            warn(f"could not read the {what}: {type(exc).__name__}")
        return default


def _parse_mime(raw: bytes, warn: Warnings) -> Message:
    try:  # message_from_bytes(raw) without its 8 KB read loop: ~5 % faster; compat32 policy
        parser = BytesFeedParser()
        parser.feed(raw)
        return parser.close()
    except RecursionError:
        warn("MIME structure nested too deeply: only the headers are read")
    except Exception as exc:
        warn(f"unreadable MIME structure ({type(exc).__name__}): only the headers are read")
    try:
        return BytesHeaderParser().parsebytes(raw)
    except Exception:
        return Message()


_MSG_ID = re.compile(r"<([^<>]*)>")


def _msg_ids(value: str, *, bare_ok: bool) -> list[str]:
    """The ``<...>`` ids in ``value`` (whitespace inside removed); ids written without angle
    brackets are accepted when they contain "@" (or always, for the own Message-ID)."""
    ids = ["<" + "".join(found.split()) + ">" for found in _MSG_ID.findall(value)]
    if not ids:
        tokens = value.replace(",", " ").split()
        if bare_ok:
            ids = [f"<{tokens[0]}>"] if len(tokens) == 1 else []
        else:
            ids = [f"<{token}>" for token in tokens if "@" in token]
    return [i for i in ids if 2 < len(i) <= MAX_ID_CHARS]


def _ids(headers: dict[str, list[str]], warn: Warnings) -> tuple[str | None, str | None,
                                                                   tuple[str, ...]]:
    def first(name: str, bare_ok: bool) -> list[str]:
        values = headers.get(name)
        if not values:
            return []
        value = clean(decode_raw_header(values[0], name, warn), name, warn)
        return _msg_ids(value, bare_ok=bare_ok)

    own = first("message-id", True)
    reply = first("in-reply-to", False)
    references = list(dict.fromkeys(first("references", False)))  # in order, each once
    if len(references) > MAX_REFERENCES:
        warn(f"more than {MAX_REFERENCES} References: the oldest kept, the rest ignored")
        references = references[:MAX_REFERENCES]
    return (own[0] if own else None), (reply[0] if reply else None), tuple(references)


def _subject(headers: dict[str, list[str]], warn: Warnings) -> str:
    values = headers.get("subject")
    if not values:
        return ""
    subject = clean(decode_header_value(values[0][:MAX_SUBJECT_CHARS * 8], "Subject", warn),
                    "Subject", warn)
    if len(subject) > MAX_SUBJECT_CHARS:
        warn(f"Subject longer than {MAX_SUBJECT_CHARS} characters: truncated")
        subject = subject[:MAX_SUBJECT_CHARS]
    return subject


@lru_cache(maxsize=8192)  # the same few addresses recur in every message; IDNA is slow
def _normalised(address: str) -> str | None:
    try:
        return normalise_email(address)
    except Exception:
        return None


def _normalised_set(addresses: set[str]) -> set[str]:
    return {_normalised(a) or a.strip().lower() for a in addresses}


def _address_header(headers: dict[str, list[str]], name: str,
                    warn: Warnings) -> tuple[Address, ...]:
    values = headers.get(name)
    if not values:
        return ()
    label = name.title()
    raw = decode_raw_header(", ".join(values), label, warn)
    if len(raw) > MAX_ADDRESS_HEADER_CHARS:  # cut between addresses, not inside one
        cut = raw.rfind(",", 0, MAX_ADDRESS_HEADER_CHARS)
        raw = raw[:cut if cut > 0 else MAX_ADDRESS_HEADER_CHARS]
        warn(f"{label} header longer than {MAX_ADDRESS_HEADER_CHARS} characters: truncated")
    found: dict[str, Address] = {}
    for display, address in _mailboxes(raw):
        if not address:  # empty groups, "undisclosed-recipients:;"
            continue
        if len(found) >= MAX_ADDRESSES:
            warn(f"more than {MAX_ADDRESSES} addresses in {label}: the rest ignored")
            break
        normalised = _normalised(address)
        if normalised is None and "=?" in address:  # encoded words are not allowed here, but
            address = decode_header_value(address, label, warn)  # some generators write them
            normalised = _normalised(address)
        if normalised is None:
            warn(f"invalid address {address[:80]!r} in {label}: dropped")
        elif normalised not in found:
            display = clean(decode_header_value(display, label, warn), label, warn)
            found[normalised] = Address(display[:MAX_NAME_CHARS], normalised)
    return tuple(found.values())


_NOT_SIMPLE = re.compile(r'["();:\\\[\]]')  # quotes, comments, groups, escapes, literals
_SIMPLE_MAILBOX = re.compile(r"\s*(?:([^<>]*?)\s*<([^<>\s]*)>|([^<>\s]+))\s*")


def _mailboxes(raw: str) -> list[tuple[str, str]]:
    """``getaddresses([raw])``, with a fast path for the common ``Name <a@b>, c@d`` lists:
    ``getaddresses`` is a pure-Python tokenizer and was ~10 % of the parse time."""
    if not _NOT_SIMPLE.search(raw):
        found = []
        for item in raw.split(","):
            match = _SIMPLE_MAILBOX.fullmatch(item)
            if match is None:
                if item.strip():
                    break
                continue
            name, bracketed, bare = match.groups()
            found.append(("", bare) if bare is not None else (name or "", bracketed))
        else:
            return found
    return getaddresses([raw])


def _date(headers: dict[str, list[str]], warn: Warnings) -> datetime | None:
    values = headers.get("date")
    if not values:
        return None
    value = " ".join(decode_raw_header(values[0], "Date", warn).split())
    try:
        parsed = parsedate_to_datetime(value)
        if parsed.tzinfo is None:  # "-0000": the time is UTC, its zone unknown (RFC 5322 3.3)
            parsed = parsed.replace(tzinfo=timezone.utc)
        return parsed.astimezone(timezone.utc)
    except Exception:  # ValueError, TypeError, OverflowError: out-of-range or garbage
        warn(f"invalid Date {value[:60]!r}: ignored")
        return None


_PREFIX = re.compile(
    r"^(?:\s*(?:re|fwd?|aw|sv|wg|vs|tr|antw|rif|res|enc|odp)\s*(?:\[\d+\]|\(\d+\))?\s*[:：])+",
    re.IGNORECASE)


def normalise_subject(subject: str) -> str:
    """``subject`` without reply/forward prefixes (Re:, Fwd:, AW:, SV:, WG:, Re[2]: ...),
    case-folded and whitespace-collapsed: the same for a message and its replies."""
    return " ".join(_PREFIX.sub("", subject).split()).casefold()


def _subject_key(subject: str, participants: tuple[Address, ...]) -> str:
    # Without ids, group by subject and people. Bcc is left out: only the sender's copy has it.
    people = ",".join(sorted({a.address for a in participants}))
    digest = hashlib.sha1(f"{normalise_subject(subject)}\n{people}".encode(
        "utf-8", "surrogatepass")).hexdigest()
    return f"subject:{digest}"


# --------------------------------------------------------------------------- MIME parts

_PART_HEADERS = frozenset({"content-type", "content-disposition", "content-transfer-encoding",
                           "content-id"})
_BODY_TYPES = frozenset({"text/plain", "text/html"})
# Other renderings of the body inside a multipart/alternative: neither body nor file.
_ALTERNATIVE_TEXT = frozenset({"text/enriched", "text/richtext", "text/watch-html",
                               "text/x-amp-html"})
_DEFECTS = {
    "CloseBoundaryNotFoundDefect": "closing MIME boundary missing (truncated message?)",
    "StartBoundaryNotFoundDefect": "MIME boundary never found: the body is read as text",
    "NoBoundaryInMultipartDefect": "multipart without a boundary: the body is read as text",
    "MissingHeaderBodySeparatorDefect": "a line that is not a header ended the headers",
    "FirstHeaderLineIsContinuationDefect": "the first header line is a continuation line",
    "MisplacedEnvelopeHeaderDefect": "a misplaced 'From ' line among the headers",
    "InvalidBase64PaddingDefect": "invalid base64 padding",
    "InvalidBase64CharactersDefect": "invalid characters in base64",
    "InvalidBase64LengthDefect": "truncated base64",
}


class _Body:
    """One walk of the MIME tree: body texts into sinks, every other leaf an attachment.

    In a multipart/alternative the first child giving text/plain gives ``text`` and the first
    giving text/html gives ``html``; elsewhere inline text parts are concatenated (Apple Mail
    splits a body around inline images). A leaf is an attachment when its disposition is
    "attachment", or it has a filename, or it is not a text/plain or text/html body part.
    message/* parts are attachments as a whole (named after their subject if need be).
    """

    def __init__(self, warn: Warnings) -> None:
        self.warn = warn
        self.attachments: list[AttachmentInfo] = []
        self.parts = 0

    def read(self, msg: Message) -> tuple[str, str, tuple[AttachmentInfo, ...]]:
        """(text, html, attachments) of ``msg``."""
        texts: list[str] = []
        htmls: list[str] = []
        self._walk(msg, 0, (texts, htmls), False)
        text = "\n".join(t for t in texts if t)
        html = "\n".join(h for h in htmls if h)
        text = self._cap(clean(text, "text/plain body", self.warn), "text")
        html = self._cap(clean(html, "text/html body", self.warn), "HTML")
        if html and not text.strip():
            text = self._cap(html_to_text(html), "text")
        return text, html, tuple(self.attachments)

    def _walk(self, part: Message, depth: int, sink: tuple[list[str], list[str]],
              alternative: bool) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            if self.parts == MAX_PARTS + 1:
                self.warn(f"more than {MAX_PARTS} MIME parts: the rest ignored")
            return
        ctype = part.get_content_type()
        if part.is_multipart() and ctype.startswith("multipart/"):
            if depth >= MAX_DEPTH:
                self.warn(f"MIME parts nested deeper than {MAX_DEPTH}: the inner ones ignored")
            elif ctype == "multipart/alternative":
                chosen: list[list[str] | None] = [None, None]
                for child in part.get_payload():
                    own: tuple[list[str], list[str]] = ([], [])
                    self._walk(child, depth + 1, own, True)
                    for kind in (0, 1):
                        if chosen[kind] is None and own[kind]:
                            chosen[kind] = own[kind]
                sink[0].extend(chosen[0] or ())
                sink[1].extend(chosen[1] or ())
            else:
                for child in part.get_payload():
                    self._walk(child, depth + 1, sink, False)
        else:
            self._leaf(part, ctype, sink, alternative)
        where = "message" if depth == 0 else f"{ctype} part"
        for defect in part.defects:
            if type(defect).__name__ in _DEFECTS:
                self.warn(f"{where}: {_DEFECTS[type(defect).__name__]}")

    def _leaf(self, part: Message, ctype: str, sink: tuple[list[str], list[str]],
              alternative: bool) -> None:
        warn = self.warn
        raw: dict[str, str] = {}
        for name, value in part.raw_items():
            key = name.strip().lower()
            if key in _PART_HEADERS and key not in raw:
                raw[key] = value
        disposition, dparams = header_params(raw.get("content-disposition"),
                                             "Content-Disposition", warn)
        cparams = header_params(raw.get("content-type"), "Content-Type", warn)[1]
        filename = clean(dparams.get("filename") or cparams.get("name") or "", "filename",
                         warn).strip()
        container = part.is_multipart()  # message/rfc822 and friends: a parsed message inside
        if disposition != "attachment" and not filename and not container:
            if ctype in _BODY_TYPES or ctype.startswith("multipart/"):  # multipart: broken
                texts = sink[1] if ctype == "text/html" else sink[0]
                texts.append(self._text(part, ctype, cparams.get("charset")))
                return
            if alternative and ctype in _ALTERNATIVE_TEXT:
                return
        content_id = "".join(decode_raw_header(raw.get("content-id", ""), "Content-ID",
                                               warn).split()).strip("<>")
        if container:
            size, inner = self._message_size(part)
            filename = filename or (decode_header_value(inner, "Subject", warn) or "message"
                                    ) + ".eml"
        else:
            size = self._size(part, raw.get("content-transfer-encoding", "").strip().lower())
        self.attachments.append(AttachmentInfo(
            filename=filename[:MAX_NAME_CHARS], content_type=ctype[:200], size=size,
            content_id=clean(content_id, "Content-ID", warn)[:MAX_NAME_CHARS] or None,
            is_inline=bool(content_id) and disposition != "attachment"))

    def _text(self, part: Message, ctype: str, charset: str | None) -> str:
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            return ""
        final = len(data) <= MAX_BODY_BYTES
        if not final:  # do not decode megabytes only to throw them away
            data = data[:MAX_BODY_BYTES]
            self.warn(f"{ctype} part larger than {MAX_BODY_BYTES} bytes: truncated")
        text = decode_bytes(data, charset, f"{ctype} part", self.warn, final=final)
        return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text

    @staticmethod
    def _size(part: Message, cte: str) -> int:
        """Decoded size; base64 is counted from its text, without decoding it."""
        if cte == "base64":
            encoded = part.get_payload()
            if isinstance(encoded, str) and encoded.isascii():
                padding = encoded.count("=")  # "=" only ever pads the end of base64
                chars = (len(encoded) - encoded.count("\n") - encoded.count("\r")
                         - encoded.count(" ") - encoded.count("\t") - padding)
                return chars * 3 // 4
        data = part.get_payload(decode=True)  # quoted-printable, 7bit, 8bit, binary, uuencode
        return len(data) if isinstance(data, bytes) else 0

    def _message_size(self, part: Message) -> tuple[int, str]:
        """The size of an attached message (re-serialised) and its raw Subject."""
        size, subject = 0, ""
        for inner in part.get_payload():
            if isinstance(inner, Message):
                subject = subject or next(
                    (v for k, v in inner.raw_items() if k.strip().lower() == "subject"), "")
                try:
                    size += len(inner.as_bytes())
                except Exception:  # as_bytes re-serialises: it can trip on what parsed
                    self.warn("attached message could not be measured: size 0")
        return size, subject

    def _cap(self, text: str, what: str) -> str:
        if len(text) * 4 <= MAX_BODY_BYTES:  # fast path: cannot exceed the cap in UTF-8
            return text
        data = text.encode("utf-8", "surrogatepass")
        if len(data) <= MAX_BODY_BYTES:
            return text
        self.warn(f"{what} body larger than {MAX_BODY_BYTES} bytes: truncated")
        return data[:MAX_BODY_BYTES].decode("utf-8", "ignore")


def _read_body(msg: Message, warn: Warnings) -> tuple[str, str, tuple[AttachmentInfo, ...]]:
    return _Body(warn).read(msg)
