"""A message's complete header block, kept as received, and read back as fields.

The parser keeps the raw header block (:func:`header_block_text`: everything before the empty
line that ends it, decoded as UTF-8 as RFC 6532 allows, other bytes replaced) so that a
frontend can show every header of a message ("show original"), not only those the CRM reads.
:func:`header_fields` splits it into (name, value) pairs in order, values unfolded
(RFC 5322 §2.2.3) but not decoded: encoded words stay as sent.
"""

from __future__ import annotations

import re

from .charsets import clean
from .parse_warnings import Warnings

__all__ = ["MAX_HEADER_BLOCK", "header_block_text", "header_fields"]

#: the most of a header block kept (a hostile message may carry megabytes of headers)
MAX_HEADER_BLOCK = 64 * 1024
_BLOCK_END = re.compile(rb"\r?\n\r?\n")
_FOLD = re.compile(r"\r?\n(?=[ \t])")


def header_block_text(raw: bytes, warn: Warnings) -> str:
    """The header block of ``raw`` as text (at most :data:`MAX_HEADER_BLOCK` bytes, cut at a
    line end, with a warning when cut)."""
    found = _BLOCK_END.search(raw)
    block = raw[: found.start()] if found else raw
    if len(block) > MAX_HEADER_BLOCK:
        cut = block.rfind(b"\n", 0, MAX_HEADER_BLOCK)
        block = block[: cut if cut > 0 else MAX_HEADER_BLOCK].rstrip(b"\r")
        warn(f"header block longer than {MAX_HEADER_BLOCK // 1024} KiB: only its start is kept")
    # NULs and lone surrogates are dropped quietly: where they matter (a name, a subject, a
    # charset) the parser has warned about them already
    return clean(block.decode("utf-8", "replace"), "the header block", Warnings())


def header_fields(block: str) -> list[tuple[str, str]]:
    """The fields of a stored header block, in order: (name as written, unfolded value).
    A line that is no field (no colon) is skipped; an mbox ``From `` line too."""
    fields: list[tuple[str, str]] = []
    for line in _FOLD.sub("", block).splitlines():
        name, colon, value = line.partition(":")
        if not colon or not name.strip() or " " in name.strip():
            continue
        fields.append((name.strip(), value.strip()))
    return fields
