"""The body of a parsed message: one walk of its MIME tree (RFC 2045, 2046, 2183) into the
text and HTML bodies and the attachments' metadata. Never raises: an unreadable part costs
itself, with a warning.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from email.generator import BytesGenerator
from email.message import Message
from email.policy import compat32
from typing import cast

from .addresses import MAX_NAME_CHARS
from .base64_runs import SetAside
from .charsets import clean, decode_bytes
from .headers import decode_header_value, decode_raw_header, header_params
from .html_text import html_to_text
from .parse_warnings import Warnings

__all__ = ["MAX_BODY_BYTES", "AttachmentInfo", "BodyReader"]

MAX_BODY_BYTES = 2 * 1024 * 1024  # per stored text and HTML body, in UTF-8
MAX_PARTS = 500  # MIME parts walked
MAX_DEPTH = 32  # multipart nesting walked
# An attached message re-serialised as received: no re-folding, no ">From" escaping.
_AS_RECEIVED = {linesep: compat32.clone(linesep=linesep, max_line_length=0) for linesep in ("\r\n", "\n")}


@dataclass(frozen=True, slots=True)
class AttachmentInfo:
    """``size``: decoded bytes, line ends as received (CRLF over IMAP); ``content_id``:
    without <> (as ``cid:`` URLs name it); ``is_inline``: has a Content-ID, is not
    ``Content-Disposition: attachment``."""

    filename: str
    content_type: str
    size: int
    content_id: str | None
    is_inline: bool



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


class BodyReader:
    """One walk of the MIME tree: body texts into sinks, every other leaf an attachment.

    In a multipart/alternative the first child giving text/plain gives the text, the first
    giving text/html the HTML; elsewhere inline text parts are joined (Apple Mail splits a
    body around inline images). A leaf is an attachment if its disposition is "attachment",
    or it has a filename, or it is not text/plain or text/html. A message/* part is one
    attachment (named after its subject if need be), not walked into."""

    def __init__(self, warn: Warnings, linesep: str = "\r\n", aside: SetAside | None = None) -> None:
        """``linesep``: the message's line end, "\\r\\n" (as IMAP gives) or "\\n";
        ``aside``: the base64 runs taken out of the parsed text (:mod:`.base64_runs`)."""
        self.warn = warn
        self.aside = aside or SetAside([])
        self.policy = _AS_RECEIVED.get(linesep, _AS_RECEIVED["\r\n"])
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
        cte = raw.get("content-transfer-encoding", "").strip().lower()
        # an attachment's base64 text is measured, not decoded: it may stay set aside
        self._restore(part, keep_base64=not container and cte == "base64")
        if disposition != "attachment" and not filename and not container:
            # a multipart leaf lost its boundary: its body is read as text
            if ctype in ("text/plain", "text/html") or ctype.startswith("multipart/"):
                self._restore(part, keep_base64=False)
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
            size = self._size(part, cte)
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

    def _restore(self, part: Message, keep_base64: bool) -> None:
        """Put the base64 runs set aside back into ``part`` (and the parts of an attached
        message) before it is read; a base64 leaf whose payload is ASCII keeps its tokens:
        :meth:`_size` measures them."""
        if not self.aside.runs:
            return
        for inner in part.walk():
            payload = inner._payload  # type: ignore[attr-defined]  # get_payload() may convert or raise
            if not self.aside.holds(payload):
                continue
            if keep_base64 and inner is part and payload.isascii():
                continue
            inner.set_payload(self.aside.restore(payload))

    def _size(self, part: Message, cte: str) -> int:
        """The decoded size; base64 is measured from its text, without decoding it."""
        try:  # compat32's get_payload() raises on 8-bit bytes with an RFC 2231 charset
            encoded = part.get_payload() if cte == "base64" else None
        except TypeError:
            encoded = None
        if isinstance(encoded, str) and encoded.isascii() and self.aside.holds(encoded):
            return self.aside.base64_size(encoded)
        if isinstance(encoded, str) and encoded.isascii():
            blanks = sum(encoded.count(c) for c in "\r\n \t")
            return (len(encoded) - blanks - encoded.count("=")) * 3 // 4  # "=" only pads
        data = part.get_payload(decode=True)  # quoted-printable, 7bit, 8bit, binary, uuencode
        return len(data) if isinstance(data, bytes) else 0

    def _message_size(self, part: Message) -> tuple[int, str]:
        """The attached message's size as received, and its raw Subject. compat32 keeps
        header values and body lines as they came; its generator, told the message's line
        end and not to fold or escape, writes them back byte for byte (but for the white
        space after a header's colon, written as one space)."""
        inner = [m for m in part.get_payload() if isinstance(m, Message)]
        first = inner[0].raw_items() if inner else ()
        subject = next((v for k, v in first if k.strip().lower() == "subject"), "")
        try:
            size = 0
            for message in inner:
                BytesGenerator(out := io.BytesIO(), mangle_from_=False, policy=self.policy).flatten(message)
                size += len(out.getvalue())
            return size, subject
        except Exception:  # noqa: BLE001 - re-serialising can trip on what parsed
            self.warn("an attached message could not be measured: size 0")
            return 0, subject

    def _cap(self, text: str, what: str) -> str:
        # len(text) * 4 is the most UTF-8 can take: the common case needs no encoding
        if len(text) * 4 <= MAX_BODY_BYTES or len(data := text.encode()) <= MAX_BODY_BYTES:
            return text
        self.warn(f"{what} body larger than {MAX_BODY_BYTES} bytes: truncated")
        return data[:MAX_BODY_BYTES].decode("utf-8", "ignore")
