"""Reading a folder over IMAP: select, list UIDs, fetch and parse messages, read flag changes.

Blocking functions on a logged-in ``IMAPClient`` (see :func:`salesinbox.core.transport.imap.open_imap`),
run by the sync engine in a worker thread. They return plain values and know nothing of the
database. Parsing happens here, off the event loop: for more than a few messages in a pool
of worker processes (parsing is most of a sync's CPU time, and one process cannot use more
than one core), each piece parsed while the next one is being fetched; otherwise in the
calling thread. The processes are started with ``spawn``, which imports the main module
again: a script that syncs must guard its entry point with ``if __name__ == "__main__":``
(the ``salesinbox`` command, pytest and the benches do).
"""

from __future__ import annotations

import bisect
import itertools
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from imapclient import IMAPClient

from ..parsing.message_parser import FetchedMessage, ParsedMessage, parse_message
from .fetch_response import fetch_bodies

log = logging.getLogger(__name__)

# UID lists are sent comma-separated: 500 UIDs stay far below Dovecot's 64 KB command limit
# (docs/measurements.md#imap-commands).
UID_CHUNK = 500
# Parsing in worker processes: how many (0 or 1: parse in the calling thread), from how many
# messages on, UIDs per FETCH (each piece is parsed while the next one is read) and messages
# per task handed to a worker.
PARSE_PROCESSES = min(4, os.cpu_count() or 1) if (os.cpu_count() or 1) > 1 else 0
POOL_MIN_MESSAGES = 16
POOL_FETCH_CHUNK = 100
POOL_TASK_SIZE = 10


@dataclass(frozen=True, slots=True)
class FolderSnapshot:
    """What SELECT tells about a folder: enough to see "nothing changed" in O(1)."""

    name: str
    uidvalidity: int
    uidnext: int | None
    highestmodseq: int | None
    exists: int
    #: with QRESYNC (RFC 7162), the UID set the server reported expunged since the modseq
    #: given (``VANISHED (EARLIER)``, as sent, e.g. ``"41,43:116"``); None when not asked
    vanished: str | None = None


def chunked(uids: Sequence[int], size: int = UID_CHUNK) -> Iterator[list[int]]:
    """``uids`` in lists of at most ``size``."""
    for start in range(0, len(uids), size):
        yield list(uids[start : start + size])


def _int(value: Any) -> int | None:  # a FETCH/SELECT value: imapclient's data is untyped
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return int(value) if value is not None else None


def select_folder(client: IMAPClient, name: str, *, readonly: bool = True,
                  qresync: tuple[int, int] | None = None) -> FolderSnapshot:
    """SELECT ``name`` (read-only by default: syncing never changes the mailbox).

    ``qresync``: the (UIDVALIDITY, HIGHESTMODSEQ) of the last completed pass, on a
    connection that has done ``ENABLE QRESYNC``: the server then also reports the UIDs
    expunged since that modseq (RFC 7162 §3.2.5), kept in ``vanished``. It may report UIDs
    the client never had, and none at all when the UIDVALIDITY no longer matches.
    """
    if qresync is None:
        info = client.select_folder(name, readonly=readonly)
        vanished = None
    else:
        info, vanished = _select_qresync(client, name, readonly, *qresync)
    return FolderSnapshot(
        name=name,
        uidvalidity=_int(info.get(b"UIDVALIDITY")) or 0,
        uidnext=_int(info.get(b"UIDNEXT")),
        highestmodseq=_int(info.get(b"HIGHESTMODSEQ")),
        exists=_int(info.get(b"EXISTS")) or 0,
        vanished=vanished,
    )


def _select_qresync(client: IMAPClient, name: str, readonly: bool, uidvalidity: int,
                    modseq: int) -> tuple[dict[bytes, Any], str]:
    # imaplib's select() takes no parameters: send the command itself, then let imapclient
    # read the untagged responses as its own select_folder does.
    imap = client._imap
    imap.untagged_responses = {}
    command = "EXAMINE" if readonly else "SELECT"
    typ, data = imap._simple_command(command, client._normalise_folder(name),
                                     f"(QRESYNC ({uidvalidity} {modseq}))")
    client._checkok(command.lower(), typ, data)
    imap.state = "SELECTED"
    imap.is_readonly = readonly
    vanished = [line for line in imap.untagged_responses.pop("VANISHED", [])
                if isinstance(line, bytes) and line.upper().startswith(b"(EARLIER)")]
    info = client._process_select_response(imap.untagged_responses)
    return info, ",".join(line[len(b"(EARLIER)"):].strip().decode("ascii", "replace") for line in vanished)


