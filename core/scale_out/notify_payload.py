"""The wire format of :mod:`.notify_relay`: mail events and token changes as NOTIFY payloads,
and their reassembly on arrival.

A payload is compact ASCII JSON under PostgreSQL's 8000-byte limit. Every payload names its
sender (a random id per relay) and a sequence number ``q`` that only grows; ``p`` is the part.
An event with more message ids than fit is split over several payloads (``n`` parts, sent in
one transaction, so they arrive together and in order) and joined again by :class:`Inbox`,
which also drops a payload seen before (a batch sent again after a lost acknowledgement).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from datetime import datetime
from typing import Any

from ..sync.events import MailEvent

__all__ = ["MAX_PAYLOAD_BYTES", "Inbox", "encode_event", "encode_token_change"]

#: PostgreSQL refuses payloads of 8000 bytes or more; keep a margin.
MAX_PAYLOAD_BYTES = 7900
_REMEMBERED = 256  # senders whose last sequence number is kept; unfinished split events


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"))  # ASCII only: characters are bytes


def encode_event(sender: str, seq: int, event: MailEvent) -> list[str]:
    """The payloads of ``event``: one, or several of at most :data:`MAX_PAYLOAD_BYTES` each
    when its message ids do not fit in one, the ids split in order."""
    head = {"s": sender, "q": seq, "k": event.kind, "a": event.account_id, "u": event.user_id,
            "t": event.at.isoformat()}
    whole = _dumps({**head, "p": 0, "n": 1, "m": list(event.message_ids)})
    if len(whole) <= MAX_PAYLOAD_BYTES:
        return [whole]
    budget = MAX_PAYLOAD_BYTES - len(_dumps({**head, "p": 10**6, "n": 10**6, "m": []}))
    chunks: list[list[int]] = [[]]
    size = 0
    for message_id in event.message_ids:
        width = len(str(message_id)) + 1  # the id and its comma
        if chunks[-1] and size + width > budget:
            chunks.append([])
            size = 0
        chunks[-1].append(message_id)
        size += width
    return [_dumps({**head, "p": i, "n": len(chunks), "m": ids}) for i, ids in enumerate(chunks)]


def encode_token_change(sender: str, seq: int, user_id: int) -> str:
    """The payload saying that ``sender`` forgot the tokens of ``user_id``."""
    return _dumps({"s": sender, "q": seq, "p": 0, "u": user_id})


class Inbox:
    """What arrives on the LISTEN connection, decoded: whole events once, token changes once.

    Decoding methods raise ``ValueError``, ``KeyError`` or ``TypeError`` on a malformed payload.
    """

    def __init__(self) -> None:
        self._last_seen: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._parts: dict[tuple[str, int], list[int]] = {}

    def reset(self) -> None:
        """Forget unfinished split events (after the connection was lost: never completed)."""
        self._parts.clear()

    def event(self, payload: str) -> MailEvent | None:
        """The event ``payload`` completes, or None (a part of more, or a duplicate)."""
        data = json.loads(payload)
        if not self._fresh(data):
            return None
        key = (str(data["s"]), int(data["q"]))
        ids = self._parts.pop(key, []) + [int(i) for i in data["m"]]
        if int(data["p"]) + 1 < int(data["n"]):
            self._parts[key] = ids
            if len(self._parts) > _REMEMBERED:  # left unfinished by a malformed sender
                del self._parts[next(iter(self._parts))]
            return None
        return MailEvent(kind=str(data["k"]), account_id=int(data["a"]), user_id=int(data["u"]),
                         message_ids=tuple(ids), at=datetime.fromisoformat(data["t"]))

    def token_change(self, payload: str, *, ignore_sender: str) -> int | None:
        """The user id of a token change from another sender than ``ignore_sender``, or None."""
        data = json.loads(payload)
        if data["s"] == ignore_sender or not self._fresh(data):
            return None
        return int(data["u"])

    def _fresh(self, data: dict[str, Any]) -> bool:
        """False for a payload delivered before: each sender's (sequence, part) only grows."""
        sender, key = str(data["s"]), (int(data["q"]), int(data["p"]))
        last = self._last_seen.get(sender)
        if last is not None and key <= last:
            return False
        self._last_seen[sender] = key
        self._last_seen.move_to_end(sender)
        if len(self._last_seen) > _REMEMBERED:
            self._last_seen.popitem(last=False)
        return True
