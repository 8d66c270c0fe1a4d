"""The message's header block made readable to the compat32 parser (RFC 5322 §2.2, §4.5).

compat32's feed parser ends the header block at the first line that is neither a field
(``name:``), a continuation (leading white space) nor an mbox ``From`` line: every field after
it (To, Date, Message-ID...) would become body, and links, threads and dates go wrong.
:func:`repair_header_block` rewrites such lines in place, each byte where it was (the sizes
and any offset into the message stay right):

- the obsolete ``Name :`` form (white space before the colon, RFC 5322 §4.5 ``obs-optional``)
  becomes ``Name:`` with the white space moved after the colon; it is legal: no warning;
- a line that is no field, when more fields follow it in the block, gets ``:`` for its first
  byte: compat32 then drops it as a field without a name (with its continuation lines), and
  a warning names it.

Lines after the block's last field are left alone: there, a message without the empty
separator line starts its body (compat32 reads them so, and the parser warns).
Only the message's own header block is repaired, not those of its MIME parts.
"""

from __future__ import annotations

import re

from .parse_warnings import Warnings

__all__ = ["repair_header_block"]

# A line compat32 reads as part of a header block (its feedparser.headerRE). The first line
# that is not one is either the empty line ending the block (the common case: nothing to do)
# or a line to repair.
# ("From :" is the obsolete From field, which compat32 would take for an mbox envelope.)
# The first line is matched alone; the others after their "\n", which the search finds by a
# fast scan (three times faster than one multi-line "^" search: ~1 µs per message).
_ODD_FIRST_LINE = re.compile(rb"(?!From (?![ \t]*:)|[\x21-\x39\x3b-\x7e]*:|[ \t])")
_ODD_NEXT_LINE = re.compile(rb"\n(?!From (?![ \t]*:)|[\x21-\x39\x3b-\x7e]*:|[ \t])")
_LINE_END = re.compile(rb"\r\n|\r|\n")  # compat32's line ends
_FIELD = re.compile(rb"[\x21-\x39\x3b-\x7e]*:")
_OBSOLETE_FIELD = re.compile(rb"[\x21-\x39\x3b-\x7e]+([ \t]+):")


def repair_header_block(raw: bytes, warn: Warnings) -> bytes:
    """``raw`` with its header block repaired as the module says (``raw`` itself when no
    line needs it, which one regular-expression search over the header block tells)."""
    if _ODD_FIRST_LINE.match(raw):
        start = 0
    elif odd := _ODD_NEXT_LINE.search(raw):
        start = odd.start() + 1
    else:
        return raw
    if raw[start:start + 1] in (b"", b"\r", b"\n"):  # the empty line: the block is fine
        return raw
    lines: list[tuple[int, bytes]] = []  # (offset, text without line end) to the empty line
    position = start
    while position < len(raw):
        end = _LINE_END.search(raw, position)
        text = raw[position:end.start() if end else len(raw)]
        if not text:
            break
        lines.append((position, text))
        position = end.end() if end else len(raw)
    fields = [i for i, (_, text) in enumerate(lines)
              if _FIELD.match(text) or _OBSOLETE_FIELD.match(text)]
    if not fields:
        return raw
    repaired = bytearray(raw)
    for offset, text in lines[:fields[-1] + 1]:
        if obsolete := _OBSOLETE_FIELD.match(text):
            colon = obsolete.end() - 1
            blanks = obsolete.group(1)
            repaired[offset + colon - len(blanks):offset + colon + 1] = b":" + blanks
        elif not (text[:1] in b" \t" or text.startswith(b"From ") or _FIELD.match(text)):
            # (what compat32 reads is left: a field, a continuation, an envelope line)
            repaired[offset] = ord(":")
            shown = text[:60].decode("latin-1")
            warn(f"malformed header line skipped: {shown!r}")
    return bytes(repaired)