def uids_in_set(uid_set: str, candidates: set[int]) -> set[int]:
    """The ``candidates`` that an IMAP sequence set such as ``"41,43:116"`` names (a set
    may span millions of UIDs: it is matched against the candidates, not expanded)."""
    ranges: list[tuple[int, int]] = []
    for part in uid_set.split(","):
        low, _, high = part.strip().partition(":")
        if not low.isdigit() or (high and not high.isdigit()):
            continue  # "*" cannot appear in VANISHED; anything else is ignored
        first, last = int(low), int(high or low)
        ranges.append((min(first, last), max(first, last)))
    ranges.sort()
    starts = [first for first, _last in ranges]
    reach = list(itertools.accumulate((last for _first, last in ranges), max))
    named = set()
    for uid in candidates:
        index = bisect.bisect_right(starts, uid) - 1  # the last range starting at or before uid
        if index >= 0 and reach[index] >= uid:
            named.add(uid)
    return named


def list_uids(client: IMAPClient, since: date | None = None) -> list[int]:
    """Every UID of the selected folder (or those with an INTERNALDATE since ``since``), ascending."""
    criteria: list[object] = ["SINCE", since] if since is not None else ["ALL"]
    return sorted(int(uid) for uid in client.search(criteria))


def uids_from(client: IMAPClient, first_uid: int) -> list[int]:
    """The UIDs at or above ``first_uid``, ascending (new mail since the last sync)."""
    # "n:*" always matches the highest UID even when it is below n (RFC 3501): filter.
    found = client.search(["UID", f"{first_uid}:*"])
    return sorted(int(uid) for uid in found if int(uid) >= first_uid)


def _flags(values: Any) -> frozenset[str]:
    if not values:
        return frozenset()
    return frozenset(
        flag.decode("utf-8", "replace") if isinstance(flag, bytes) else str(flag)
        for flag in values
    )


def _as_utc(value: object) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


# A pool breaks when one of its processes dies (killed for memory…): its tasks are then
# parsed in the sync thread and the next fetch starts a new pool, up to this many times.
MAX_BROKEN_POOLS = 3

_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()
_broken_pools = 0


def _parse_pool() -> ProcessPoolExecutor | None:
    """The shared pool of parsing processes (started on first use), or None if disabled."""
    global _pool
    if PARSE_PROCESSES < 2 or _broken_pools >= MAX_BROKEN_POOLS:
        return None
    with _pool_lock:
        if _pool is None:
            # spawn: never fork a process that runs threads (the event loop's, aiosqlite's…).
            # Workers import only the parser (tasks name parsing.parse_message), and leave
            # Ctrl-C to the server.
            _pool = ProcessPoolExecutor(
                PARSE_PROCESSES, mp_context=multiprocessing.get_context("spawn"),
                initializer=signal.signal, initargs=(signal.SIGINT, signal.SIG_IGN),
            )
        return _pool


def start_parse_pool() -> bool:
    """Start the parsing processes now rather than in the first sync that needs them (a
    process takes ~0.2 s to start and import the parser). Returns whether there is a pool."""
    pool = _parse_pool()
    if pool is None:
        return False
    for future in [pool.submit(list, map(parse_message, [b""])) for _ in range(2 * PARSE_PROCESSES)]:
        future.result()
    return True


