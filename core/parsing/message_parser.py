"""Turn one raw RFC 5322 message into the values the store saves (docs/sync.md#what-is-stored).

Parsing is what a sync spends its time on (docs/measurements.md): the MIME structure comes from the
``email`` package's compat32 API, several times faster than ``policy.default``
(bench/bench_parse.py). It leaves charsets, encoded words and 8-bit headers to the caller:
:mod:`.charsets`, :mod:`.headers` and their neighbours decode text, this module reads
headers and walks parts. Never raise: what cannot be read gets its best reading and a line
in ``warnings``; the message is stored.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.feedparser import BytesFeedParser
from email.message import Message
from email.parser import BytesHeaderParser
from functools import lru_cache
from typing import TypeVar, cast

from ..address_normalisation import normalise_email
from ..errors import SalesInboxError
from .charsets import clean, decode_bytes
from .dates import decode_date
from .headers import (
    cut_between,
    decode_header_value,
    decode_raw_header,
    header_params,
    normalise_subject,
    split_mailboxes,
)
from .html_text import html_to_text
from .parse_warnings import Warnings
from .snippets import make_snippet

__all__ = ["Address", "AttachmentInfo", "FetchedMessage", "ParsedMessage", "counterparties",
           "direction_for", "normalise_subject", "parse_message"]

MAX_BODY_BYTES = 2 * 1024 * 1024  # per stored text and HTML body, in UTF-8
MAX_PARTS = 500  # MIME parts walked
MAX_DEPTH = 32  # multipart nesting walked
MAX_ADDRESSES = 1000  # per header: a mailing-list blast is not a CRM conversation
MAX_ADDRESS_HEADER_CHARS = 200_000  # ~1000 addresses with names
MAX_SUBJECT_CHARS = 2000
MAX_NAME_CHARS = 500  # message_address.name, attachment.filename
MAX_ID_CHARS = 998  # message.message_id
MAX_REFERENCES = 500
T = TypeVar("T")
D = TypeVar("D")
_ADDRESS_HEADERS = ("from", "to", "cc", "bcc", "reply-to", "sender")
_WANTED = {*_ADDRESS_HEADERS, "message-id", "in-reply-to", "references", "subject", "date"}


@dataclass(frozen=True, slots=True)
class Address:
    """One mailbox: ``name`` decoded for display ("" if none), ``address`` normalised."""

    name: str
    address: str


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    """``size``: decoded bytes; ``content_id``: without <> (as ``cid:`` URLs name it);
    ``is_inline``: has a Content-ID, is not ``Content-Disposition: attachment``."""

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
    sender: Address | None = None


@dataclass(frozen=True, slots=True)
class FetchedMessage:
    """One message as fetched from IMAP and parsed (parsing happens off the event loop)."""

    uid: int
    flags: frozenset[str]
    parsed: ParsedMessage
    modseq: int | None = None
    internal_date: datetime | None = None


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse ``raw``, one RFC 5322 message as IMAP returns it; never raises.

    - Message-ID, In-Reply-To, References: ``<...>`` msg-ids without whitespace (None/() when
      absent). ``thread_key``: the first References id, else In-Reply-To, else the own
      Message-ID, else ``"subject:" + sha1(normalise_subject(subject) + sorted From/To/Cc)``.
    - Subject, display names: RFC 2047-decoded, whitespace-collapsed. Addresses: normalised
      (core.addresses), once per header; one that does not normalise is dropped with a
      warning. No From: the Sender is used.
    - ``date``: timezone-aware UTC; None if absent, or unreadable (with a warning).
    - ``text``/``html``: the decoded bodies, ``\\n`` newlines in text, at most 2 MB of UTF-8
      each; text is derived from the HTML when there is no text/plain. Every other leaf part
      is an attachment (the rules: :class:`_Body`); ``has_attachments`` ignores inline ones.
    - ``warnings``: short sentences on what was not read as declared, e.g. "unknown charset
      'x-foo' in text/plain part: decoded as latin-1". No string holds NUL or surrogates.
    """
    warn = Warnings()
    if not isinstance(raw, bytes):  # a bytearray or memoryview is read, anything else not
        raw = bytes(raw) if isinstance(raw, (bytearray, memoryview)) else b""
    if not raw.strip():
        warn("empty message")
    msg = _parse_mime(raw, warn)
    headers: dict[str, list[str]] = {}
    for name, value in msg.raw_items():
        if (key := name.strip().lower()) in _WANTED:
            headers.setdefault(key, []).append(str(value))
    ids = _guard(warn, "message ids", (None, None, ()), _ids, headers, warn)
    message_id, in_reply_to, references = ids
    subject = _guard(warn, "Subject header", "", _subject, headers, warn)
    addresses = {n: _guard(warn, f"{n.title()} header", (), _address_header, headers, n, warn)
                 for n in _ADDRESS_HEADERS}
    from_ = addresses["from"]
    if not from_ and addresses["sender"]:
        from_ = addresses["sender"]
        warn("no From address: the Sender header is used")
    date = _guard(warn, "Date header", None, decode_date, (headers.get("date") or [""])[0], warn)
    text, html, attachments = _guard(warn, "body", ("", "", ()), _Body(warn).read, msg)
    thread_key = references[0] if references else in_reply_to or message_id or _subject_key(
        subject, from_ + addresses["to"] + addresses["cc"])
    return ParsedMessage(
        message_id=message_id, in_reply_to=in_reply_to, references=references,
        thread_key=thread_key, subject=subject, from_=from_, to=addresses["to"],
        cc=addresses["cc"], bcc=addresses["bcc"], reply_to=addresses["reply-to"], date=date,
        text=text, html=html, snippet=_guard(warn, "snippet", "", make_snippet, text),
        attachments=attachments, has_attachments=any(not a.is_inline for a in attachments),
        size=len(raw), warnings=warn.as_tuple(),
        sender=addresses["sender"][0] if addresses["sender"] else None)


