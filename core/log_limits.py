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

With ``SALESINBOX_LOG_FORMAT=json`` the handler writes one JSON object per line instead
(:class:`JsonFormatter`, for log shippers), under the same limits: the message is cut to the
line limit and the exception text as a traceback is, before encoding, so the line stays valid
JSON.
"""

from __future__ import annotations

import json
import logging
import reprlib
import sys
from datetime import UTC, datetime

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


def bound_record(text: str, line_limit: int, record_lines: int = RECORD_LINES) -> str:
    """A formatted record with every line cut to ``line_limit`` characters and at most
    ``record_lines`` × ``line_limit`` characters in all (the middle is cut: the start
    says what happened, the end of a traceback names the exception)."""
    if len(text) <= line_limit:
        return text  # the common case: nothing to look at
    text = "\n".join(truncate(line, line_limit) for line in text.split("\n"))
    record_limit = record_lines * line_limit
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


class JsonFormatter(BoundedFormatter):
    """One JSON object per record, on one line: ``time`` (ISO 8601, UTC), ``level``,
    ``logger``, ``message``, ``process`` (the pid: several processes may share a log) and,
    when the record has one, ``exception`` (the traceback text).

    The limits of :class:`BoundedFormatter` apply to the values, before encoding: the
    message is cut to ``line_limit`` characters, the exception text to
    ``RECORD_LINES - 1`` times that (its start and end kept), so a line stays valid JSON and
    about ``RECORD_LINES`` × ``line_limit`` long at most (JSON escapes of control characters
    aside).
    """

    def __init__(self, *, line_limit: int = DEFAULT_LINE_LIMIT) -> None:
        super().__init__(line_limit=line_limit)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": truncate(record.getMessage(), self.line_limit),
            "process": record.process,
        }
        details = []
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            details.append(record.exc_text)
        if record.stack_info:
            details.append(self.formatStack(record.stack_info))
        if details:
            entry["exception"] = bound_record("\n".join(details), self.line_limit, RECORD_LINES - 1)
        return json.dumps(entry, ensure_ascii=False, default=str)




def configure_logging(line_limit: int = DEFAULT_LINE_LIMIT, level: int | str = logging.INFO,
                      log_format: str = "text") -> bool:
    """Send the process's logs (the server's, uvicorn's, the libraries') to stderr through a
    :class:`BoundedFormatter`, or a :class:`JsonFormatter` when ``log_format`` is ``"json"``.

    Like :func:`logging.basicConfig`, it does nothing when the root logger already has
    handlers (an application embedding the server configures its own logging).

    :returns: whether the handler was installed.
    """
    root = logging.getLogger()
    if root.handlers:
        return False
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter if log_format == "json" else BoundedFormatter
    handler.setFormatter(formatter(line_limit=line_limit))
    root.addHandler(handler)
    root.setLevel(level)
    return True