def shutdown_parse_pool() -> None:
    """Stop the parsing processes (they are started again when needed)."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def _discard_pool(pool: ProcessPoolExecutor) -> bool:
    """Forget a broken pool (the next fetch starts a new one); False if it already was."""
    global _pool, _broken_pools
    with _pool_lock:
        if _pool is not pool:
            return False
        _pool = None
        _broken_pools += 1
    pool.shutdown(wait=False, cancel_futures=True)
    if _broken_pools >= MAX_BROKEN_POOLS:
        log.error("Parsing processes failed %d times: parsing in the sync threads from now on", _broken_pools)
    return True


def _fetched(uid: int, data: dict[bytes, Any], parsed: ParsedMessage) -> FetchedMessage:
    return FetchedMessage(
        uid=uid,
        flags=_flags(data.get(b"FLAGS")),
        parsed=parsed,
        modseq=_int(data.get(b"MODSEQ")),
        internal_date=_as_utc(data.get(b"INTERNALDATE")),
    )


def fetch_messages(client: IMAPClient, uids: Sequence[int], *, condstore: bool) -> list[FetchedMessage]:
    """Fetch and parse the given UIDs of the selected folder (UIDs expunged meanwhile are
    simply absent from the result). Never marks messages as read (BODY.PEEK)."""
    items = [b"BODY.PEEK[]", b"FLAGS", b"INTERNALDATE"]
    if condstore:
        items.append(b"MODSEQ")
    pool = _parse_pool() if len(uids) >= POOL_MIN_MESSAGES else None
    if pool is not None:
        return _fetch_parse_in_pool(client, uids, items, pool)
    fetched: list[FetchedMessage] = []
    for chunk in chunked(uids):
        response = fetch_bodies(client, chunk, items)
        for uid in chunk:
            data = response.get(uid)
            if data is None:
                continue
            fetched.append(_fetched(uid, data, parse_message(data.get(b"BODY[]") or b"")))
    return fetched


def _fetch_parse_in_pool(
    client: IMAPClient, uids: Sequence[int], items: list[bytes], pool: ProcessPoolExecutor
) -> list[FetchedMessage]:
    metadata: list[tuple[int, dict[bytes, Any]]] = []  # (uid, FETCH data without the body)
    tasks: list[tuple[list[bytes], Future[list[ParsedMessage]] | None]] = []
    try:
        for chunk in chunked(uids, POOL_FETCH_CHUNK):
            response = fetch_bodies(client, chunk, items)
            raws: list[bytes] = []
            for uid in chunk:
                data = response.get(uid)
                if data is None:
                    continue
                raws.append(data.pop(b"BODY[]", None) or b"")
                metadata.append((uid, data))
            del response
            # Parsed by the workers while the next chunk is fetched. A task is
            # list(map(parse_message, raws)): it pickles as references to those two, so a
            # worker imports only the parser.
            for start in range(0, len(raws), POOL_TASK_SIZE):
                task = raws[start : start + POOL_TASK_SIZE]
                try:
                    tasks.append((task, pool.submit(list, map(parse_message, task))))
                except RuntimeError:  # the pool broke or was shut down meanwhile: parse here
                    tasks.append((task, None))
        parsed: list[ParsedMessage] = []
        for task, future in tasks:
            parsed.extend(_task_result(pool, task, future))
    finally:
        for _task, future in tasks:  # after an error: the work not started is dropped
            if future is not None:
                future.cancel()
    return [_fetched(uid, data, result) for (uid, data), result in zip(metadata, parsed, strict=True)]


def _task_result(
    pool: ProcessPoolExecutor, raws: list[bytes], future: Future[list[ParsedMessage]] | None
) -> list[ParsedMessage]:
    """A task's parsed messages; parsed here if the pool could not (same function, same result)."""
    if future is not None:
        try:
            return future.result()
        except BrokenProcessPool:  # a worker died (OOM kill…): the pool's other tasks failed too
            if _discard_pool(pool):
                log.warning("A parsing process died: parsing in the sync thread", exc_info=True)
        except Exception:  # e.g. MemoryError in the worker: try here
            log.warning("Parsing in a worker process failed: parsing in the sync thread", exc_info=True)
    return [parse_message(raw) for raw in raws]


def fetch_flags(
    client: IMAPClient, uids: Sequence[int], *, condstore: bool
) -> dict[int, tuple[frozenset[str], int | None]]:
    """Current flags (and MODSEQ) of ``uids`` in the selected folder."""
    items = [b"FLAGS", b"MODSEQ"] if condstore else [b"FLAGS"]
    result: dict[int, tuple[frozenset[str], int | None]] = {}
    for chunk in chunked(uids):
        for uid, data in client.fetch(chunk, items).items():
            result[int(uid)] = (_flags(data.get(b"FLAGS")), _int(data.get(b"MODSEQ")))
    return result


def changed_since(client: IMAPClient, modseq: int) -> list[int]:
    """UIDs whose flags changed after ``modseq`` (CONDSTORE ``SEARCH MODSEQ``)."""
    return sorted(int(uid) for uid in client.search(["MODSEQ", str(modseq)]))


def set_flags(client: IMAPClient, folder: str, uid: int, *, seen: bool | None, flagged: bool | None,
              answered: bool | None = None) -> None:
    """Set (True) or clear (False) \\Seen, \\Flagged and \\Answered on one message, read-write
    (two-way flag sync; \\Answered after a reply); None leaves a flag as it is."""
    client.select_folder(folder, readonly=False)
    for flag, wanted in ((b"\\Seen", seen), (b"\\Flagged", flagged), (b"\\Answered", answered)):
        if wanted is True:
            client.add_flags([uid], [flag], silent=True)
        elif wanted is False:
            client.remove_flags([uid], [flag], silent=True)
