"""compat32's feed parser without a regular expression compiled per multipart boundary.

``email.feedparser`` matches each multipart's boundary lines with a pattern it compiles for
that boundary (``--boundary``, an optional ``--``, blanks, a line end). Boundaries are unique
per message, so ``re``'s cache never hits and the compilation, in Python, costs ~0.1 ms a
multipart: ~15 % of parsing a typical message (bench/README.md, issue 15).

:class:`FastBytesFeedParser` runs the standard library's own ``_parsegen`` (the same code,
so the same tree, defects and all) with one name changed in its globals: ``re``, whose
``compile`` here returns :class:`_BoundaryPattern`, a literal prefix test followed by one
shared pre-compiled pattern for the rest of the line. Nothing else in ``_parsegen`` uses
``re``. If the standard library's code is not the shape this expects (another Python
version), :data:`BOUNDARY_SHIM_ACTIVE` is False and the stock parser is used.
"""

from __future__ import annotations

import email.feedparser as _stock
import re
import types
from email.feedparser import BytesFeedParser

__all__ = ["BOUNDARY_SHIM_ACTIVE", "FastBytesFeedParser"]

# What _parsegen appends to '(?P<sep>' + re.escape('--' + boundary): kept verbatim.
_HEAD = "(?P<sep>"
_TAIL = r")(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$"
_REST = re.compile(_TAIL[1:])  # the same groups but "sep", matched after the separator


class _BoundaryPattern:
    """The compiled boundary pattern's ``match`` as _parsegen uses it: a match object with
    groups ``end`` and ``linesep`` (and ``ws``), or None."""

    __slots__ = ("separator", "length")

    def __init__(self, separator: str) -> None:
        self.separator = separator
        self.length = len(separator)

    def match(self, line: str) -> re.Match[str] | None:
        """``re.compile('(?P<sep>' + re.escape(separator) + TAIL).match(line)``, but for
        group ``sep``, which _parsegen never reads."""
        if not line.startswith(self.separator):
            return None
        return _REST.match(line, self.length)


class _ReForParsegen:
    """The ``re`` _parsegen sees: ``escape`` leaves the separator as is, so that
    ``compile`` can take it back out of the pattern _parsegen builds."""

    @staticmethod
    def escape(text: str) -> str:
        return text

    @staticmethod
    def compile(pattern: str) -> _BoundaryPattern:
        if not (pattern.startswith(_HEAD) and pattern.endswith(_TAIL)):
            raise AssertionError(f"unexpected pattern from email.feedparser: {pattern!r}")
        return _BoundaryPattern(pattern[len(_HEAD):-len(_TAIL)])


def _patched_parsegen() -> types.FunctionType | None:
    """_parsegen with ``re`` bound to :class:`_ReForParsegen`, or None if it does not use
    ``re`` only for compile and escape (then the stock parser is used)."""
    stock = _stock.FeedParser._parsegen  # type: ignore[attr-defined]  # private, checked here
    code = stock.__code__
    names = set(code.co_names)
    if "re" not in names or stock.__closure__ or _TAIL not in code.co_consts:
        return None
    namespace = dict(vars(_stock))
    namespace["re"] = _ReForParsegen
    return types.FunctionType(code, namespace, stock.__name__, stock.__defaults__)


_PARSEGEN = _patched_parsegen()
BOUNDARY_SHIM_ACTIVE = _PARSEGEN is not None


class FastBytesFeedParser(BytesFeedParser):
    """``email.parser.BytesFeedParser`` (compat32) giving the same tree, faster on
    multiparts (see the module docstring)."""

    if _PARSEGEN is not None:
        _parsegen = _PARSEGEN
