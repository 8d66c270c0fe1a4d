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
from email.message import Message
from email.parser import BytesHeaderParser
from typing import TypeVar

from .addresses import MAX_ADDRESSES, Address, normalised_set, read_addresses
from .base64_runs import set_aside
from .charsets import clean
from .dates import decode_date
from .feed_parser import FastBytesFeedParser
from .header_block import repair_header_block
from .header_fields import header_block_text
from .headers import cut_between, decode_header_value, decode_raw_header, normalise_subject
from .mime_body import MAX_BODY_BYTES, MAX_PARTS, AttachmentInfo, BodyReader
from .parse_warnings import Warnings
from .snippets import make_snippet

__all__ = ["MAX_ADDRESSES", "MAX_BODY_BYTES", "MAX_PARTS", "Address", "AttachmentInfo",
           "FetchedMessage", "ParsedMessage", "counterparties", "direction_for",
           "normalise_subject", "parse_message"]

MAX_SUBJECT_CHARS = 2000
MAX_ID_CHARS = 998  # message.message_id
MAX_REFERENCES = 500
T = TypeVar("T")
D = TypeVar("D")
_ADDRESS_HEADERS = ("from", "to", "cc", "bcc", "reply-to", "sender")
_WANTED = {*_ADDRESS_HEADERS, "message-id", "in-reply-to", "references", "subject", "date"}


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """What :func:`parse_message` could read from one message (see its docstring).

    ``from_`` holds every author of a From list (RFC 5322 §3.6.2), in order; ``sender`` is
    the Sender mailbox (the agent who sent it for them), None without one."""

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
    header_block: str = ""  # every header as received (:mod:`.header_fields`)


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
    - Headers: a line of the header block that is no field is skipped with a warning, the
      fields after it are read; the obsolete ``Name :`` form is read (:mod:`.header_block`).
    - Subject, display names: RFC 2047-decoded, whitespace-collapsed; comments are no names.
      Addresses (:mod:`.addresses`): normalised, quoted local parts and domain literals kept
      (core/address_normalisation.py), once per header; one that does not normalise is
      dropped with a warning. Every author of a From list is kept; no From: the Sender is
      used (with a warning); ``sender``: the Sender header's mailbox.
    - ``date``: timezone-aware UTC, two- and three-digit years read as RFC 5322 §4.3 says
      (:mod:`.dates`); None, with a warning, if absent or unreadable.
    - ``text``/``html``: the decoded bodies, ``\\n`` newlines in text, at most 2 MB of UTF-8
      each; text is derived from the HTML when there is no text/plain. Every other leaf part
      is an attachment (the rules: :class:`.mime_body.BodyReader`), sized in decoded bytes
      with the message's own line ends; ``has_attachments`` ignores inline ones.
    - ``size``: ``len(raw)``.
    - ``warnings``: short sentences on what was not read as declared, e.g. "unknown charset
      'x-foo' in text/plain part: decoded as latin-1". No string holds NUL or surrogates.
    """
    warn = Warnings()
    if not isinstance(raw, bytes):  # a bytearray or memoryview is read, anything else not
        raw = bytes(raw) if isinstance(raw, (bytearray, memoryview)) else b""
    if not raw.strip():
        warn("empty message")
    mime, aside = set_aside(repair_header_block(raw, warn))  # long base64 runs: see .base64_runs
    msg = _parse_mime(mime, warn)
    headers: dict[str, list[str]] = {}
    for name, value in msg.raw_items():
        if (key := name.strip().lower()) in _WANTED:
            headers.setdefault(key, []).append(str(value))
    ids = _guard(warn, "message ids", (None, None, ()), _ids, headers, warn)
    message_id, in_reply_to, references = ids
    subject = _guard(warn, "Subject header", "", _subject, headers, warn)
    addresses = {n: _guard(warn, f"{n.title()} header", (), read_addresses, headers.get(n),
                           n.title(), warn) for n in _ADDRESS_HEADERS}
    from_ = addresses["from"]
    if not from_ and addresses["sender"]:
        from_ = addresses["sender"]
        warn("no From address: the Sender header is used")
    if not (date_value := (headers.get("date") or [""])[0]).strip():
        warn("no Date header")  # the store falls back to the IMAP INTERNALDATE
    date = _guard(warn, "Date header", None, decode_date, date_value, warn)
    end = raw.find(b"\n")  # attached messages are measured with the message's line ends
    body = BodyReader(warn, "\r\n" if end < 0 or raw[end - 1:end] == b"\r" else "\n", aside)
    text, html, attachments = _guard(warn, "body", ("", "", ()), body.read, msg)
    thread_key = references[0] if references else in_reply_to or message_id or _subject_key(
        subject, from_ + addresses["to"] + addresses["cc"])
    header_block = _guard(warn, "header block", "", header_block_text, raw, warn)
    return ParsedMessage(
        message_id=message_id, in_reply_to=in_reply_to, references=references,
        thread_key=thread_key, subject=subject, from_=from_, to=addresses["to"],
        cc=addresses["cc"], bcc=addresses["bcc"], reply_to=addresses["reply-to"], date=date,
        text=text, html=html, snippet=_guard(warn, "snippet", "", make_snippet, text),
        attachments=attachments, has_attachments=any(not a.is_inline for a in attachments),
        size=len(raw), warnings=warn.as_tuple(),
        sender=addresses["sender"][0] if addresses["sender"] else None, header_block=header_block)


def direction_for(parsed: ParsedMessage, own_addresses: set[str], folder_is_sent: bool) -> str:
    """``"SENT"`` when the message is in the Sent folder or is From one of ``own_addresses``
    (the account address and its From addresses, compared normalised), else ``"RECEIVED"``."""
    own = normalised_set(own_addresses)
    return "SENT" if folder_is_sent or any(a.address in own for a in parsed.from_) else "RECEIVED"


def counterparties(parsed: ParsedMessage, own_addresses: set[str]) -> list[Address]:
    """Every From/To/Cc/Bcc address that is not one of ``own_addresses``, each once,
    in order of appearance (the first occurrence's display name wins); see
    docs/records-and-links.md#counterparties."""
    own = normalised_set(own_addresses)
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
        (parser := FastBytesFeedParser()).feed(raw)  # no regex compiled per boundary
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


def _subject_key(subject: str, participants: tuple[Address, ...]) -> str:
    # Without ids, group by subject and people. Bcc is left out: only the sender's copy has it.
    people = ",".join(sorted({a.address for a in participants}))
    key = f"{normalise_subject(subject)}\n{people}".encode("utf-8", "surrogatepass")
    return "subject:" + hashlib.sha1(key).hexdigest()
