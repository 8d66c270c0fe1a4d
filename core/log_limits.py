"""Bounded log output: no log line the server writes grows with what a user sent.

Values from requests (a server name, a user name, a server's reply) reach log messages, and a
1 MB value would otherwise write megabyte lines that fill disks and choke log shippers. Two
layers keep lines short:

- call sites that log user-provided values use :func:`short_repr` (bounded and quoted, so a
  newline in a value cannot forge a log line either);
- the process's log handler formats with :class:`BoundedFormatter` (installed by
  :func:`configure_logging`), which cuts any line, traceback lines included, to
  ``SALESINBOX_LOG_LINE_LIMIT`` characters and a whole record to :data:`RECORD_LINES` times
  that, keeping the start and the end of an over-long traceback.
"""

from __future__ import annotations

import logging
import reprlib
import sys

DEFAULT_LINE_LIMIT = 8192
#: below this, cut lines would lose the logger name and timestamp: smaller limits are raised
MIN_LINE_LIMIT = 256
#: a record (message and traceback) is at most this many times the line limit
RECORD_LINES = 4
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_short = reprlib.Repr()
_short.maxstring = 200
_short.maxother = 200


def short_repr(value: object) -> str:
    """``repr(value)`` cut to about 200 characters (``'abc...xyz'``), for log arguments that
    come from users or remote servers."""
    return _short.repr(value)


def _cut_marker(dropped: int) -> str:
    return f"… [truncated {dropped} chars]"


def truncate(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters, else its start and a marker saying how
    much was cut, ``limit`` characters in all."""
    if len(text) <= limit:
        return text
    # The marker shows fewer than len(text) dropped characters, so it is never longer than
    # the one measured here: the result fits in ``limit``.
    keep = max(limit - len(_cut_marker(len(text))), 0)
    return text[:keep] + _cut_marker(len(text) - keep)


def bound_record(text: str, line_limit: int) -> str:
    """A formatted record with every line cut to ``line_limit`` characters and at most
    :data:`RECORD_LINES` × ``line_limit`` characters in all (the middle is cut: the start
    says what happened, the end of a traceback names the exception)."""
    if len(text) <= line_limit:
        return text  # the common case: nothing to look at
    text = "\n".join(truncate(line, line_limit) for line in text.split("\n"))
    record_limit = RECORD_LINES * line_limit
    if len(text) <= record_limit:
        return text
    half = (record_limit - 48) // 2  # room for the marker line
    dropped = len(text) - 2 * half
    return f"{text[:half]}\n… [truncated {dropped} chars] …\n{text[-half:]}"


class BoundedFormatter(logging.Formatter):
    """A :class:`logging.Formatter` whose output obeys :func:`bound_record`."""

    def __init__(self, fmt: str | None = LOG_FORMAT, datefmt: str | None = None, *,
                 line_limit: int = DEFAULT_LINE_LIMIT) -> None:
        super().__init__(fmt, datefmt)
        self.line_limit = max(line_limit, MIN_LINE_LIMIT)

    def format(self, record: logging.LogRecord) -> str:
        return bound_record(super().format(record), self.line_limit)


def configure_logging(line_limit: int = DEFAULT_LINE_LIMIT, level: int | str = logging.INFO) -> bool:
    """Send the process's logs (the server's, uvicorn's, the libraries') to stderr through a
    :class:`BoundedFormatter`.

    Like :func:`logging.basicConfig`, it does nothing when the root logger already has
    handlers (an application embedding the server configures its own logging).

    :returns: whether the handler was installed.
    """
    root = logging.getLogger()
    if root.handlers:
        return False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(BoundedFormatter(line_limit=line_limit))
    root.addHandler(handler)
    root.setLevel(level)
    return True
