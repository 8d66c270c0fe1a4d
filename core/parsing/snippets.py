"""A message's snippet: the start of its text, without quoted replies and signatures."""

from __future__ import annotations

import re

__all__ = ["SNIPPET_CHARS", "make_snippet"]


SNIPPET_CHARS = 200
_SNIPPET_SCAN = 65_536  # characters of the body looked at: a snippet never needs more
# "On <date>, <name> wrote:", "Le ..., <name> a écrit :", "Am <date> schrieb <name>:" ...
_ATTRIBUTION = re.compile(r"\b(?:wrote|a\s+écrit|escribió|ha\s+scritto|skrev)\s*:$"
                          r"|\b(?:schrieb|schreef)\b", re.IGNORECASE)  # on lines ending ":"
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