def direction_for(parsed: ParsedMessage, own_addresses: set[str], folder_is_sent: bool) -> str:
    """``"SENT"`` when the message is in the Sent folder or is From one of ``own_addresses``
    (the account address and its From addresses, compared normalised), else ``"RECEIVED"``."""
    own = _normalised_set(own_addresses)
    return "SENT" if folder_is_sent or any(a.address in own for a in parsed.from_) else "RECEIVED"


def counterparties(parsed: ParsedMessage, own_addresses: set[str]) -> list[Address]:
    """Every From/To/Cc/Bcc address that is not one of ``own_addresses``, each once,
    in order of appearance (the first occurrence's display name wins); see
    docs/records-and-links.md#counterparties."""
    own = _normalised_set(own_addresses)
    seen: dict[str, Address] = {}
    for address in parsed.from_ + parsed.to + parsed.cc + parsed.bcc:
        if address.address not in own:
            seen.setdefault(address.address, address)
    return list(seen.values())


# --------------------------------------------------------------------------- headers

def _guard(warn: Warnings, what: str, default: D, fn: Callable[..., T], *args: object) -> T | D:
    """``fn(*args)``, or ``default`` and a warning: an unforeseen input costs one field."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - hostile input: an unforeseen failure costs one field
        warn(f"could not read the {what} ({type(exc).__name__}): left empty")
        return default


def _parse_mime(raw: bytes, warn: Warnings) -> Message:
    try:  # message_from_bytes(raw) minus its 8 KB read loop (~5 % faster); compat32 policy
        (parser := BytesFeedParser()).feed(raw)
        return parser.close()
    except Exception as exc:  # noqa: BLE001 - hostile input; RecursionError: thousands of nested multiparts
        problem = "nested too deeply" if isinstance(exc, RecursionError) else "unreadable"
        warn(f"MIME structure {problem}: only the headers are read")
    try:
        return BytesHeaderParser().parsebytes(raw)
    except Exception:  # noqa: BLE001 - hostile input: a message is always returned
        return Message()


_MSG_ID = re.compile(r"<([^<>]*)>")


def _ids(headers: dict[str, list[str]],
         warn: Warnings) -> tuple[str | None, str | None, tuple[str, ...]]:
    def ids(name: str) -> list[str]:
        value = clean(decode_raw_header((headers.get(name) or [""])[0], name, warn), name, warn)
        found = ["<" + "".join(i.split()) + ">" for i in _MSG_ID.findall(value)]
        if not found:  # ids written without brackets: the own one, or any token with an "@"
            tokens = value.replace(",", " ").split()
            own = name == "message-id" and len(tokens) == 1
            found = [f"<{t}>" for t in tokens if own or (name != "message-id" and "@" in t)]
        return [i for i in found if 2 < len(i) <= MAX_ID_CHARS]

    own, reply = ids("message-id"), ids("in-reply-to")
    references = list(dict.fromkeys(ids("references")))  # in order, each once
    if len(references) > MAX_REFERENCES:
        warn(f"more than {MAX_REFERENCES} References: the rest ignored")
    return own[0] if own else None, reply[0] if reply else None, tuple(references[:MAX_REFERENCES])


def _subject(headers: dict[str, list[str]], warn: Warnings) -> str:
    raw = (headers.get("subject") or [""])[0]  # decode 8 times the cap at most: bound work
    subject = decode_header_value(cut_between(raw, MAX_SUBJECT_CHARS * 8, " "), "Subject", warn)
    if len(subject) > MAX_SUBJECT_CHARS or len(raw) > MAX_SUBJECT_CHARS * 8:
        warn(f"Subject longer than {MAX_SUBJECT_CHARS} characters: truncated")
    return subject[:MAX_SUBJECT_CHARS]


@lru_cache(maxsize=8192)  # the same few addresses recur in every message; IDNA is slow
def _normalised(address: str) -> str | None:
    try:
        return normalise_email(address)
    except SalesInboxError:  # INVALID_INPUT: not an address
        return None


def _normalised_set(addresses: set[str]) -> set[str]:
    return {_normalised(a) or a.strip().lower() for a in addresses}


def _address_header(headers: dict[str, list[str]], name: str,
                    warn: Warnings) -> tuple[Address, ...]:
    if not (values := headers.get(name)):
        return ()
    label = name.title()
    raw = decode_raw_header(", ".join(values), label, warn)
    if len(raw) > MAX_ADDRESS_HEADER_CHARS:
        raw = cut_between(raw, MAX_ADDRESS_HEADER_CHARS, ",")
        warn(f"{label} header longer than {MAX_ADDRESS_HEADER_CHARS} characters: truncated")
    found: dict[str, Address] = {}
    for display, address in split_mailboxes(raw):
        if not address:  # empty groups, "undisclosed-recipients:;"
            continue
        if len(found) >= MAX_ADDRESSES:
            warn(f"more than {MAX_ADDRESSES} addresses in {label}: the rest ignored")
            break
        normalised = _normalised(address)
        if normalised is None and "=?" in address:  # encoded words are not allowed there,
            address = decode_header_value(address, label, warn)  # but generators write them
            normalised = _normalised(address)
        if normalised is None:
            warn(f"invalid address {address[:80]!r} in {label}: dropped")
        elif normalised not in found:
            display = decode_header_value(display, label, warn)[:MAX_NAME_CHARS]
            found[normalised] = Address(display, normalised)
    return tuple(found.values())


def _subject_key(subject: str, participants: tuple[Address, ...]) -> str:
    # Without ids, group by subject and people. Bcc is left out: only the sender's copy has it.
    people = ",".join(sorted({a.address for a in participants}))
    key = f"{normalise_subject(subject)}\n{people}".encode("utf-8", "surrogatepass")
    return "subject:" + hashlib.sha1(key).hexdigest()


# --------------------------------------------------------------------------- MIME parts

_MIME_TYPE = re.compile(r"[\x21-\x7e]{1,200}")
_NOT_MIME_TYPE = re.compile(r"[^\x21-\x7e]")
_PART_HEADERS = frozenset({"content-type", "content-disposition", "content-transfer-encoding",
                           "content-id"})
# Other renderings of the body in a multipart/alternative: neither body nor file.
_ALTERNATIVE_TEXT = {"text/enriched", "text/richtext", "text/watch-html", "text/x-amp-html"}
_DEFECTS = {  # compat32 notes what it repaired on each part: the ones worth a warning
    "CloseBoundaryNotFoundDefect": "closing MIME boundary missing (truncated message?)",
    "StartBoundaryNotFoundDefect": "MIME boundary never found: the body is read as text",
    "NoBoundaryInMultipartDefect": "multipart without a boundary: the body is read as text",
    "MissingHeaderBodySeparatorDefect": "a line that is not a header ended the headers",
    **dict.fromkeys(["InvalidBase64PaddingDefect", "InvalidBase64CharactersDefect",
                     "InvalidBase64LengthDefect"], "invalid base64 (decoded what could be)"),
}


class _Body:
    """One walk of the MIME tree: body texts into sinks, every other leaf an attachment.

    In a multipart/alternative the first child giving text/plain gives the text, the first
    giving text/html the HTML; elsewhere inline text parts are joined (Apple Mail splits a
    body around inline images). A leaf is an attachment if its disposition is "attachment",
    or it has a filename, or it is not text/plain or text/html. A message/* part is one
    attachment (named after its subject if need be), not walked into."""

    def __init__(self, warn: Warnings) -> None:
        self.warn = warn
        self.attachments: list[AttachmentInfo] = []
        self.parts = 0

    def read(self, msg: Message) -> tuple[str, str, tuple[AttachmentInfo, ...]]:
        sink: tuple[list[str], list[str]] = ([], [])
        self._walk(msg, 0, sink, False)
        text, html = ("\n".join(piece for piece in pieces if piece) for pieces in sink)
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
        if not _MIME_TYPE.fullmatch(ctype):  # control bytes, spaces, non-ASCII: unusable
            ctype = _NOT_MIME_TYPE.sub("", ctype)[:200] or "application/octet-stream"
        if not (part.is_multipart() and ctype.startswith("multipart/")):
            try:
                self._leaf(part, ctype, sink, alternative)
            except Exception as exc:  # noqa: BLE001 - one unreadable part must not cost the others
                self.warn(f"could not read a {ctype} part ({type(exc).__name__}): skipped")
        elif depth >= MAX_DEPTH:
            self.warn(f"MIME parts nested deeper than {MAX_DEPTH}: the inner ones ignored")
        elif ctype == "multipart/alternative":
            chosen: list[list[str]] = [[], []]
            for child in cast(list[Message], part.get_payload()):  # multipart: the parts
                own: tuple[list[str], list[str]] = ([], [])
                self._walk(child, depth + 1, own, True)
                chosen = [chosen[kind] or own[kind] for kind in (0, 1)]
            sink[0].extend(chosen[0])
            sink[1].extend(chosen[1])
        else:
            for child in cast(list[Message], part.get_payload()):
                self._walk(child, depth + 1, sink, False)
        where = "message" if depth == 0 else f"{ctype} part"
        for defect in part.defects:
            if (problem := _DEFECTS.get(type(defect).__name__)) is not None:
                self.warn(f"{where}: {problem}")

    def _leaf(self, part: Message, ctype: str, sink: tuple[list[str], list[str]],
              alternative: bool) -> None:
        warn, raw = self.warn, dict[str, str]()
        for name, value in part.raw_items():
            if (key := name.strip().lower()) in _PART_HEADERS:
                raw.setdefault(key, value)
        disposition, dparams = header_params(raw.get("content-disposition"),
                                             "Content-Disposition", warn)
        cparams = header_params(raw.get("content-type"), "Content-Type", warn)[1]
        filename = clean(dparams.get("filename") or cparams.get("name") or "", "filename",
                         warn).strip()
        container = part.is_multipart()  # message/rfc822 and the like: a parsed message
        if disposition != "attachment" and not filename and not container:
            # a multipart leaf lost its boundary: its body is read as text
            if ctype in ("text/plain", "text/html") or ctype.startswith("multipart/"):
                texts = sink[1] if ctype == "text/html" else sink[0]
                texts.append(self._text(part, ctype, cparams.get("charset")))
                return
            if alternative and ctype in _ALTERNATIVE_TEXT:
                return
        content_id = "".join(decode_raw_header(raw.get("content-id", ""), "Content-ID",
                                               warn).split()).strip("<>")
        if container:
            size, subject = self._message_size(part)
            filename = filename or (decode_header_value(subject, "Subject", warn)
                                    or "message") + ".eml"
        else:
            size = self._size(part, raw.get("content-transfer-encoding", "").strip().lower())
        self.attachments.append(AttachmentInfo(
            filename=filename[:MAX_NAME_CHARS], content_type=ctype, size=size,
            content_id=clean(content_id, "Content-ID", warn)[:MAX_NAME_CHARS] or None,
            is_inline=bool(content_id) and disposition != "attachment"))

    def _text(self, part: Message, ctype: str, charset: str | None) -> str:
        data = cast(bytes | None, part.get_payload(decode=True)) or b""  # bytes for every leaf
        final = len(data) <= MAX_BODY_BYTES
        if not final:  # do not decode megabytes only to throw them away
            self.warn(f"{ctype} part larger than {MAX_BODY_BYTES} bytes: truncated")
            data = data[:MAX_BODY_BYTES]
        text = decode_bytes(data, charset, f"{ctype} part", self.warn, final=final)
        return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text

    @staticmethod
    def _size(part: Message, cte: str) -> int:
        """The decoded size; base64 is measured from its text, without decoding it."""
        try:  # compat32's get_payload() raises on 8-bit bytes with an RFC 2231 charset
            encoded = part.get_payload() if cte == "base64" else None
        except TypeError:
            encoded = None
        if isinstance(encoded, str) and encoded.isascii():
            blanks = sum(encoded.count(c) for c in "\r\n \t")
            return (len(encoded) - blanks - encoded.count("=")) * 3 // 4  # "=" only pads
        data = part.get_payload(decode=True)  # quoted-printable, 7bit, 8bit, binary, uuencode
        return len(data) if isinstance(data, bytes) else 0

    def _message_size(self, part: Message) -> tuple[int, str]:  # re-serialised size, Subject
        inner = [m for m in part.get_payload() if isinstance(m, Message)]
        first = inner[0].raw_items() if inner else ()
        subject = next((v for k, v in first if k.strip().lower() == "subject"), "")
        try:
            return sum(len(m.as_bytes()) for m in inner), subject
        except Exception:  # noqa: BLE001 - as_bytes re-serialises: it can trip on what parsed
            self.warn("an attached message could not be measured: size 0")
            return 0, subject

    def _cap(self, text: str, what: str) -> str:
        # len(text) * 4 is the most UTF-8 can take: the common case needs no encoding
        if len(text) * 4 <= MAX_BODY_BYTES or len(data := text.encode()) <= MAX_BODY_BYTES:
            return text
        self.warn(f"{what} body larger than {MAX_BODY_BYTES} bytes: truncated")
        return data[:MAX_BODY_BYTES].decode("utf-8", "ignore")
