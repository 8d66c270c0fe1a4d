"""Bytes to text: MIME charset labels, decoding with fallbacks, text fit for any database.

The compat32 ``email`` API (chosen for speed:
docs/measurements.md#the-compat32-parser) hands back undecoded bytes; these
helpers turn them into ``str`` and never raise. Every guess is reported to a
:class:`~.parse_warnings.Warnings` collector, and the text is still produced.
"""

from __future__ import annotations

import codecs
import re
from functools import lru_cache

from .parse_warnings import _SURROGATE, Warnings

__all__ = ["clean", "decode_bytes"]


def clean(text: str, where: str, warn: Warnings) -> str:
    """``text`` fit for any database: NUL characters removed (PostgreSQL refuses them, with a
    warning) and lone surrogates replaced by U+FFFD (they cannot be encoded as UTF-8)."""
    if "\x00" in text:
        text = text.replace("\x00", "")
        warn(f"NUL bytes removed from {where}")
    if not text.isascii() and _SURROGATE.search(text):
        text = _SURROGATE.sub("\ufffd", text)
    return text


# Python codecs that are not character sets: a declared "charset=unicode_escape" is unknown.
_NOT_CHARSETS = {"undefined", "unicode_escape", "raw_unicode_escape", "idna", "punycode"}
# Labels whose text is in practice written in a superset: decode with the superset.
_SUPERSETS = {"ascii": "utf-8", "gb2312": "gb18030", "gbk": "gb18030", "euc_kr": "cp949",
              "shift_jis": "cp932", "big5": "big5hkscs"}


@lru_cache(maxsize=512)
def _codec(label: str) -> str | None:
    """The Python codec for a MIME charset label ("utf8", "Latin-1", "utf-8*en"), or None."""
    name = label.strip().strip("\"'").split("*", 1)[0].strip()
    if not name or len(name) > 40:
        return None
    try:
        codec = codecs.lookup(name).name
        b"a".decode(codec)  # LookupError for bytes-to-bytes codecs (base64, zlib, rot13 ...)
    except UnicodeError:  # a text codec that dislikes b"a" (utf-16) is still a text codec
        pass
    except (LookupError, ValueError):  # ValueError for a NUL in the name
        return None
    return None if codec in _NOT_CHARSETS else _SUPERSETS.get(codec, codec)


_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xdf][\x80-\xbf]|[\xe0-\xef][\x80-\xbf]{2}"
                            rb"|[\xf0-\xf4][\x80-\xbf]{3}")


def _strict(data: bytes, codec: str, final: bool) -> str:  # not final: drop a cut-off char
    return data.decode(codec) if final else codecs.getincrementaldecoder(codec)().decode(data)


def decode_bytes(data: bytes, charset: str | None, where: str, warn: Warnings,
                 *, final: bool = True) -> str:
    """Decode ``data`` declared as ``charset`` (None or "": us-ascii, read as UTF-8).

    When the charset is unknown or the bytes are not valid in it: UTF-8 if they are valid
    UTF-8, else UTF-8 with replacement characters if they contain UTF-8 sequences, else
    latin-1 (which reads any byte); each with a warning naming ``where``. ``final=False``
    means ``data`` was cut short: a character cut in two at the end is dropped silently.
    """
    label = (charset or "").strip()
    codec = _codec(label) if label else "utf-8"
    if codec is not None:
        try:
            return _strict(data, codec, final)
        except Exception:  # noqa: BLE001 - a codec's own errors vary (UnicodeDecodeError; utf-7, iso-2022)
            problem = f"invalid {label or 'us-ascii'} bytes in {where}"
    else:
        problem = f"unknown charset {label[:40]!r} in {where}"
    if codec != "utf-8":
        try:
            text = _strict(data, "utf-8", final)
            warn(f"{problem}: decoded as utf-8")
            return text
        except UnicodeError:
            pass
    if _UTF8_SEQUENCE.search(data):
        warn(f"{problem}: decoded as utf-8 with replacement characters")
        return data.decode("utf-8", "replace")
    warn(f"{problem}: decoded as latin-1")
    return data.decode("latin-1")
