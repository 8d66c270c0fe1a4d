"""Long runs of base64 lines, set aside before MIME parsing and put back when a part is read.

The ``email`` package's feed parser handles a message line by line in Python: an attachment
of 1 MB is ~14,000 base64 lines, each read, matched against the boundaries and joined again
(most of the parse time of a message with an attachment, bench/bench_parse.py). Attachment
content is not stored, only its decoded size, which the base64 text gives without decoding.

So before parsing, every run of at least :data:`MIN_RUN_LINES` lines made only of base64
characters (``A-Z a-z 0-9 + / =``) is replaced by one token of those characters, its last
line end kept. The parse tree is the same: such a line is never a header (no colon, no
leading blank), a boundary (no ``-``) or a blank line, so the parser treats the token's line
exactly as it treated each line of the run. The token holds a per-process random nonce, so
a message cannot forge one. :meth:`SetAside.restore` puts the text back into a payload;
:meth:`SetAside.base64_size` measures a base64 payload without restoring it.
"""

from __future__ import annotations

import re
import secrets

__all__ = ["MIN_RUN_LINES", "SetAside", "set_aside"]

MIN_RUN_LINES = 32  # ~2.4 KB of base64: shorter runs cost the feed parser little
# after a line end (a literal first character lets the search skip ahead quickly); possessive
# quantifiers: no backtracking state kept per character (~30 % faster on attachments)
_RUN = re.compile(rb"\n((?:[A-Za-z0-9+/=]++\r?\n){%d,}+)" % MIN_RUN_LINES)
_NONCE = "Q" + secrets.token_hex(12).upper()  # hex digits and letters: base64 characters
_TOKEN = re.compile(_NONCE + r"([0-9]{1,9})Z")
_BLANKS = str.maketrans("", "", "\r\n \t=")


class SetAside:
    """The runs taken out of one message: token number → the run (without its last line
    end, which stays in the message), ASCII bytes."""

    def __init__(self, runs: list[bytes]) -> None:
        self.runs = runs

    def holds(self, payload: object) -> bool:
        """Whether ``payload`` (a part's undecoded payload) contains a token."""
        return bool(self.runs) and isinstance(payload, str) and _NONCE in payload

    def restore(self, payload: str) -> str:
        """``payload`` with every token replaced by the text it stands for."""
        return _TOKEN.sub(lambda match: self._run(match.group(1)).decode("ascii"), payload)

    def base64_size(self, payload: str) -> int:
        """The decoded size of the base64 text ``payload`` stands for: its characters other
        than blanks and "=" padding, times 3/4 (as :meth:`..mime_body.BodyReader._size`
        measures an untouched payload)."""
        characters = 0

        def count(match: re.Match[str]) -> str:
            nonlocal characters
            run = self._run(match.group(1))
            characters += len(run) - sum(run.count(blank) for blank in (b"\r", b"\n", b"="))
            return ""

        rest = _TOKEN.sub(count, payload)
        return (characters + len(rest.translate(_BLANKS))) * 3 // 4

    def _run(self, number: str) -> bytes:
        index = int(number)
        return self.runs[index] if index < len(self.runs) else b""


def set_aside(raw: bytes) -> tuple[bytes, SetAside]:
    """``raw`` with its long base64 runs replaced by tokens, and what they stand for."""
    # Only after a "base64" (the Content-Transfer-Encoding naming it; other spellings, rare,
    # are simply not set aside): most messages are then not scanned at all.
    found = [at for at in (raw.find(b"ase64"), raw.find(b"ASE64")) if at >= 0]
    if not found or len(raw) < 64 * MIN_RUN_LINES:
        return raw, SetAside([])
    runs: list[bytes] = []
    pieces: list[bytes] = []
    done = 0
    for match in _RUN.finditer(raw, min(found)):
        start, stop = match.span(1)
        end = 2 if raw[stop - 2:stop] == b"\r\n" else 1
        runs.append(raw[start:stop - end])
        pieces += [raw[done:start], f"{_NONCE}{len(runs) - 1}Z".encode("ascii"), raw[stop - end:stop]]
        done = stop
    if not runs:
        return raw, SetAside([])
    pieces.append(raw[done:])
    return b"".join(pieces), SetAside(runs)

