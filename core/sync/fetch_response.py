"""``UID FETCH`` of message bodies, its answer read by a fast path for the usual shape.

imapclient's response parser lexes every answer token by token in Python (~0.1 ms a message,
a fifth of the sync process' CPU time, bench/bench_sync.py). The answers to the sync's own
FETCH have one shape: ``* n FETCH (UID u FLAGS (...) INTERNALDATE "..." MODSEQ (m) BODY[] {k}``,
the literal, ``)``, items in any order. Those are read with two regular expressions; any
other answer (unsolicited responses, a NIL body, an item out of place, a quoted body…) is
handed whole to imapclient's parser, so the result is always what ``IMAPClient.fetch`` gives
(but for its ``SEQ`` entries, which the sync does not read).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from imapclient import IMAPClient
from imapclient.datetime_util import parse_to_datetime
from imapclient.imapclient import join_message_ids, seq_to_parenstr_upper
from imapclient.response_parser import parse_fetch_response

__all__ = ["fetch_bodies"]

_NUMBER = rb"(0|[1-9][0-9]*)"  # as imapclient makes ints: not "0123"
_ITEM = (rb'(?:UID ' + _NUMBER + rb'|MODSEQ \(' + _NUMBER + rb'\)|FLAGS \(([^()"{}\\\r\n]*(?:\\[^()"{}\\\r\n]*)*)\)'
         rb'|INTERNALDATE "([^"\\\r\n]*)") ?')
_PREFIX = re.compile(rb"[0-9]+ \(((?:" + _ITEM + rb")*)BODY\[\] \{([0-9]+)\}")
_ITEMS = re.compile(_ITEM)


def fetch_bodies(client: IMAPClient, uids: Sequence[int], items: list[bytes]) -> dict[int, dict[bytes, Any]]:
    """``client.fetch(uids, items)`` (``items`` among BODY.PEEK[], FLAGS, INTERNALDATE,
    MODSEQ; UIDs in use): per UID asked for and answered, its items as imapclient types them
    (``BODY[]`` bytes, ``FLAGS`` a tuple of bytes, ``INTERNALDATE`` a datetime, ``MODSEQ``
    an int)."""
    imap = client._imap
    tag = imap._command("UID", "FETCH", join_message_ids(uids), seq_to_parenstr_upper(items))
    typ, data = imap._command_complete("FETCH", tag)
    client._checkok("fetch", typ, data)
    typ, data = imap._untagged_response(typ, data, "FETCH")
    answer = _read_fast(data, client.normalise_times)
    if answer is None:
        answer = dict(parse_fetch_response(data, client.normalise_times, True))
    return {uid: answer[uid] for uid in uids if uid in answer}


def _read_fast(data: list[Any], normalise_times: bool) -> dict[int, dict[bytes, Any]] | None:
    """The answer if every response has the usual shape, else None."""
    answer: dict[int, dict[bytes, Any]] = {}
    if len(data) % 2:
        return None
    for index in range(0, len(data), 2):
        head, tail = data[index], data[index + 1]
        if not (isinstance(head, tuple) and len(head) == 2 and tail == b")"):
            return None
        prefix, body = head
        match = _PREFIX.fullmatch(prefix)
        if match is None or int(match.group(6)) != len(body):
            return None
        fields: dict[bytes, Any] = {b"BODY[]": body}
        for item in _ITEMS.finditer(match.group(1)):
            uid, modseq, flags, internal_date = item.groups()
            if uid is not None:
                fields[b"UID"] = int(uid)
            elif modseq is not None:
                fields[b"MODSEQ"] = (int(modseq),)
            elif internal_date is not None:
                fields[b"INTERNALDATE"] = parse_to_datetime(internal_date, normalise=normalise_times)
            else:
                fields[b"FLAGS"] = tuple(flags.split())
                if any(flag == b"NIL" or flag.isdigit() for flag in fields[b"FLAGS"]):
                    return None  # imapclient makes None and ints of those
        if b"UID" not in fields:
            return None
        answer[fields.pop(b"UID")] = fields
    return answer
